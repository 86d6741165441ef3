import { z } from "zod";
import { boolean } from "../config.js";
import { userCacheDir } from "../paths.js";
import { defaultTrustDomain, type MeshRole } from "./identity.js";

/** The files of one identity, in the layout cert-manager writes into a Secret. */
export const tlsFiles = Object.freeze({ certificate: "tls.crt", privateKey: "tls.key", ca: "ca.crt" });

/** Within this of its end a certificate is reported as expiring. */
export const expiryWarningDays = 30;

/**
 * The settings every mesh service shares for its internal gRPC: where its certificate
 * is, and the explicit way out of mutual TLS.
 */
export const meshSecuritySettings = (role: MeshRole) => ({
  /**
   * Directory with tls.crt, tls.key and ca.crt (the layout cert-manager writes into a
   * Secret): this service's certificate, its key and the mesh CA. Re-read every minute,
   * so a renewed certificate is used without a restart. By default the role's directory
   * of the per-user CA that `npm start` and `npm run pki` make.
   */
  tlsDir: z
    .string()
    .min(1)
    .default(userCacheDir(process.env, "pki", role)),
  /** Plaintext internal gRPC with no identities and no authorization: for debugging only; warns at start. */
  insecure: boolean().default(false),
  /** The SPIFFE trust domain mesh certificates name (spiffe://<domain>/<role>). */
  trustDomain: z
    .string()
    .regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/, "expected a DNS-like name")
    .default(defaultTrustDomain),
});

/** The parsed mesh security settings of one service. */
export interface MeshSecuritySettings {
  readonly tlsDir: string;
  readonly insecure: boolean;
  readonly trustDomain: string;
}

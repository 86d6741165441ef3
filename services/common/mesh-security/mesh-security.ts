import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ChannelCredentials, ServerCredentials, experimental, type Channel } from "@grpc/grpc-js";
import { createChannel } from "nice-grpc";
import type { Registry } from "prom-client";
import { ConfigError } from "../config.js";
import type { Logger } from "../logger.js";
import { authorizationInterceptor, DenialRecorder, type AuthorizationPolicy } from "./authorization.js";
import { roleOf, spiffeId, type MeshRole } from "./identity.js";
import { expiryWarningDays, tlsFiles, type MeshSecuritySettings as Settings } from "./settings.js";

/** How often certificate files are re-read (tests pass a shorter interval to load()). */
const certificateRefreshMs = 60_000;

/** Client channel options: keepalives notice a dead server within seconds. */
const clientChannelOptions = Object.freeze({
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 2_000,
});

/**
 * One process's side of the mesh's trust boundary: its certificate, the credentials
 * of its gRPC server (mutual TLS and per-RPC authorization) and of its channels to
 * other services (which check that the server is the service it should be).
 */
export class MeshSecurity {
  private readonly credentialsByPeer = new Map<MeshRole, ChannelCredentials>();
  private readonly provider: experimental.CertificateProvider | undefined;

  private constructor(
    /** The role this process holds. */
    readonly role: MeshRole,
    private readonly settings: Settings,
    refreshMs: number,
  ) {
    if (settings.insecure) return;
    const directory = resolve(settings.tlsDir);
    this.provider = new experimental.FileWatcherCertificateProvider({
      certificateFile: join(directory, tlsFiles.certificate),
      privateKeyFile: join(directory, tlsFiles.privateKey),
      caCertificateFile: join(directory, tlsFiles.ca),
      refreshIntervalMs: refreshMs,
    });
  }

  /**
   * Checks this service's certificate files now, so a missing file, a key that does not
   * match, a certificate the CA did not issue, a wrong identity or an expired
   * certificate stops the start with a message that names the setting.
   */
  static load(role: MeshRole, settings: Settings, logger: Logger, refreshMs = certificateRefreshMs): MeshSecurity {
    if (settings.insecure) {
      logger.warn(
        { role },
        "insecure is set: internal gRPC is plaintext, unauthenticated and unauthorized; anyone who can reach this port can call every RPC. Never run this way outside a sealed test.",
      );
      return new MeshSecurity(role, settings, refreshMs);
    }
    const directory = resolve(settings.tlsDir);
    const read = (file: string) => {
      try {
        return readFileSync(join(directory, file));
      } catch (error) {
        throw new ConfigError(
          `setting "tlsDir": cannot read ${join(directory, file)} (${(error as NodeJS.ErrnoException).code ?? error}). ` +
            "It needs tls.crt, tls.key and ca.crt: `npm start` and `npm run pki` make them, one directory per role, in the per-user infermesh cache (~/.cache/infermesh/pki); or set insecure (plaintext, for debugging only).",
        );
      }
    };
    const problem = (what: string) => new ConfigError(`setting "tlsDir" (${directory}): ${what}`);
    let certificate: X509Certificate;
    let ca: X509Certificate;
    try {
      certificate = new X509Certificate(read(tlsFiles.certificate));
      ca = new X509Certificate(read(tlsFiles.ca));
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      throw problem(`not a PEM certificate: ${(error as Error).message}`);
    }
    let keyMatches = false;
    try {
      keyMatches = certificate.checkPrivateKey(createPrivateKey(read(tlsFiles.privateKey)));
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      throw problem(`${tlsFiles.privateKey} is not a PEM private key`);
    }
    if (!keyMatches) throw problem(`${tlsFiles.privateKey} is not the key of ${tlsFiles.certificate}`);
    if (!certificate.checkIssued(ca) || !certificate.verify(ca.publicKey))
      throw problem(`${tlsFiles.certificate} was not issued by ${tlsFiles.ca}`);
    const holds = roleOf({ subjectaltname: certificate.subjectAltName ?? "" }, settings.trustDomain);
    if (holds !== role) {
      throw problem(
        `${tlsFiles.certificate} must name ${spiffeId(settings.trustDomain, role)} as a URI SAN; it names ${certificate.subjectAltName ?? "nothing"}`,
      );
    }
    const now = Date.now();
    const notAfter = new Date(certificate.validTo).getTime();
    if (notAfter <= now || new Date(certificate.validFrom).getTime() > now) {
      throw problem(`${tlsFiles.certificate} is valid from ${certificate.validFrom} to ${certificate.validTo}, not now`);
    }
    if (notAfter - now < expiryWarningDays * 86_400_000) {
      logger.warn({ notAfter: certificate.validTo }, "this service's mesh certificate ends soon; renew it (cert-manager does by itself)");
    }
    logger.info({ identity: spiffeId(settings.trustDomain, role), notAfter: certificate.validTo }, "mutual TLS on internal gRPC");
    return new MeshSecurity(role, settings, refreshMs);
  }

  get insecure(): boolean {
    return this.settings.insecure;
  }

  /**
   * Credentials of this process's internal gRPC server: mutual TLS that requires a
   * client certificate from the mesh CA, and `policy` applied to every call.
   */
  serverCredentials(policy: AuthorizationPolicy, registry: Registry, logger: Logger): ServerCredentials {
    if (!this.provider) return ServerCredentials.createInsecure();
    const credentials = experimental.createCertificateProviderServerCredentials(this.provider, this.provider, true);
    const interceptor = authorizationInterceptor(policy, this.settings.trustDomain, new DenialRecorder(registry, logger));
    return experimental.createServerCredentialsWithInterceptors(credentials, [interceptor]);
  }

  /**
   * A channel to the service with role `peer` at host:port. The server must present a
   * certificate from the mesh CA that names `peer`; its host name is not checked, since
   * workers are reached at addresses (pod IPs) no certificate can list in advance.
   */
  channel(address: string, peer: MeshRole): Channel {
    if (!this.provider) return createChannel(address, this.credentialsFor(peer), clientChannelOptions);
    // The TLS server name is the role, not the address: an IP there is not a valid SNI
    // name (RFC 6066), and the identity check reads the certificate, not the name.
    return createChannel(address, this.credentialsFor(peer), { ...clientChannelOptions, "grpc.ssl_target_name_override": peer });
  }

  /** The channel credentials for reaching `peer` (channel() uses them; grpc-js clients may too). */
  credentialsFor(peer: MeshRole): ChannelCredentials {
    if (!this.provider) return ChannelCredentials.createInsecure();
    let credentials = this.credentialsByPeer.get(peer);
    if (!credentials) {
      const trustDomain = this.settings.trustDomain;
      credentials = experimental.createCertificateProviderChannelCredentials(this.provider, this.provider, {
        checkServerIdentity(host, certificate) {
          const found = roleOf(certificate, trustDomain);
          if (found === peer) return undefined;
          return new Error(`${host} presented ${found === undefined ? "no mesh identity" : `the ${found} identity`}; expected the ${peer}`);
        },
      });
      this.credentialsByPeer.set(peer, credentials);
    }
    return credentials;
  }
}

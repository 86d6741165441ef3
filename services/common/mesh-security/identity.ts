import type { PeerCertificate } from "node:tls";

/**
 * What a mesh certificate says its holder is. The five services, plus `operator`: a
 * client-only identity for people with grpcurl, allowed health, reflection and the
 * read-only RPCs.
 */
export const meshRoles = ["gateway", "admission", "router", "memory-guard", "worker", "operator"] as const;
export type MeshRole = (typeof meshRoles)[number];

/** The SPIFFE trust domain of a local mesh; a cluster may name its own. */
export const defaultTrustDomain = "infermesh.local";

/** The identity a certificate carries as its URI SAN: spiffe://<trust domain>/<role>. */
export const spiffeId = (trustDomain: string, role: MeshRole) => `spiffe://${trustDomain}/${role}`;

/**
 * The role a peer's certificate proves, read from its URI SANs (the chain was already
 * verified against the mesh CA by the TLS handshake); undefined when it names none of
 * this trust domain.
 */
export function roleOf(certificate: Pick<PeerCertificate, "subjectaltname"> | undefined, trustDomain: string): MeshRole | undefined {
  const names = certificate?.subjectaltname;
  if (!names) return undefined;
  const prefix = `URI:spiffe://${trustDomain}/`;
  for (const name of names.split(", ")) {
    if (!name.startsWith(prefix)) continue;
    const role = name.slice(prefix.length);
    if ((meshRoles as readonly string[]).includes(role)) return role as MeshRole;
  }
  return undefined;
}

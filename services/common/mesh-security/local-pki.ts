// @peculiar/x509 resolves its ASN.1 schemas through tsyringe, which needs the Reflect
// metadata API before it loads.
import "reflect-metadata";
import { X509Certificate as NodeX509Certificate, webcrypto } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { lock } from "proper-lockfile";
import { meshRoles, spiffeId, type MeshRole } from "./identity.js";
import { expiryWarningDays, tlsFiles } from "./settings.js";

type CryptoKey = webcrypto.CryptoKey;

const useNodeCrypto = () => x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const dayMs = 86_400_000;
/** A local CA lives ten years; what it issues, two. Nothing is renewed by surprise. */
const caLifetimeDays = 3_650;
const leafLifetimeDays = 730;

/** What ensureLocalPki found or made. */
export interface LocalPkiReport {
  /** Identities whose certificates were issued by this call. */
  readonly issued: readonly MeshRole[];
  /** Certificates (by file) that end within expiryWarningDays, or have ended. */
  readonly expiring: readonly { file: string; notAfter: Date }[];
}

/**
 * Makes sure `directory` holds a mesh CA (ca.crt, ca.key) and, for every role, a
 * directory `<role>/` with tls.crt, tls.key and ca.crt: ECDSA P-256, the role as CN
 * and as a SPIFFE URI SAN, localhost and loopback as DNS and IP SANs. Creates only
 * what is missing; keys are written owner-only. Reports certificates near their end
 * instead of replacing them.
 */
export async function ensureLocalPki(
  directory: string,
  trustDomain: string,
  roles: readonly MeshRole[] = meshRoles,
): Promise<LocalPkiReport> {
  useNodeCrypto();
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  // One CA per user is shared by every mesh it starts: two starting at once must not each
  // make one. The lock is a directory beside it, taken over when its holder died.
  const release = await lock(directory, { realpath: false, stale: 30_000, retries: { retries: 100, minTimeout: 50, maxTimeout: 500 } });
  try {
    return await ensureUnlocked(directory, trustDomain, roles);
  } finally {
    await release();
  }
}

async function ensureUnlocked(directory: string, trustDomain: string, roles: readonly MeshRole[]): Promise<LocalPkiReport> {
  const caCertificatePath = join(directory, "ca.crt");
  const caKeyPath = join(directory, "ca.key");
  let ca: { certificate: x509.X509Certificate; privateKey: CryptoKey };
  if (existsSync(caCertificatePath) && existsSync(caKeyPath)) {
    ca = await loadCa(directory);
  } else {
    ca = await createCa(trustDomain);
    writeAtomically(caKeyPath, await exportPrivateKey(ca.privateKey), 0o600);
    writeAtomically(caCertificatePath, ca.certificate.toString("pem"), 0o644);
  }
  const caPem = ca.certificate.toString("pem");
  const issued: MeshRole[] = [];
  for (const role of roles) {
    const roleDirectory = join(directory, role);
    if (existsSync(join(roleDirectory, tlsFiles.certificate)) && existsSync(join(roleDirectory, tlsFiles.privateKey))) continue;
    mkdirSync(roleDirectory, { recursive: true, mode: 0o700 });
    const leaf = await issueLeaf(ca, trustDomain, role);
    writeAtomically(join(roleDirectory, tlsFiles.privateKey), await exportPrivateKey(leaf.privateKey), 0o600);
    writeAtomically(join(roleDirectory, tlsFiles.certificate), leaf.certificate.toString("pem"), 0o644);
    writeAtomically(join(roleDirectory, tlsFiles.ca), caPem, 0o644);
    issued.push(role);
  }
  const expiring: { file: string; notAfter: Date }[] = [];
  const soon = Date.now() + expiryWarningDays * dayMs;
  for (const file of [caCertificatePath, ...roles.map((role) => join(directory, role, tlsFiles.certificate))]) {
    const notAfter = new Date(new NodeX509Certificate(readFileSync(file)).validTo);
    if (notAfter.getTime() < soon) expiring.push({ file, notAfter });
  }
  return { issued, expiring };
}

/** Issues one more certificate from the CA in `directory` (tests use it for strangers and odd names). */
export async function issueFromLocalCa(
  directory: string,
  subject: { commonName: string; uris: readonly string[]; lifetimeMs?: number },
): Promise<{ certificatePem: string; privateKeyPem: string }> {
  useNodeCrypto();
  const leaf = await issue(await loadCa(directory), subject.commonName, subject.uris, subject.lifetimeMs ?? leafLifetimeDays * dayMs);
  return { certificatePem: leaf.certificate.toString("pem"), privateKeyPem: await exportPrivateKey(leaf.privateKey) };
}

/** The CA in `directory`: its certificate and signing key. */
async function loadCa(directory: string) {
  return {
    certificate: new x509.X509Certificate(readFileSync(join(directory, "ca.crt"), "utf8")),
    privateKey: await importPrivateKey(readFileSync(join(directory, "ca.key"), "utf8")),
  };
}

async function createCa(trustDomain: string) {
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"]);
  const now = Date.now();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=infermesh mesh CA (${trustDomain})`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + caLifetimeDays * dayMs),
    signingAlgorithm: algorithm,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certificate, privateKey: keys.privateKey };
}

const issueLeaf = (ca: { certificate: x509.X509Certificate; privateKey: CryptoKey }, trustDomain: string, role: MeshRole) =>
  issue(ca, role, [spiffeId(trustDomain, role)], leafLifetimeDays * dayMs);

async function issue(
  ca: { certificate: x509.X509Certificate; privateKey: CryptoKey },
  commonName: string,
  uris: readonly string[],
  lifetimeMs: number,
) {
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"]);
  const now = Date.now();
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${commonName}`,
    issuer: ca.certificate.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + lifetimeMs),
    signingAlgorithm: algorithm,
    publicKey: keys.publicKey,
    signingKey: ca.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...uris.map((value) => ({ type: "url" as const, value })),
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
        { type: "ip", value: "::1" },
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
    ],
  });
  return { certificate, privateKey: keys.privateKey };
}

/** 16 random bytes, the top bit clear so the DER integer stays positive. */
function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0]! &= 0x7f;
  return Buffer.from(bytes).toString("hex");
}

async function exportPrivateKey(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString("base64").replace(/.{64}/g, "$&\n").replace(/\n?$/, "\n")}-----END PRIVATE KEY-----\n`;
}

async function importPrivateKey(pem: string): Promise<CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""), "base64");
  return webcrypto.subtle.importKey("pkcs8", der, algorithm, true, ["sign"]);
}

/** Writes through a temporary file and a rename, so a reader never sees half a key. */
function writeAtomically(path: string, text: string, mode: number): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, text, { mode });
  chmodSync(temporary, mode);
  renameSync(temporary, path);
}

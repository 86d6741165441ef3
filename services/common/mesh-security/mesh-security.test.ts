import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { credentials } from "@grpc/grpc-js";
import { createChannel, createClient } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { pino } from "pino";
import { Registry } from "prom-client";
import { RouterServiceDefinition } from "../../../gen/infermesh/router/v1/router_service.js";
import { ConfigError } from "../config.js";
import { startGrpcServer } from "../grpc-server.js";
import { AuthorizationPolicy, type MethodRules } from "./authorization.js";
import { defaultTrustDomain, roleOf } from "./identity.js";
import { ensureLocalPki, issueFromLocalCa } from "./local-pki.js";
import { MeshSecurity } from "./mesh-security.js";
import { routerPolicy } from "./rules.js";

const silent = pino({ level: "silent" });
const settings = (tlsDir: string) => ({ tlsDir, insecure: false, trustDomain: defaultTrustDomain });

test("a local PKI is made once: a second run issues nothing and keeps every file; keys are owner-only", async () => {
  const directory = mkdtempSync(join(tmpdir(), "pki-"));
  const first = await ensureLocalPki(directory, defaultTrustDomain);
  assert.deepEqual(first.issued, ["gateway", "admission", "router", "memory-guard", "worker", "operator"]);
  assert.deepEqual(first.expiring, []);
  const before = readFileSync(join(directory, "router", "tls.crt"), "utf8");
  const second = await ensureLocalPki(directory, defaultTrustDomain);
  assert.deepEqual(second.issued, []);
  assert.equal(readFileSync(join(directory, "router", "tls.crt"), "utf8"), before);
  assert.equal(statSync(join(directory, "ca.key")).mode & 0o777, 0o600);
  assert.equal(statSync(join(directory, "worker", "tls.key")).mode & 0o777, 0o600);
  // Each service's certificate loads for its own role.
  for (const role of ["gateway", "admission", "router", "memory-guard", "worker", "operator"] as const) {
    assert.equal(MeshSecurity.load(role, settings(join(directory, role)), silent).role, role);
  }
});

test("two meshes starting at once on a fresh directory make one CA between them", async () => {
  const directory = mkdtempSync(join(tmpdir(), "pki-"));
  const reports = await Promise.all([ensureLocalPki(directory, defaultTrustDomain), ensureLocalPki(directory, defaultTrustDomain)]);
  assert.deepEqual(reports.map((report) => report.issued.length).sort(), [0, 6], "one made everything, the other found it");
  const ca = readFileSync(join(directory, "ca.crt"), "utf8");
  for (const role of ["gateway", "admission", "router", "memory-guard", "worker", "operator"] as const) {
    assert.equal(readFileSync(join(directory, role, "ca.crt"), "utf8"), ca);
    assert.ok(new X509Certificate(readFileSync(join(directory, role, "tls.crt"))).checkIssued(new X509Certificate(ca)));
  }
});

test("a service refuses to start on a missing, foreign, mismatched, wrong-role or expired certificate, naming tlsDir", async () => {
  const directory = mkdtempSync(join(tmpdir(), "pki-"));
  await ensureLocalPki(directory, defaultTrustDomain);
  const refuses = (tlsDir: string, pattern: RegExp, role: "router" | "worker" = "router") =>
    assert.throws(
      () => MeshSecurity.load(role, settings(tlsDir), silent),
      (error: Error) => error instanceof ConfigError && /setting "tlsDir"/.test(error.message) && pattern.test(error.message),
    );

  refuses(join(directory, "nowhere"), /cannot read .*tls\.crt.*npm run pki/);
  // The router's certificate used by a worker.
  refuses(join(directory, "router"), /must name spiffe:\/\/infermesh\.local\/worker/, "worker");

  const foreign = mkdtempSync(join(tmpdir(), "pki-"));
  await ensureLocalPki(foreign, defaultTrustDomain);
  const mixed = join(directory, "mixed");
  mkdirSync(mixed);
  copyFileSync(join(foreign, "router", "tls.crt"), join(mixed, "tls.crt"));
  copyFileSync(join(foreign, "router", "tls.key"), join(mixed, "tls.key"));
  copyFileSync(join(directory, "ca.crt"), join(mixed, "ca.crt"));
  refuses(mixed, /was not issued by ca\.crt/);

  copyFileSync(join(directory, "worker", "tls.key"), join(mixed, "tls.key"));
  copyFileSync(join(directory, "router", "tls.crt"), join(mixed, "tls.crt"));
  refuses(mixed, /tls\.key is not the key of tls\.crt/);

  const expired = await issueFromLocalCa(directory, {
    commonName: "router",
    uris: ["spiffe://infermesh.local/router"],
    lifetimeMs: -120_000,
  });
  writeFileSync(join(mixed, "tls.crt"), expired.certificatePem);
  writeFileSync(join(mixed, "tls.key"), expired.privateKeyPem);
  refuses(mixed, /is valid from .* not now/);

  writeFileSync(join(mixed, "tls.crt"), "not a certificate");
  refuses(mixed, /not a PEM certificate/);
  rmSync(mixed, { recursive: true });
});

test("insecure needs no files and says so loudly", () => {
  const lines: string[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => lines.push(line) });
  const security = MeshSecurity.load("router", { tlsDir: "/nonexistent", insecure: true, trustDomain: defaultTrustDomain }, logger);
  assert.equal(security.insecure, true);
  assert.match(lines.join(""), /"level":40.*insecure is set: internal gRPC is plaintext, unauthenticated and unauthorized/);
});

test("roles are read only from this trust domain's SPIFFE URIs", () => {
  assert.equal(roleOf({ subjectaltname: "URI:spiffe://infermesh.local/worker, DNS:localhost" }, "infermesh.local"), "worker");
  assert.equal(roleOf({ subjectaltname: "URI:spiffe://other.mesh/worker" }, "infermesh.local"), undefined);
  assert.equal(roleOf({ subjectaltname: "DNS:worker, URI:spiffe://infermesh.local/root" }, "infermesh.local"), undefined);
  assert.equal(roleOf({ subjectaltname: "URI:spiffe://infermesh.local/worker/extra" }, "infermesh.local"), undefined);
  assert.equal(roleOf(undefined, "infermesh.local"), undefined);
});

test("a policy denies what it does not name, lets every identity reach health and reflection, and refuses a service with a method left out", () => {
  const policy = routerPolicy();
  assert.equal(policy.permits("/infermesh.router.v1.RouterService/Pick", "gateway"), true);
  assert.equal(policy.permits("/infermesh.router.v1.RouterService/Pick", "worker"), false);
  assert.equal(policy.permits("/infermesh.router.v1.RouterService/Pick", undefined), false);
  assert.equal(policy.permits("/infermesh.router.v1.RouterService/Connect", "worker"), true);
  assert.equal(policy.permits("/infermesh.router.v1.RouterService/Unknown", "gateway"), false);
  assert.equal(policy.permits("/infermesh.worker.v1.WorkerService/Generate", "gateway"), false);
  assert.equal(policy.permits("/grpc.health.v1.Health/Check", "operator"), true);
  assert.equal(policy.permits("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "worker"), true);
  assert.equal(policy.permits("/grpc.health.v1.Health/Check", undefined), false);
  const incomplete = { pick: ["gateway"] } as unknown as MethodRules<typeof RouterServiceDefinition>;
  assert.throws(() => new AuthorizationPolicy().allow(RouterServiceDefinition, incomplete), /no authorization rule for connect/);
});

test("a renewed certificate is served without a restart: new connections get the new one once the files are re-read", async () => {
  const directory = mkdtempSync(join(tmpdir(), "pki-"));
  await ensureLocalPki(directory, defaultTrustDomain);
  const routerDir = join(directory, "router");
  const security = MeshSecurity.load("router", settings(routerDir), silent, 100);
  const server = await startGrpcServer({
    address: "127.0.0.1:0",
    credentials: security.serverCredentials(routerPolicy(), new Registry(), silent),
    serviceNames: [],
    addServices: () => undefined,
    logger: silent,
  });
  /** The serial number of the certificate a new connection is shown. */
  const servedSerial = async () => {
    let serial = "";
    const gateway = join(directory, "gateway");
    const channelCredentials = credentials.createSsl(
      readFileSync(join(gateway, "ca.crt")),
      readFileSync(join(gateway, "tls.key")),
      readFileSync(join(gateway, "tls.crt")),
      {
        checkServerIdentity: (_host, certificate) => {
          serial = certificate.serialNumber;
          return undefined;
        },
      },
    );
    const channel = createChannel(`127.0.0.1:${server.port}`, channelCredentials);
    try {
      await createClient(HealthDefinition, channel).check({ service: "" });
    } finally {
      channel.close();
    }
    return serial;
  };
  try {
    // The provider reads the files once the server listens; the first handshakes may come before.
    let before = "";
    for (let attempt = 0; attempt < 100 && before === ""; attempt += 1) {
      before = await servedSerial().catch(() => "");
      if (before === "") await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(before, new X509Certificate(readFileSync(join(routerDir, "tls.crt"))).serialNumber);
    const renewed = await issueFromLocalCa(directory, { commonName: "router", uris: ["spiffe://infermesh.local/router"] });
    writeFileSync(join(routerDir, "tls.key"), renewed.privateKeyPem);
    writeFileSync(join(routerDir, "tls.crt"), renewed.certificatePem);
    const expected = new X509Certificate(renewed.certificatePem).serialNumber;
    const deadline = Date.now() + 10_000;
    let served = before;
    while (served !== expected && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      served = await servedSerial().catch(() => served);
    }
    assert.equal(served, expected, "the renewed certificate is served");
  } finally {
    await server.close(0);
  }
});

import { join, resolve } from "node:path";
import { loadConfig } from "../common/config.js";
import { exitOnStartupFailure } from "../common/lifecycle.js";
import { defaultTrustDomain, meshRoles } from "../common/mesh-security/identity.js";
import { ensureLocalPki } from "../common/mesh-security/local-pki.js";
import { defaultPkiDir, launcherConfigSchema } from "./config.js";

/**
 * `npm run pki`: makes the local mesh CA and every identity's certificate (what
 * `npm start` does on first run) and says where they are, with the grpcurl flags of
 * the operator identity.
 */
try {
  const config = loadConfig(launcherConfigSchema.pick({ pkiDir: true }), { argv: process.argv.slice(2), env: process.env }, "INFERMESH_");
  const directory = resolve(config.pkiDir || defaultPkiDir(process.env));
  const report = await ensureLocalPki(directory, defaultTrustDomain);
  process.stdout.write(`mesh CA: ${join(directory, "ca.crt")}\n`);
  for (const role of meshRoles) {
    process.stdout.write(
      `${role.padEnd(12)} ${join(directory, role)}/{tls.crt,tls.key,ca.crt}${report.issued.includes(role) ? "  (new)" : ""}\n`,
    );
  }
  for (const { file, notAfter } of report.expiring) process.stdout.write(`warning: ${file} ends ${notAfter.toISOString()}\n`);
  const operator = join(directory, "operator");
  process.stdout.write(
    `\ngrpcurl as the operator (health, reflection, read-only RPCs):\n  grpcurl -cacert ${operator}/ca.crt -cert ${operator}/tls.crt -key ${operator}/tls.key localhost:50052 list\n`,
  );
} catch (error) {
  exitOnStartupFailure(undefined, error);
}

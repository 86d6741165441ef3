import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { z } from "zod";
import { configFileOf, integer, loadConfig } from "./config.js";
import { LiveConfig } from "./live-config.js";
import { waitFor } from "../../test/support/harness.js";

const schema = z.object({
  listen: z.string().default("127.0.0.1:1"),
  limit: integer(1, 100).default(10),
  apiKeys: z.array(z.object({ key: z.string() })).default([]),
});
type Config = z.infer<typeof schema>;

/** A LiveConfig over a YAML file, the settings it applied, and the lines it logged. */
function harness(text: string) {
  const file = join(mkdtempSync(join(tmpdir(), "infermesh-live-")), "config.yaml");
  writeFileSync(file, text);
  const sources = { argv: ["--config", file], env: {} };
  const lines: string[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => lines.push(line) });
  const applied: { next: Config; changed: readonly string[] }[] = [];
  const registry = new Registry();
  const load = () => loadConfig(schema, sources, "TEST_");
  const live = new LiveConfig<Config>({
    service: "test",
    initial: load(),
    load,
    reloadable: ["limit", "apiKeys"],
    apply: (next, changed) => applied.push({ next, changed }),
    file: configFileOf(sources, "TEST_"),
    logger,
    registry,
  });
  const metric = async (name: string) => (await registry.getSingleMetricAsString(name)).split("\n").filter((line) => !line.startsWith("#"));
  return { file, live, lines, applied, metric };
}

test("a reload puts the changed reloadable settings in force together and counts a version", async () => {
  const { file, live, applied, metric } = harness("limit: 10\n");
  writeFileSync(file, "limit: 20\napiKeys: [{ key: sk-one }]\n");
  const outcome = live.reload("sighup");
  assert.deepEqual(outcome, { outcome: "applied", applied: ["limit", "apiKeys"], needRestart: [] });
  assert.equal(live.current.limit, 20);
  assert.equal(live.version, 2);
  assert.deepEqual(
    applied.map(({ changed }) => changed),
    [["limit", "apiKeys"]],
  );
  assert.ok(Object.isFrozen(live.current));
  assert.deepEqual(await metric("infermesh_config_reloads_total"), [
    'infermesh_config_reloads_total{outcome="applied",trigger="sighup"} 1',
  ]);
  // The same file again changes nothing.
  assert.equal(live.reload("sighup").outcome, "unchanged");
  assert.equal(live.version, 2);
});

test("an invalid file keeps the running config, says which setting and where in the log, and raises the metric; no value is logged", async () => {
  const { file, live, lines, applied, metric } = harness("limit: 10\napiKeys: [{ key: sk-secret-one }]\n");
  writeFileSync(file, "limit: 1000\napiKeys: [{ key: sk-secret-two }]\n");
  const outcome = live.reload("file");
  assert.equal(outcome.outcome, "rejected");
  assert.equal(live.current.limit, 10);
  assert.equal(live.version, 1);
  assert.deepEqual(applied, []);
  const logged = lines.join("");
  assert.match(
    logged,
    /configuration reload rejected, version 1 keeps running: invalid configuration:\\n {2}setting \\"limit\\" \(file [^)]+\): /,
  );
  assert.doesNotMatch(logged, /sk-secret/);
  assert.deepEqual(await metric("infermesh_config_reload_failing"), ["infermesh_config_reload_failing 1"]);
  // A file the YAML parser cannot read: its text (which may hold a key) stays out of the log.
  writeFileSync(file, "apiKeys: [{ key: sk-secret-three }\nlimit: : 3\n");
  assert.equal(live.reload("file").outcome, "rejected");
  assert.doesNotMatch(lines.join(""), /sk-secret/);
  // Fixed: applied, and the metric falls.
  writeFileSync(file, "limit: 30\n");
  assert.equal(live.reload("file").outcome, "applied");
  assert.deepEqual(await metric("infermesh_config_reload_failing"), ["infermesh_config_reload_failing 0"]);
});

test("a setting that takes a restart is named and keeps its running value; the others still apply", () => {
  const { file, live, lines } = harness("limit: 10\n");
  writeFileSync(file, "limit: 11\nlisten: 127.0.0.1:2\n");
  assert.deepEqual(live.reload("sighup"), { outcome: "applied", applied: ["limit"], needRestart: ["listen"] });
  assert.equal(live.current.listen, "127.0.0.1:1");
  assert.match(lines.join(""), /listen changed, but take a restart to change: the running values stay until then/);
});

test("a change of the file reloads by itself, as SIGHUP does", async () => {
  const { file, live } = harness("limit: 10\n");
  live.watch();
  try {
    writeFileSync(file, "limit: 42\n");
    await waitFor("the file's change to apply", () => live.current.limit === 42, 10_000);
    process.kill(process.pid, "SIGHUP"); // Nothing changed: no new version, and the process lives on.
    writeFileSync(file, "limit: 43\n");
    await waitFor("the second change to apply", () => live.current.limit === 43, 10_000);
    assert.equal(live.version, 3);
  } finally {
    live.close();
  }
});

import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { asksForHelp, launcherConfigSchema, launcherUsage, loadLauncherConfig } from "./config.js";

const home = { HOME: "/home/ada" };
const load = (argv: string[], env: Record<string, string> = {}) => loadLauncherConfig({ argv, env: { ...home, ...env } });

test("with no settings the mesh takes the default ports, the test model and the per-user PKI", () => {
  const config = load([]);
  assert.equal(config.ports.gatewayHttp, 8000);
  assert.equal(config.ports.gatewayGrpc, 50050);
  assert.equal(config.ports.router, 50052);
  assert.equal(config.engineChoice.engine, "llamacpp");
  assert.equal(config.pkiDir, "/home/ada/.cache/infermesh/pki");
  assert.equal(loadLauncherConfig({ argv: [], env: { XDG_CACHE_HOME: "/xdg" } }).pkiDir, "/xdg/infermesh/pki");
  assert.equal(config.gatewayConfig, "");
  assert.ok(Object.isFrozen(config));
});

test("flags and INFERMESH_* variables set ports, the offset, the model and the engine", () => {
  const config = load(["--port", "9000", "--port-offset", "300", "--model", "sim:h100-gpt-oss-120b", "--workers", "2", "--pki-dir", "pki"]);
  assert.equal(config.ports.gatewayHttp, 9000);
  assert.equal(config.ports.gatewayGrpc, 50350);
  assert.equal(config.ports.workerMetricsBase, 9410);
  assert.deepEqual(config.engineChoice.workerArgs, ["--engine", "sim", "--sim-preset", "h100-gpt-oss-120b"]);
  assert.equal(config.pkiDir, join(process.cwd(), "pki"), "a relative directory is taken from where npm start runs");
  const fromEnv = load([], { INFERMESH_PORT_OFFSET: "100", INFERMESH_MODEL: "org/name", INFERMESH_UPSTREAM_URL: "http://127.0.0.1:8001" });
  assert.equal(fromEnv.ports.gatewayHttp, 8100);
  assert.equal(fromEnv.engineChoice.engine, "openai");
  assert.equal(load(["--grpc-port", "7000"], { INFERMESH_GRPC_PORT: "6000" }).ports.gatewayGrpc, 7000, "a flag wins over the environment");
});

test("unknown flags, bad values, contradictions and replaced variables stop the start with a message that names them", () => {
  assert.throws(() => load(["--model-path", "a.gguf"]), /invalid command line: Unknown option '--model-path'/);
  assert.throws(() => load(["--port", "0"]), /setting "port" \(flag --port\)/);
  assert.throws(() => load(["--engine", "vllm"]), /setting "engine" \(flag --engine\)/);
  assert.throws(
    () => load(["--upstream-url", "127.0.0.1:8001"]),
    /setting "upstreamUrl" \(flag --upstream-url\): expected an http:\/\/ or https:\/\/ URL/,
  );
  assert.throws(
    () => load(["--port-offset", "20000"]),
    /invalid configuration:\n {2}the gateway's gRPC API would listen on port 70050, past 65535/,
  );
  assert.throws(() => load(["--engine", "openai", "--model", "sim"]), /--engine openai contradicts --model sim/);
  assert.throws(
    () => load([], { INFERMESH_MODEL_PATH: "/m.gguf", INFERMESH_WORKER_ENGINE: "sim" }),
    /INFERMESH_MODEL_PATH is set, but npm start takes --model \(INFERMESH_MODEL\) instead\n {2}INFERMESH_WORKER_ENGINE is set, but npm start takes --engine \(INFERMESH_ENGINE\) instead/,
  );
});

test("control-plane replicas: several of each with a Redis URL; several admissions without one are refused, as their limits would multiply", () => {
  const shared = load(["--control-plane-replicas", "2", "--redis-url", "redis://127.0.0.1:6379"]);
  assert.equal(shared.ports.extraReplicas.admission.length, 1);
  assert.equal(shared.ports.extraReplicas.memoryGuard.length, 1);
  assert.equal(shared.ports.extraReplicas.router.length, 1);
  assert.equal(shared.redisUrl, "redis://127.0.0.1:6379");
  // Routers alone need no Redis.
  assert.equal(load(["--router-replicas", "3"]).ports.extraReplicas.router.length, 2);
  assert.throws(() => load(["--control-plane-replicas", "2"]), /--control-plane-replicas above 1 needs --redis-url/);
  assert.throws(() => load(["--redis-url", "http://redis:6379"]), /setting "redisUrl"/);
});

test("a gateway config file is checked before anything starts, and passed on as an absolute path", () => {
  const directory = mkdtempSync(join(tmpdir(), "infermesh-launcher-"));
  const good = join(directory, "gateway.yaml");
  writeFileSync(good, 'auth: required\napiKeys:\n  - { name: test, key: "sk-test-0123456789abcdef", tenant: acme }\n');
  assert.equal(load(["--gateway-config", good]).gatewayConfig, good);
  assert.equal(load([], { INFERMESH_GATEWAY_CONFIG: good }).gatewayConfig, good, "the gateway's own variable names the same file");
  const bad = join(directory, "bad.yaml");
  writeFileSync(bad, "auth: sometimes\n");
  assert.throws(
    () => load(["--gateway-config", bad]),
    /the gateway refuses --gateway-config .*bad.yaml: invalid configuration:\n {2}setting "auth"/,
  );
  assert.throws(() => load(["--gateway-config", join(directory, "missing.yaml")]), /cannot read config file .*missing.yaml: ENOENT/);
});

test("--help lists every setting with its default and how the engine follows from the model", () => {
  assert.ok(asksForHelp(["--port", "1", "--help"]));
  assert.ok(asksForHelp(["-h"]));
  assert.ok(!asksForHelp(["--model", "x.gguf"]));
  const usage = launcherUsage(home);
  for (const key of Object.keys(launcherConfigSchema.shape)) {
    const flag = key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
    assert.match(usage, new RegExp(`^ {2}--${flag} `, "m"), `--${flag} is listed`);
  }
  assert.match(usage, /--port N +gateway HTTP port, the OpenAI API \(default: 8000 \+ port offset\)/);
  assert.match(usage, /--port-offset N +.*\(default: 0\)/);
  assert.match(usage, /--workers N +.*\(default: 1\)/);
  assert.match(usage, /--engine llamacpp\|openai\|sim +.*\(default: from --model\)/);
  assert.match(usage, /--pki-dir DIR +.*\(default: \/home\/ada\/.cache\/infermesh\/pki\)/);
  assert.match(usage, /--log-format pretty\|json +.*\(default: pretty\)/);
  assert.match(usage, /sim: the GPU simulator \(presets: h100-gpt-oss-20b, h100-gpt-oss-120b\)/);
  assert.match(usage, /\/home\/ada\/.cache\/infermesh\/models/);
});

/**
 * `npm start` as a user runs it: the built launcher as a process, on the simulator so
 * no model is built or loaded. Two meshes run side by side at different port offsets,
 * one behind an `auth: required` gateway config.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { repoRoot } from "../../services/common/paths.js";
import { listeningPorts, meshPorts } from "../../services/launcher/mesh.js";
import { portsTaken } from "../../services/launcher/port-check.js";
import { makeTestPki, waitFor } from "../support/harness.js";

const launcherScript = join(repoRoot(), "dist/services/launcher/main.js");
const apiKey = "sk-launcher-test-0123456789";

/** The launcher's environment: no INFERMESH_* settings from the caller's shell, a fast simulator, no telemetry. */
function launcherEnv(cacheHome: string): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("INFERMESH_")));
  return { ...env, XDG_CACHE_HOME: cacheHome, OTEL_SDK_DISABLED: "true", INFERMESH_WORKER_SIM_TIME_SCALE: "0.01" };
}

interface Launcher {
  readonly process: ChildProcess;
  /** Every line of its stdout and stderr. */
  readonly lines: string[];
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>;
}

function launch(args: readonly string[], env: NodeJS.ProcessEnv): Launcher {
  const child = spawn(process.execPath, [launcherScript, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    let rest = "";
    stream.setEncoding("utf8").on("data", (chunk: string) => {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop() ?? "";
      lines.push(...parts);
    });
  }
  return { process: child, lines, exited: once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]> };
}

async function readyLine(launcher: Launcher): Promise<string> {
  try {
    return await waitFor(
      "the launcher's ready line",
      () => {
        if (launcher.process.exitCode !== null) throw new Error(`the launcher exited with code ${launcher.process.exitCode}`);
        return launcher.lines.find((line) => line.startsWith("[infermesh] ready: "));
      },
      60_000,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${launcher.lines.join("\n")}`);
  }
}

/**
 * A port offset whose every port is free now and outside Linux's ephemeral range
 * (32768-60999, where other tests' port-0 listeners and outgoing connections land),
 * sharing none with `avoid`.
 */
async function freeOffset(avoid: ReadonlySet<number>): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const offset = 10_950 + Math.floor(Math.random() * 4_400);
    const ports = listeningPorts(meshPorts({ offset, workers: 1 }), 1);
    if (ports.some(([, port]) => avoid.has(port))) continue;
    if ((await portsTaken("127.0.0.1", ports)).length === 0) return offset;
  }
  throw new Error("no port offset with every port free");
}

const portsAt = (offset: number) => new Set(listeningPorts(meshPorts({ offset, workers: 1 }), 1).map(([, port]) => port));

let env: NodeJS.ProcessEnv;
let guarded: { launcher: Launcher; offset: number };
let open: { launcher: Launcher; offset: number };

before(async () => {
  const directory = mkdtempSync(join(tmpdir(), "infermesh-launcher-"));
  env = launcherEnv(join(directory, "cache"));
  const gatewayConfig = join(directory, "gateway.yaml");
  writeFileSync(gatewayConfig, `auth: required\napiKeys:\n  - { name: test, key: "${apiKey}", tenant: acme }\n`);
  // Both meshes share one CA made beforehand, as two meshes of one user share the per-user one.
  const pkiDir = await makeTestPki();
  const guardedOffset = await freeOffset(new Set());
  const openOffset = await freeOffset(portsAt(guardedOffset));
  guarded = {
    offset: guardedOffset,
    launcher: launch(
      ["--model", "sim:h100-gpt-oss-20b", "--port-offset", String(guardedOffset), "--gateway-config", gatewayConfig, "--pki-dir", pkiDir],
      env,
    ),
  };
  open = { offset: openOffset, launcher: launch(["--engine", "sim", "--port-offset", String(openOffset), "--pki-dir", pkiDir], env) };
});

after(async () => {
  for (const { launcher } of [guarded, open]) {
    if (launcher && launcher.process.exitCode === null && launcher.process.signalCode === null) {
      launcher.process.kill("SIGTERM");
      await launcher.exited;
    }
  }
});

test("two launchers at different port offsets run side by side, each ready on its own ports", async () => {
  const [guardedReady, openReady] = await Promise.all([readyLine(guarded.launcher), readyLine(open.launcher)]);
  assert.equal(
    guardedReady,
    `[infermesh] ready: OpenAI API at http://127.0.0.1:${8000 + guarded.offset}/v1, gRPC API at 127.0.0.1:${50050 + guarded.offset}; ` +
      "models: listing needs an API key (the gateway's auth is required)",
  );
  assert.equal(
    openReady,
    `[infermesh] ready: OpenAI API at http://127.0.0.1:${8000 + open.offset}/v1, gRPC API at 127.0.0.1:${50050 + open.offset}; models: sim-gpt-oss-20b`,
  );
  assert.ok(guarded.launcher.lines.includes("[infermesh] engine sim (from --model sim:h100-gpt-oss-20b)"));
  assert.ok(open.launcher.lines.includes("[infermesh] engine sim (from --engine sim: preset h100-gpt-oss-20b)"));
  const models = (await fetch(`http://127.0.0.1:${8000 + open.offset}/v1/models`).then((response) => response.json())) as {
    data: { id: string }[];
  };
  assert.deepEqual(
    models.data.map((model) => model.id),
    ["sim-gpt-oss-20b"],
  );
});

test("with an auth: required gateway config the launcher stays up, and a request with the key is served", async () => {
  await readyLine(guarded.launcher);
  const baseURL = `http://127.0.0.1:${8000 + guarded.offset}/v1`;
  const question = { model: "sim-gpt-oss-20b", messages: [{ role: "user" as const, content: "Hello?" }], max_tokens: 8 };
  await assert.rejects(new OpenAI({ baseURL, apiKey: "sk-not-a-key-0123456789", maxRetries: 0 }).chat.completions.create(question), {
    status: 401,
  });
  const answer = await new OpenAI({ baseURL, apiKey, maxRetries: 0 }).chat.completions.create(question);
  assert.equal(answer.usage?.completion_tokens, 8);
  assert.equal(guarded.launcher.process.exitCode, null, "the launcher is still running");
  assert.ok(!guarded.launcher.lines.some((line) => line.includes("failed to start")), guarded.launcher.lines.join("\n"));
});

test("a third launcher on ports a mesh holds refuses to start and says which", async () => {
  await readyLine(open.launcher);
  const third = launch(["--engine", "sim", "--port-offset", String(open.offset)], env);
  const [code] = await third.exited;
  assert.equal(code, 1);
  assert.match(
    third.lines.join("\n"),
    new RegExp(
      `failed to start: port ${8000 + open.offset} \\(the gateway's HTTP API\\), .* in use, perhaps by another mesh; choose other ports with --port-offset N`,
    ),
  );
  assert.equal(open.launcher.process.exitCode, null, "the running mesh is untouched");
});

test("SIGTERM stops the launcher and every service of its mesh", async () => {
  await readyLine(guarded.launcher);
  guarded.launcher.process.kill("SIGTERM");
  const [code] = await guarded.launcher.exited;
  assert.equal(code, 0);
  assert.ok(guarded.launcher.lines.includes("[infermesh] SIGTERM: stopping all services"));
  assert.ok(guarded.launcher.lines.includes("[infermesh] stopped"));
  assert.deepEqual(
    await portsTaken("127.0.0.1", listeningPorts(meshPorts({ offset: guarded.offset, workers: 1 }), 1)),
    [],
    "every port is free again",
  );
});

test("--help lists the flags and exits 0; an unknown flag fails naming it", async () => {
  const help = launch(["--help"], env);
  assert.deepEqual(await help.exited, [0, null]);
  const text = help.lines.join("\n");
  for (const flag of [
    "--port N",
    "--grpc-port N",
    "--port-offset N",
    "--engine llamacpp|openai|sim",
    "--upstream-url URL",
    "--gateway-config FILE",
    "--workers N",
    "--model PATH|NAME",
  ]) {
    assert.ok(text.includes(`  ${flag} `), `${flag} is listed`);
  }
  const unknown = launch(["--model-path", "x.gguf"], env);
  assert.deepEqual(await unknown.exited, [1, null]);
  assert.match(unknown.lines.join("\n"), /failed to start: invalid command line: Unknown option '--model-path'/);
});

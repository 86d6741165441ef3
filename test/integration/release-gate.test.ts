import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { repoRoot } from "../../services/common/paths.js";
import { runGate } from "../../tools/gate/gate.js";
import { loadSpec } from "../../tools/gate/slo.js";
import { startTestMesh, type TestMesh } from "../support/harness.js";

// The release gate against a sim mesh of three workers: `sim-gpt-oss-20b` on a healthy
// one, `sim-canary` on one that fails a third of its generations, and `sim-slow` on one
// forty times slower than an H100. The phases are seconds long here.
let mesh: TestMesh;
let directory: string;

before(async () => {
  mesh = await startTestMesh({
    workers: 3,
    workerArgs: ["--engine", "sim", "--sim-answer-tokens-min", "16", "--sim-answer-tokens-max", "32"],
    workerArgsOf: (index) =>
      [
        ["--sim-time-scale", "0.02"],
        ["--model-id", "sim-canary", "--sim-time-scale", "0.5", "--sim-failure-ratio", "0.3"],
        ["--model-id", "sim-slow", "--sim-time-scale", "40"],
      ][index]!,
    admissionArgs: ["--max-concurrency", "64"],
  });
  directory = mkdtempSync(join(tmpdir(), "infermesh-gate-"));
  writeFileSync(
    join(directory, "slo.yaml"),
    stringify({
      slo: { ttftP95Ms: 1_500, e2eP95Ms: 5_000, errorRate: 0.005, qpsFloor: 3 },
      phases: { step: { concurrency: [1, 4], secondsEach: 1.5 }, spike: { qps: 10, seconds: 2 }, soak: { qps: 4, seconds: 3 } },
      longContextShare: 0.2,
    }),
  );
});

after(() => mesh?.stop());

test("a healthy fleet passes every SLO in every phase: PROMOTE", async () => {
  const lines: string[] = [];
  const { verdict, samples } = await runGate(
    { url: mesh.baseUrl, model: "sim-gpt-oss-20b" },
    loadSpec(join(directory, "slo.yaml"), false),
    (line) => lines.push(line),
  );
  const failing = verdict.checks.filter((check) => !check.pass);
  assert.deepEqual(failing, [], JSON.stringify(failing));
  assert.equal(verdict.decision, "PROMOTE");
  assert.deepEqual(
    verdict.phases.map((phase) => phase.phase),
    ["step", "spike", "soak"],
  );
  assert.deepEqual(
    verdict.steps.map((step) => step.concurrency),
    [1, 4],
  );
  // Streamed and timed: every request has its first token's time, and long contexts were sent.
  assert.ok(samples.every((sample) => sample.ok && sample.ttftMs !== undefined && sample.ttftMs <= sample.e2eMs));
  assert.ok(samples.some((sample) => sample.longContext) && samples.some((sample) => !sample.longContext));
  // The soak's open loop sent its 12 requests on schedule.
  assert.equal(samples.filter((sample) => sample.phase === "soak").length, 12);
  assert.ok(
    lines.some((line) => line.startsWith("step 4:")),
    "progress is reported while it runs",
  );
});

test("a fleet made slow is held on time to first token, and only on the SLOs it breaks", async () => {
  const { verdict } = await runGate({ url: mesh.baseUrl, model: "sim-slow" }, loadSpec(join(directory, "slo.yaml"), false));
  assert.equal(verdict.decision, "HOLD");
  const failing = new Set(verdict.checks.filter((check) => !check.pass).map((check) => check.slo));
  assert.ok(failing.has("ttftP95Ms"), JSON.stringify(verdict.checks));
  // Slow, not broken: nothing failed.
  assert.ok(verdict.checks.filter((check) => check.slo === "errorRate").every((check) => check.pass && check.measured === 0));
});

test("the CLI holds a canary made worse: exit 1, the failing SLOs named with their measured values, the figures as JSON", async () => {
  const out = join(directory, "report");
  const run = promisify(execFile)(
    process.execPath,
    [
      join(repoRoot(), "dist/tools/gate/main.js"),
      "--target",
      mesh.baseUrl,
      "--model",
      "sim-canary",
      "--slo",
      join(directory, "slo.yaml"),
      "--out",
      out,
    ],
    { encoding: "utf8" },
  );
  const failure = await run.then(
    () => assert.fail("the gate passed a canary that fails a third of its requests"),
    (error: { code: number; stdout: string }) => error,
  );
  assert.equal(failure.code, 1);
  assert.match(failure.stdout, /verdict: HOLD/);
  // A third of the requests fail: the error rate fails in every phase, beside its threshold.
  for (const phase of ["step", "spike", "soak"]) {
    assert.match(failure.stdout, new RegExp(`FAIL\\s+errorRate\\s+${phase}\\s+\\d+\\.\\d+ %\\s+≤ 0\\.50 %`));
  }
  assert.ok(existsSync(join(out, "report.json")));
  // The report a person reads: the verdict, the failing rows, the charts' data and Chart.js itself, inline.
  const html = readFileSync(join(out, "report.html"), "utf8");
  assert.match(html, /<span class="decision HOLD">HOLD<\/span>/);
  assert.match(html, /<tr class="fail"><td>FAIL<\/td><td>errorRate<\/td><td>soak<\/td>/);
  for (const chart of ["step-latency", "step-throughput", "spike", "soak"]) assert.match(html, new RegExp(`<canvas id="${chart}">`));
  assert.match(html, /Chart\.js v4/);
  const report = JSON.parse(readFileSync(join(out, "report.json"), "utf8"));
  assert.equal(report.decision, "HOLD");
  assert.ok(report.checks.some((check: { slo: string; pass: boolean }) => check.slo === "errorRate" && !check.pass));
});

test("a usage error or an invalid SLO file exits 2 and says why", async () => {
  const bad = join(directory, "bad.yaml");
  writeFileSync(bad, stringify({ slo: { errorRate: 2 } }));
  const failure = (await promisify(execFile)(
    process.execPath,
    [join(repoRoot(), "dist/tools/gate/main.js"), "--target", mesh.baseUrl, "--model", "m", "--slo", bad],
    { encoding: "utf8" },
  ).catch((error) => error)) as { code: number; stderr: string };
  assert.equal(failure.code, 2);
  assert.match(failure.stderr, /slo\.errorRate/);
});

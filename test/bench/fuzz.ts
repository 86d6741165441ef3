/**
 * The fuzz suite run long: the same cases and properties as test/integration/fuzz.test.ts
 * against a fresh mesh (a llama.cpp worker and a simulated one), for as long as asked.
 *
 *   npm run fuzz                          (10 minutes: 200 s per kind of case)
 *   npm run fuzz -- --seconds 60 --seed 42
 *
 * Prints the cases run and the failures by kind, with fast-check's shrunk counterexample
 * for a property that broke, and whether any process restarted. Exits non-zero on a
 * failure.
 */
import { parseArgs } from "node:util";
import { fuzzMeshOptions, fuzzModels, report, runFuzzSuite } from "../support/fuzz.js";
import { startTestMesh } from "../support/harness.js";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "600" }, seed: { type: "string" } } });
const seconds = Number(values.seconds);
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
const children = ["memory-guard", "router", "admission", "worker-0", "worker-1", "gateway"];

const mesh = await startTestMesh(fuzzMeshOptions);
let failed = false;
try {
  const pids = children.map((child) => mesh.supervisor.pid(child));
  const started = performance.now();
  const { tallies, failures } = await runFuzzSuite(mesh, { secondsPerKind: seconds / 3, seed });
  console.log(`fuzz: seed ${seed}, ${((performance.now() - started) / 1000).toFixed(0)} s\n${report(tallies)}`);
  for (const failure of failures) console.log(`\n${failure}`);
  const restarted = children.filter((child, index) => mesh.supervisor.pid(child) !== pids[index]);
  console.log(restarted.length === 0 ? "no process restarted" : `restarted: ${restarted.join(", ")}`);
  for (const model of fuzzModels) {
    const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, messages: [{ role: "user", content: "Hello" }], max_tokens: 4 }),
    });
    console.log(`afterwards ${model}: HTTP ${response.status}`);
    failed ||= response.status !== 200;
  }
  failed ||= failures.length > 0 || restarted.length > 0;
} finally {
  await mesh.stop();
}
process.exit(failed ? 1 : 0);

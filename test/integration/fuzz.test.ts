/**
 * The fuzz suite, bounded to about a minute: generated HTTP requests (bodies, headers,
 * URLs), public gRPC chats and raw internal gRPC messages against a real mesh (a
 * llama.cpp worker and a simulated one). No 5xx but 503/504 with Retry-After, every
 * error in OpenAI's shape or a precise gRPC status, no process restarts, and the mesh
 * serves normally afterwards. `npm run fuzz -- --seconds 600` runs it longer.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createClient } from "nice-grpc";
import { AdmissionServiceDefinition } from "../../gen/infermesh/admission/v1/admission_service.js";
import { fuzzMeshOptions, fuzzModels, report, runFuzzSuite } from "../support/fuzz.js";
import { startTestMesh, waitFor, type TestMesh } from "../support/harness.js";

let mesh: TestMesh;

before(async () => {
  mesh = await startTestMesh(fuzzMeshOptions);
});

after(async () => {
  await mesh?.stop();
});

const children = ["memory-guard", "router", "admission", "worker-0", "worker-1", "gateway"];

test("a minute of fuzzing: no 5xx but 503/504 with Retry-After, OpenAI-shaped errors, precise gRPC statuses, no restarts, and the mesh serves afterwards", async () => {
  const pids = children.map((child) => mesh.supervisor.pid(child));
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
  const { tallies, failures } = await runFuzzSuite(mesh, { secondsPerKind: Number(process.env.FUZZ_SECONDS_PER_KIND ?? 20), seed });
  console.log(`fuzz seed ${seed} (FUZZ_SEED=${seed} repeats it)\n${report(tallies)}`);
  assert.deepEqual(failures, []);
  assert.ok(
    Object.values(tallies).every((tally) => tally.cases > 20),
    "every kind ran",
  );
  assert.deepEqual(
    children.map((child) => mesh.supervisor.pid(child)),
    pids,
    "no process restarted",
  );
  for (const model of fuzzModels) {
    const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, messages: [{ role: "user", content: "Hello" }], max_tokens: 4 }),
    });
    assert.equal(response.status, 200, `${model} serves after the fuzzing: ${await response.text()}`);
  }
  const admission = createClient(AdmissionServiceDefinition, mesh.channel(mesh.ports.admission, "admission", "gateway"));
  await waitFor("every admission slot to be back", async () => (await admission.getStats({})).inFlight === 0);
});

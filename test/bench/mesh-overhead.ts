/**
 * Mesh overhead: the latency a 1-token chat request gains by going through the gateway,
 * admission and the router, against calling the same worker's Generate directly. The
 * worker runs the `sim` engine at zero cost, so all that is measured is the mesh.
 * Both paths run in one process, in alternating rounds, against one mesh on this
 * machine; the figures to quote are the medians and the differences between paths.
 *
 *   npm run bench                     (defaults: 400 requests per path, level and round, at concurrency 1 and 64)
 *   npm run bench -- --requests 200   (per concurrency level and path, per round)
 */
import { parseArgs } from "node:util";
import { createClient } from "nice-grpc";
import { WorkerServiceDefinition } from "../../gen/infermesh/worker/v1/worker_service.js";
import { startTestMesh } from "../support/harness.js";

const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "400" },
    rounds: { type: "string", default: "2" },
    concurrency: { type: "string", default: "1,64" },
  },
});
const requestsPerLevel = Number(values.requests);
const rounds = Number(values.rounds);
const levels = values.concurrency.split(",").map(Number);

const model = "sim-gpt-oss-20b";
const messages = [{ role: "user", content: "Hi" }];
const mesh = await startTestMesh({
  admissionArgs: ["--max-concurrency", "256"],
  workerArgs: ["--engine", "sim", "--sim-time-scale", "0"],
});
const worker = createClient(WorkerServiceDefinition, mesh.channel(mesh.ports.workerBase, "worker", "gateway"));
const body = JSON.stringify({ model, messages, max_tokens: 1, temperature: 0 });

async function direct(): Promise<void> {
  for await (const _event of worker.generate({
    requestId: "bench",
    model,
    messages,
    prompt: undefined,
    sampling: { maxTokens: 1, temperature: 0, stop: [] },
  })) {
    // Drain the stream: started, delta, finished.
  }
}

async function viaGateway(): Promise<void> {
  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  await response.arrayBuffer();
}

const wallMs = new Map<string, number>();
const samples = new Map<string, number[]>();

/** Latencies (ms) of `total` calls of `call`, `concurrency` at a time. */
async function measure(call: () => Promise<void>, concurrency: number, total: number, key = ""): Promise<number[]> {
  const latencies: number[] = [];
  let started = 0;
  const begin = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (started < total) {
        started += 1;
        const begin = performance.now();
        await call();
        latencies.push(performance.now() - begin);
      }
    }),
  );
  wallMs.set(key, (wallMs.get(key) ?? 0) + performance.now() - begin);
  return latencies;
}

const rate = (key: string) => ((samples.get(key)!.length * 1000) / wallMs.get(key)!).toFixed(0);
const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

try {
  // Warm up both paths (JIT, connections, the model's first evaluations).
  await measure(direct, 4, 100);
  await measure(viaGateway, 4, 100);
  for (let round = 0; round < rounds; round += 1) {
    for (const concurrency of levels) {
      for (const [path, call] of [
        ["direct", direct],
        ["gateway", viaGateway],
      ] as const) {
        const key = `${path}@${concurrency}`;
        samples.set(key, [...(samples.get(key) ?? []), ...(await measure(call, concurrency, requestsPerLevel, key))]);
      }
    }
  }
  console.log(
    `mesh overhead, 1-token chat, zero-cost sim worker, ${rounds} alternating rounds x ${requestsPerLevel} requests per path and level`,
  );
  console.log(
    "concurrency | direct p50 | gateway p50 | added p50 | direct p99 | gateway p99 | added p99 | ratio p50 | direct req/s | gateway req/s",
  );
  for (const concurrency of levels) {
    const directSorted = samples.get(`direct@${concurrency}`)!.sort((a, b) => a - b);
    const gatewaySorted = samples.get(`gateway@${concurrency}`)!.sort((a, b) => a - b);
    const row = [50, 99].flatMap((p) => {
      const d = percentile(directSorted, p);
      const g = percentile(gatewaySorted, p);
      return [d, g, g - d];
    });
    const ratio = percentile(gatewaySorted, 50) / percentile(directSorted, 50);
    console.log(
      `${String(concurrency).padStart(11)} | ${[row[0], row[1], row[2]].map((v) => `${v!.toFixed(2)} ms`.padStart(10)).join(" | ")} | ` +
        `${[row[3], row[4], row[5]].map((v) => `${v!.toFixed(2)} ms`.padStart(10)).join(" | ")} | ${ratio.toFixed(2)}x | ` +
        `${rate(`direct@${concurrency}`).padStart(12)} | ${rate(`gateway@${concurrency}`).padStart(13)}`,
    );
  }
} finally {
  await mesh.stop();
}

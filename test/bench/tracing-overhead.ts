/**
 * What tracing costs a request: the same streamed chat through the gateway with
 * tracing off, at a 3 % share of traces kept, and at 100 %, each exported over OTLP to a
 * receiver in this process (a Collector's work, not measured). The worker is the
 * zero-cost sim, so the figures are the mesh's own latency, the worst case for a
 * relative overhead: a real generation takes far longer. Configurations alternate in
 * rounds on this one machine; quote the medians and the ratios to "off".
 *
 *   npm run bench:tracing                     (300 requests per configuration, level and round; 2 rounds)
 *   npm run bench:tracing -- --requests 500 --rounds 3
 */
import { parseArgs } from "node:util";
import { OtlpCollector, startTestMesh } from "../support/harness.js";

const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "300" },
    rounds: { type: "string", default: "2" },
    concurrency: { type: "string", default: "1,16" },
  },
});
const requests = Number(values.requests);
const rounds = Number(values.rounds);
const levels = values.concurrency.split(",").map(Number);
const model = "sim-gpt-oss-20b";
const body = JSON.stringify({ model, messages: [{ role: "user", content: "Hi" }], max_tokens: 8, temperature: 0, stream: true });
const configurations = [
  { name: "off", ratio: undefined },
  { name: "3 %", ratio: 0.03 },
  { name: "100 %", ratio: 1 },
] as const;

const collector = new OtlpCollector();
await collector.start();
const latencies = new Map<string, number[]>();
const wallMs = new Map<string, number>();

async function run(baseUrl: string, concurrency: number, key: string): Promise<void> {
  let started = 0;
  const begin = performance.now();
  const samples = latencies.get(key) ?? [];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (started < requests) {
        started += 1;
        const at = performance.now();
        const response = await fetch(`${baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
        await response.arrayBuffer();
        samples.push(performance.now() - at);
      }
    }),
  );
  latencies.set(key, samples);
  wallMs.set(key, (wallMs.get(key) ?? 0) + performance.now() - begin);
}

try {
  for (let round = 0; round < rounds; round += 1) {
    for (const configuration of configurations) {
      const mesh = await startTestMesh({
        admissionArgs: ["--max-concurrency", "256"],
        workerArgs: ["--engine", "sim", "--sim-time-scale", "0"],
        ...(configuration.ratio === undefined ? {} : { otlpEndpoint: collector.endpoint, traceSampleRatio: configuration.ratio }),
      });
      try {
        await run(mesh.baseUrl, 4, "warm-up");
        for (const concurrency of levels) await run(mesh.baseUrl, concurrency, `${configuration.name}@${concurrency}`);
      } finally {
        await mesh.stop();
      }
    }
  }
  const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
  console.log(`tracing overhead, streamed 8-token chat, zero-cost sim worker, ${rounds} alternating rounds x ${requests} requests`);
  console.log("concurrency | tracing | p50 | p99 | req/s | p50 vs off | req/s vs off");
  for (const concurrency of levels) {
    const base = latencies.get(`off@${concurrency}`)!.sort((a, b) => a - b);
    const baseRate = (base.length * 1000) / wallMs.get(`off@${concurrency}`)!;
    for (const { name } of configurations) {
      const key = `${name}@${concurrency}`;
      const sorted = latencies.get(key)!.sort((a, b) => a - b);
      const rate = (sorted.length * 1000) / wallMs.get(key)!;
      const p50 = percentile(sorted, 50);
      console.log(
        `${String(concurrency).padStart(11)} | ${name.padStart(7)} | ${p50.toFixed(2)} ms | ${percentile(sorted, 99).toFixed(2)} ms | ${rate.toFixed(0)} | ` +
          `${(((p50 - percentile(base, 50)) / percentile(base, 50)) * 100).toFixed(1)} % | ${(((rate - baseRate) / baseRate) * 100).toFixed(1)} %`,
      );
    }
  }
  console.log(`spans received: ${collector.spans.length}`);
} finally {
  await collector.stop();
}

/**
 * What tracing costs a request: the same streamed chat through the gateway with
 * tracing off, at a 3 % share of traces kept, and at 100 %, each exported over OTLP to a
 * receiver in this process (a Collector's work, not measured). The worker is the
 * zero-cost sim, so the figures are the mesh's own latency, the worst case for a
 * relative overhead: a real generation takes far longer. Besides latency and
 * throughput it reports the CPU time the mesh's processes spent per request (from
 * /proc), the cost itself, which a noisy shared machine disturbs less than latency.
 * Configurations alternate in rounds on this one machine; quote the medians and the
 * ratios to "off".
 *
 *   npm run bench:tracing                     (300 requests per configuration, level and round; 3 rounds)
 *   npm run bench:tracing -- --requests 500 --rounds 5
 */
import { readdirSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { OtlpCollector, startTestMesh } from "../support/harness.js";

const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "300" },
    rounds: { type: "string", default: "3" },
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
/** CPU seconds the mesh's processes spent, and the requests they served, per configuration and level. */
const cpuSeconds = new Map<string, number>();

/** CPU seconds (user and system) used so far by this process's children: the mesh's services. */
function meshCpuSeconds(): number {
  let ticks = 0;
  for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    // Fields after "(comm)": state, ppid, …; utime and stime are the 14th and 15th of the line.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[1]) === process.pid) ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / 100; // USER_HZ
}

async function run(baseUrl: string, concurrency: number, key: string): Promise<void> {
  let started = 0;
  const cpuBefore = meshCpuSeconds();
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
  cpuSeconds.set(key, (cpuSeconds.get(key) ?? 0) + meshCpuSeconds() - cpuBefore);
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
  const change = (value: number, base: number) => `${(((value - base) / base) * 100).toFixed(1)} %`;
  console.log("concurrency | tracing | p50 | p99 | req/s | mesh CPU/request | p50 vs off | req/s vs off | CPU vs off");
  for (const concurrency of levels) {
    const baseKey = `off@${concurrency}`;
    const base = latencies.get(baseKey)!.sort((a, b) => a - b);
    const baseRate = (base.length * 1000) / wallMs.get(baseKey)!;
    const baseCpu = (cpuSeconds.get(baseKey)! * 1e6) / base.length;
    for (const { name } of configurations) {
      const key = `${name}@${concurrency}`;
      const sorted = latencies.get(key)!.sort((a, b) => a - b);
      const rate = (sorted.length * 1000) / wallMs.get(key)!;
      const cpu = (cpuSeconds.get(key)! * 1e6) / sorted.length;
      const p50 = percentile(sorted, 50);
      console.log(
        `${String(concurrency).padStart(11)} | ${name.padStart(7)} | ${p50.toFixed(2)} ms | ${percentile(sorted, 99).toFixed(2)} ms | ${rate.toFixed(0)} | ` +
          `${cpu.toFixed(0)} µs | ${change(p50, percentile(base, 50))} | ${change(rate, baseRate)} | ${change(cpu, baseCpu)}`,
      );
    }
  }
  console.log(`spans received: ${collector.spans.length}`);
} finally {
  await collector.stop();
}

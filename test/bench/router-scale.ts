/**
 * Router scale: what one Pick costs the router (filter, score, pick and the commit that
 * records it) as the fleet grows, with every worker's prefix table full. Runs the
 * router's own Scheduler in this process, so the figure is the router's decision, without
 * the gRPC round trip around it (see `npm run bench` for that).
 *
 * Then the same workload on 1 and 2 router replicas at once (each its own thread with
 * its own copy of the fleet, as each replica is its own process): picks/s across them.
 *
 *   npm run bench:router                               (100, 1,000, 10,000 workers; 1 and 2 replicas of 1,000)
 *   npm run bench:router -- --workers 1000 --picks 50000 --blocks 8192 --replicas 1,2 --replica-fleet 1000
 */
import { parseArgs } from "node:util";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { ServingState } from "../../gen/infermesh/common/v1/common.js";
import { LoadReport } from "../../gen/infermesh/router/v1/router_service.js";
import { ManualClock } from "../../services/common/clock.js";
import { blockHashes } from "../../services/common/prefix-hash.js";
import { loadRouterConfig, schedulerConfig } from "../../services/router/config.js";
import { Fleet, type FleetMember } from "../../services/router/fleet.js";
import type { PickQuery } from "../../services/router/scheduling/plugin.js";
import { Scheduler } from "../../services/router/scheduling/scheduler.js";
import { PrefixTable } from "../../services/router/prefix-table.js";
import { SessionTable } from "../../services/router/session-table.js";
import { kvNeedTokens } from "../../services/common/kv-need.js";

const { values } = parseArgs({
  options: {
    workers: { type: "string", default: "100,1000,10000" },
    replicas: { type: "string", default: "1,2" },
    "replica-fleet": { type: "string", default: "1000" },
    picks: { type: "string", default: "20000" },
    /** Prefix blocks each worker's table holds (64 characters each). */
    blocks: { type: "string", default: "8192" },
    tenants: { type: "string", default: "500" },
  },
});
const fleetSizes = values.workers.split(",").map(Number);
const picks = Number(values.picks);
const blocksPerWorker = Number(values.blocks);
const tenants = Number(values.tenants);

/** A deterministic generator, so every fleet size sees the same workload. */
function seeded(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 0x1_0000_0000;
  };
}

/** Each tenant's system prompt: 1,500–6,000 characters (about 23–94 blocks). */
const systemPrompts = Array.from({ length: tenants }, (_, tenant) => {
  const random = seeded(tenant + 1);
  return `tenant ${tenant} policy. `.repeat(Math.floor(60 + random() * 240));
});

function buildFleet(size: number) {
  const clock = new ManualClock();
  const fleet = new Fleet(clock, { staleAfterMs: 5_000, freshReportMs: 2_000, pickExpireMs: 1_000 });
  const prefixes = new PrefixTable(blocksPerWorker);
  // The router's own defaults, so the bench measures what a deployment runs.
  const scheduler = new Scheduler(fleet, prefixes, new SessionTable(1_000_000), schedulerConfig(loadRouterConfig({ argv: [], env: {} })));
  const random = seeded(size);
  const members: FleetMember[] = [];
  for (let index = 0; index < size; index += 1) {
    const workerId = `worker-${index}`;
    const member = fleet.join({
      workerId,
      address: `10.0.${index >> 8}.${index & 255}:50060`,
      models: [{ id: "gpt-oss-20b", engine: "sim", contextTokens: 131_072, description: "" }],
      device: "cuda:0",
      maxSequences: 256,
      state: ServingState.SERVING_STATE_SERVING,
      sendsKvEvents: true,
      tensorParallelSize: 1,
    });
    fleet.report(
      member,
      LoadReport.create({
        runningRequests: Math.floor(random() * 200),
        waitingRequests: Math.floor(random() * 8),
        kvUsedTokens: Math.floor(random() * 900_000),
        kvTotalTokens: 1_000_000,
        state: ServingState.SERVING_STATE_SERVING,
      }),
    );
    members.push(member);
    // Full table: filler blocks up to capacity, then a few tenants' system prompts, the most recent.
    while (prefixes.size(workerId) < blocksPerWorker) {
      const count = Math.min(256, blocksPerWorker - prefixes.size(workerId));
      prefixes.apply(workerId, {
        stored: Array.from({ length: count }, () => Math.floor(random() * 2 ** 53)),
        evicted: [],
        cleared: false,
      });
    }
    for (let held = 0; held < 4; held += 1) prefixes.record(workerId, blockHashes(systemPrompts[Math.floor(random() * tenants)]!));
  }
  return { fleet, scheduler, prefixes, members };
}

function queries(count: number): PickQuery[] {
  const random = seeded(42);
  return Array.from({ length: count }, (_, index) => {
    const tenant = Math.floor(random() * tenants);
    const text = `${systemPrompts[tenant]}user ${index}: ${"please summarise the attached notes ".repeat(1 + Math.floor(random() * 20))}`;
    return {
      requestId: `request-${index}`,
      models: ["gpt-oss-20b"],
      estimatedInputTokens: Math.ceil(text.length / 4),
      kvNeedTokens: kvNeedTokens(Math.ceil(text.length / 4), 512, 1),
      sessionId: `session-${Math.floor(random() * 50_000)}`,
      prefixHashes: blockHashes(text, 64, 256),
      excludedWorkerIds: new Set<string>(),
    };
  });
}

const percentile = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const workload = queries(picks);

/** Builds a fleet of `size`, warms it up, then times `picks` picks: each pick's latency, the wall time, and how many went to a prefix holder. */
function measure(size: number) {
  const builtAt = performance.now();
  const { scheduler } = buildFleet(size);
  const buildSeconds = (performance.now() - builtAt) / 1000;
  // Warm-up: the JIT, and the prefix and session tables the workload itself builds.
  for (const query of workload.slice(0, Math.min(2_000, picks))) {
    const { placements } = scheduler.pick(query);
    scheduler.commit(query, placements[0]!);
  }
  const latencies = new Float64Array(picks);
  let affinity = 0;
  const begin = performance.now();
  for (let index = 0; index < picks; index += 1) {
    const query = workload[index]!;
    const start = performance.now();
    const { placements } = scheduler.pick(query);
    scheduler.commit(query, placements[0]!);
    latencies[index] = (performance.now() - start) * 1000;
    if (placements[0]!.scores.prefix! > 0) affinity += 1;
  }
  return { buildSeconds, latencies, wallMs: performance.now() - begin, affinity };
}

if (!isMainThread) {
  // A replica: build, then wait for the start signal so every replica picks at the same time.
  const size = workerData as number;
  const { scheduler } = buildFleet(size);
  for (const query of workload.slice(0, Math.min(2_000, picks))) scheduler.commit(query, scheduler.pick(query).placements[0]!);
  parentPort!.postMessage("ready");
  parentPort!.once("message", () => {
    const begin = performance.now();
    for (const query of workload) scheduler.commit(query, scheduler.pick(query).placements[0]!);
    parentPort!.postMessage({ startedAt: performance.timeOrigin + begin, endedAt: performance.timeOrigin + performance.now() });
  });
} else {
  // Replicas first: the large fleets below leave a heap whose collection would take a core from them.
  await replicaScaling(values.replicas.split(",").map(Number), Number(values["replica-fleet"]));
  console.log(
    `\nrouter scale: Pick (filter, score, pick, commit) in-process, ${picks} picks per fleet, ${blocksPerWorker} prefix blocks per worker`,
  );
  console.log("workers | build s | p50 µs | p90 µs | p99 µs | max µs | picks/s | to a prefix holder");
  for (const size of fleetSizes) {
    const { buildSeconds, latencies, wallMs, affinity } = measure(size);
    latencies.sort();
    console.log(
      `${String(size).padStart(7)} | ${buildSeconds.toFixed(1).padStart(7)} | ${[50, 90, 99].map((p) => percentile(latencies, p).toFixed(1).padStart(6)).join(" | ")} | ` +
        `${latencies[latencies.length - 1]!.toFixed(0).padStart(6)} | ${((picks * 1000) / wallMs).toFixed(0).padStart(7)} | ${((100 * affinity) / picks).toFixed(1)} %`,
    );
  }
}

/**
 * Router replicas at once, each on its own copy of a `size` fleet, all picking the
 * same workload from the same instant: picks/s across them, from the first start to
 * the last end. Replicas are independent (each is its own process in a deployment),
 * so this grows with replicas while cores last.
 */
async function replicaScaling(counts: readonly number[], size: number): Promise<void> {
  console.log(`router replicas, ${size} workers each, ${picks} picks per replica, picking at once`);
  console.log("replicas | picks/s across them | vs 1 replica");
  let single: number | undefined;
  for (const count of counts) {
    const threads = Array.from(
      { length: count },
      () =>
        new Worker(new URL(import.meta.url), {
          workerData: size,
          argv: process.argv.slice(2),
          resourceLimits: { maxOldGenerationSizeMb: 8_192 },
        }),
    );
    await Promise.all(threads.map((thread) => new Promise((resolve) => thread.once("message", resolve))));
    const spans = await Promise.all(
      threads.map(
        (thread) =>
          new Promise<{ startedAt: number; endedAt: number }>((resolve) => {
            thread.once("message", resolve);
            thread.postMessage("go");
          }),
      ),
    );
    await Promise.all(threads.map((thread) => thread.terminate()));
    const wallMs = Math.max(...spans.map((span) => span.endedAt)) - Math.min(...spans.map((span) => span.startedAt));
    const rate = (count * picks * 1000) / wallMs;
    single ??= rate;
    console.log(`${String(count).padStart(8)} | ${rate.toFixed(0).padStart(19)} | ${(rate / single).toFixed(2)}×`);
  }
}

import test from "node:test";
import assert from "node:assert/strict";
import { PressureLevel, ServingState } from "../../../gen/infermesh/common/v1/common.js";
import { LoadReport } from "../../../gen/infermesh/router/v1/router_service.js";
import { ManualClock } from "../../common/clock.js";
import { blockHashes } from "../../common/prefix-hash.js";
import { kvNeedTokens } from "../../common/kv-need.js";
import { Fleet, type FleetMember } from "../fleet.js";
import { PrefixTable } from "../prefix-table.js";
import { SessionTable } from "../session-table.js";
import type { PickQuery } from "./plugin.js";
import { Scheduler, type SchedulerConfig } from "./scheduler.js";

const SERVING = ServingState.SERVING_STATE_SERVING;

const defaults: SchedulerConfig = {
  policy: "score",
  scorers: { queue: 2, kv: 1, prefix: 1, session: 2, health: 1, context: 0.5, prefill: 10 },
  affinitySaturation: 0.8,
  affinityImbalance: 1.5,
  affinitySlack: 8,
  minHealth: 0.7,
  longPromptTokens: 8_000,
  candidates: 3,
  scoreAtMost: 64,
  prefillFloorTokens: 2_048,
};

interface WorkerSpec {
  id: string;
  models?: string[];
  contextTokens?: number;
  sequences?: number;
  running?: number;
  waiting?: number;
  kvUsed?: number;
  kvTotal?: number;
  tensorParallel?: number;
  failureRatio?: number;
  pendingPrefill?: number;
}

function setup(workers: WorkerSpec[], config: Partial<SchedulerConfig> = {}, random: () => number = Math.random) {
  const clock = new ManualClock();
  const fleet = new Fleet(clock, { staleAfterMs: 5_000, freshReportMs: 1_000, pickExpireMs: 1_000 });
  const prefixes = new PrefixTable(1_000);
  const scheduler = new Scheduler(fleet, prefixes, new SessionTable(100), { ...defaults, ...config }, random);
  const members = new Map<string, FleetMember>();
  for (const spec of workers) {
    const member = fleet.join({
      workerId: spec.id,
      address: `${spec.id}:1`,
      models: (spec.models ?? ["m"]).map((id) => ({ id, engine: "sim", contextTokens: spec.contextTokens ?? 32_768, description: "" })),
      device: "cuda:0",
      maxSequences: spec.sequences ?? 10,
      state: SERVING,
      sendsKvEvents: false,
      tensorParallelSize: spec.tensorParallel ?? 1,
    });
    fleet.report(member, loadOf(spec));
    members.set(spec.id, member);
  }
  const setLoad = (id: string, spec: Omit<WorkerSpec, "id">) => fleet.report(members.get(id)!, loadOf(spec));
  return { clock, fleet, prefixes, scheduler, members, setLoad };
}

function loadOf(spec: Omit<WorkerSpec, "id">): LoadReport {
  return LoadReport.create({
    runningRequests: spec.running ?? 0,
    waitingRequests: spec.waiting ?? 0,
    kvUsedTokens: spec.kvUsed ?? 0,
    kvTotalTokens: spec.kvTotal ?? 100_000,
    recentFailureRatio: spec.failureRatio ?? 0,
    pendingPrefillTokens: spec.pendingPrefill ?? 0,
    state: SERVING,
  });
}

/** About 3,900 tokens: long enough that computing it again costs more than a few requests' queueing. */
const systemPrompt = "You are a careful assistant for the billing team. ".repeat(300);

let requests = 0;

function query(overrides: Partial<PickQuery> & { text?: string } = {}): PickQuery {
  const { text, ...rest } = overrides;
  const estimatedInputTokens = text === undefined ? 100 : Math.ceil(text.length / 4);
  return {
    requestId: `request-${(requests += 1)}`,
    models: ["m"],
    estimatedInputTokens,
    kvNeedTokens: kvNeedTokens(estimatedInputTokens, 100, 1),
    sessionId: "",
    prefixHashes: text === undefined ? [] : blockHashes(text),
    excludedWorkerIds: new Set(),
    ...rest,
  };
}

/** How many leading blocks of `hashes` worker "w" holds. */
const depth = (table: PrefixTable, hashes: readonly number[]) => table.match(hashes).get("w") ?? 0;

const firstId = (scheduler: Scheduler, q: PickQuery) => scheduler.pick(q).placements[0]?.member.registration.workerId;

test("with nothing cached, the least loaded worker comes first and every scorer's score is reported", () => {
  const { scheduler } = setup([
    { id: "busy", running: 8 },
    { id: "idle" },
    { id: "half", running: 5 },
    { id: "queued", running: 10, waiting: 5 },
  ]);
  const result = scheduler.pick(query());
  assert.deepEqual(
    result.placements.map((placement) => placement.member.registration.workerId),
    ["idle", "half", "busy"],
  );
  assert.equal(result.reason, "least-loaded");
  const scores = result.placements[0]!.scores;
  assert.deepEqual(Object.keys(scores).sort(), ["context", "health", "kv", "prefill", "prefix", "queue", "session"]);
  assert.equal(scores.queue, 1);
  // Against the least loaded (0), with the mean (7 requests) added to both: 7 / (7 + 5).
  assert.equal(result.placements[1]!.scores.queue, 7 / 12);
  for (const placement of result.placements) assert.ok(placement.score >= 0 && placement.score <= 1);
});

test("equal workers are ordered at random, so cache misses do not all land on one worker", () => {
  const { scheduler } = setup([{ id: "a" }, { id: "b" }, { id: "c" }, { id: "d" }]);
  const firsts = new Map<string, number>();
  for (let index = 0; index < 400; index += 1) {
    const id = firstId(scheduler, query({ text: `a prompt nobody sent before, number ${index} `.repeat(4) }))!;
    firsts.set(id, (firsts.get(id) ?? 0) + 1);
  }
  assert.equal(firsts.size, 4, `every worker gets some misses: ${JSON.stringify([...firsts])}`);
  for (const count of firsts.values()) assert.ok(count > 50, `roughly even: ${JSON.stringify([...firsts])}`);
});

test("workers a hair apart (KV used, report age) still share cache misses at random", () => {
  const { scheduler, clock, fleet, members } = setup([{ id: "a", kvUsed: 300 }, { id: "b", kvUsed: 100 }, { id: "c" }]);
  clock.advance(1_200); // a's and b's reports are a little older than fresh: health 0.975
  fleet.report(members.get("c")!, loadOf({}));
  const firsts = new Set<string>();
  for (let index = 0; index < 100; index += 1) firsts.add(firstId(scheduler, query())!);
  assert.deepEqual([...firsts].sort(), ["a", "b", "c"]);
  assert.equal(scheduler.pick(query()).reason, "tie-broken-at-random", "a hair's difference is not a reason");
});

test("the reason for a random tie says so", () => {
  const { scheduler } = setup([{ id: "a" }, { id: "b" }]);
  assert.equal(scheduler.pick(query()).reason, "tie-broken-at-random");
});

test("a worker that holds the prompt's prefix wins over an idle one, and the pick records it", () => {
  const { scheduler, fleet, members } = setup([{ id: "a" }, { id: "b" }, { id: "c" }]);
  const first = query({ text: `${systemPrompt}user: first question` });
  const chosen = scheduler.pick(first).placements[0]!;
  scheduler.commit(first, chosen);
  const holder = chosen.member.registration.workerId;
  // The holder's report lists the first request: its prompt is computed, and it runs with two others.
  fleet.report(members.get(holder)!, { ...loadOf({ running: 3 }), arrivedRequestIds: [first.requestId] });
  const second = scheduler.pick(query({ text: `${systemPrompt}user: another question entirely` }));
  assert.equal(second.placements[0]!.member.registration.workerId, holder);
  assert.equal(second.reason, "prefix-affinity");
  assert.ok(second.placements[0]!.scores.prefix! > 0.9, `most blocks match: ${second.placements[0]!.scores.prefix!}`);
  assert.equal(second.placements[1]!.scores.prefix, 0);
});

test("sticky until saturated: a hot prefix spreads once its worker passes the saturation share", () => {
  const { scheduler, prefixes, setLoad } = setup([{ id: "hot" }, { id: "cold" }]);
  const text = `${systemPrompt}user: hello`;
  prefixes.record("hot", blockHashes(text));
  setLoad("hot", { running: 7 }); // 0.7 of 10 sequences: still sticky
  assert.equal(firstId(scheduler, query({ text })), "hot");
  setLoad("hot", { running: 8 }); // 0.8: saturated for affinity
  const result = scheduler.pick(query({ text }));
  assert.equal(result.placements[0]!.member.registration.workerId, "cold");
  assert.equal(result.placements[1]!.scores.prefix, 0);
});

test("sticky until saturated relative to the fleet: a worker far above the others' load loses its affinity long before its sequence limit", () => {
  const workers = ["hot", "a", "b", "c"].map((id) => ({ id, sequences: 1_024, running: 30 }));
  const { scheduler, prefixes, setLoad } = setup(workers);
  const text = `${systemPrompt}user: hello`;
  prefixes.record("hot", blockHashes(text));
  setLoad("hot", { sequences: 1_024, running: 60 }); // mean 37.5: 1.5 × 37.5 + 8 = 64 allowed
  assert.equal(firstId(scheduler, query({ text })), "hot");
  setLoad("hot", { sequences: 1_024, running: 70 }); // mean 40: 68 allowed, 70 is past it
  const result = scheduler.pick(query({ text }));
  assert.notEqual(result.placements[0]!.member.registration.workerId, "hot");
  assert.equal(result.placements.find((placement) => placement.member.registration.workerId === "hot")?.scores.prefix ?? 0, 0);
});

test("a worker failing a third of its generations is avoided while a healthy one can serve", () => {
  const { scheduler, setLoad } = setup([
    { id: "failing", failureRatio: 0.35 },
    { id: "busy", running: 6 },
  ]);
  assert.equal(firstId(scheduler, query()), "busy", "health 0.65 is below 0.7");
  setLoad("failing", { failureRatio: 0.1 });
  const result = scheduler.pick(query());
  assert.equal(result.placements[0]!.member.registration.workerId, "failing", "0.9 is healthy enough, and it is idle");
  assert.equal(result.placements[0]!.scores.health, 0.9);
});

test("a session's next turn goes back to its worker while that worker has room", () => {
  const { scheduler, fleet, members } = setup([{ id: "a" }, { id: "b" }, { id: "c" }]);
  const turn = query({ sessionId: "alice" });
  const chosen = scheduler.pick(turn).placements[0]!;
  scheduler.commit(turn, chosen);
  const home = chosen.member.registration.workerId;
  fleet.report(members.get(home)!, { ...loadOf({ running: 4 }), arrivedRequestIds: [turn.requestId] });
  const next = scheduler.pick(query({ sessionId: "alice" }));
  assert.equal(next.placements[0]!.member.registration.workerId, home);
  assert.equal(next.reason, "session-affinity");
  assert.notEqual(firstId(scheduler, query({ sessionId: "bob" })), home);
});

test("exact KV events: stored blocks attract the prompt, evicted ones stop doing so", () => {
  const { scheduler, prefixes, setLoad } = setup([{ id: "a" }, { id: "b" }]);
  const text = `${systemPrompt}user: q`;
  const hashes = blockHashes(text);
  const estimatedInputTokens = Math.ceil(text.length / 4);
  prefixes.apply("b", { stored: hashes, evicted: [], cleared: false });
  setLoad("b", { running: 2 });
  assert.equal(firstId(scheduler, query({ prefixHashes: hashes, estimatedInputTokens })), "b");
  prefixes.apply("b", { stored: [], evicted: hashes, cleared: false });
  assert.equal(firstId(scheduler, query({ prefixHashes: hashes, estimatedInputTokens })), "a");
});

test("in-flight picks count as load until a report lists their requests", () => {
  const { scheduler, fleet, members } = setup([{ id: "a" }, { id: "b" }]);
  for (let index = 0; index < 6; index += 1) {
    const q = query();
    scheduler.commit(q, scheduler.pick(q).placements[0]!);
  }
  const a = members.get("a")!;
  assert.equal(a.inFlightPicks, 3, "picks alternate between the two");
  assert.equal(members.get("b")!.inFlightPicks, 3);
  assert.equal(a.inFlightTokens, 600);
  fleet.report(a, { ...loadOf({ running: 3 }), arrivedRequestIds: a.recentPicks.map((pick) => pick.requestId) });
  assert.equal(a.inFlightPicks, 0);
});

test("KV headroom counts in-flight tokens: a worker near full KV loses to one with room", () => {
  const { scheduler } = setup([
    { id: "full", kvUsed: 95_000 },
    { id: "roomy", kvUsed: 20_000 },
  ]);
  const result = scheduler.pick(query());
  assert.equal(result.placements[0]!.member.registration.workerId, "roomy");
  assert.equal(result.reason, "most-kv-headroom");
  assert.ok(Math.abs(result.placements[1]!.scores.kv! - 0.05) < 1e-9);
});

test("workers below the health threshold are avoided while a healthier one exists", () => {
  const { scheduler, clock, fleet, members } = setup([{ id: "quiet" }, { id: "reporting", running: 5 }]);
  clock.advance(4_000); // both reports 4 s old: health 0.625
  fleet.report(members.get("reporting")!, loadOf({ running: 5 }));
  assert.equal(firstId(scheduler, query()), "reporting");
  assert.equal(scheduler.pick(query()).placements.length, 1, "the unhealthy one is filtered out");
  fleet.setPressure("reporting", PressureLevel.PRESSURE_LEVEL_CRITICAL);
  assert.equal(firstId(scheduler, query()), "quiet", "with nobody healthier it is still used");
});

test("a prompt that does not fit a worker's context goes to one where it fits", () => {
  const { scheduler } = setup([
    { id: "small", contextTokens: 4_096 },
    { id: "large", contextTokens: 131_072, running: 9 },
  ]);
  assert.equal(firstId(scheduler, query({ estimatedInputTokens: 6_000 })), "large");
  assert.equal(firstId(scheduler, query({ estimatedInputTokens: 100 })), "small");
});

test("prompts over the long-prompt threshold go to a tensor-parallel group when there is one", () => {
  const { scheduler } = setup([{ id: "single" }, { id: "tp4", tensorParallel: 4, running: 6 }]);
  const long = scheduler.pick(query({ estimatedInputTokens: 9_000 }));
  assert.equal(long.placements[0]!.member.registration.workerId, "tp4");
  assert.equal(long.reason, "long-prompt-tensor-parallel");
  assert.equal(firstId(scheduler, query({ estimatedInputTokens: 500 })), "single");
});

test("balanced: the preferred model's workers come first unless saturated; long prompts prefer the larger context", () => {
  const { scheduler, setLoad } = setup([
    { id: "small-model", models: ["20b"], contextTokens: 32_768 },
    { id: "large-model", models: ["120b"], contextTokens: 131_072 },
  ]);
  const balanced = (estimatedInputTokens: number) => query({ models: ["20b", "120b"], estimatedInputTokens });
  const short = scheduler.pick(balanced(100));
  assert.equal(short.placements[0]!.member.registration.workerId, "small-model");
  assert.equal(short.placements[0]!.model, "20b");
  const long = scheduler.pick(balanced(20_000));
  assert.equal(long.placements[0]!.model, "120b");
  assert.equal(long.reason, "balanced-model-choice");
  setLoad("small-model", { running: 10 });
  assert.equal(
    scheduler.pick(balanced(100)).placements[0]!.model,
    "120b",
    "a saturated preferred worker goes after an unsaturated alternative",
  );
});

test("excluded workers are skipped and at most `candidates` are returned", () => {
  const { scheduler } = setup([{ id: "a" }, { id: "b" }, { id: "c" }, { id: "d" }, { id: "e" }]);
  const result = scheduler.pick(query({ excludedWorkerIds: new Set(["a", "b"]) }));
  assert.equal(result.placements.length, 3);
  assert.ok(result.placements.every((placement) => !["a", "b"].includes(placement.member.registration.workerId)));
  assert.deepEqual(scheduler.pick(query({ models: ["other"] })).placements, []);
});

test("prefix table: matches the leading blocks held, trims least recently used, deepest blocks first", () => {
  const table = new PrefixTable(10);
  const prompt = blockHashes("x".repeat(64 * 8));
  const other = blockHashes("y".repeat(64 * 4));
  assert.equal(new Set(prompt).size, 8);
  table.record("w", prompt);
  assert.equal(depth(table, prompt), 8);
  assert.equal(depth(table, [...prompt.slice(0, 5), 1, 2]), 5);
  assert.equal(depth(table, other), 0);
  table.record("w", other); // 12 blocks > 10: two go, the tail of the older prompt
  assert.equal(table.size("w"), 10);
  assert.equal(depth(table, prompt), 6);
  assert.equal(depth(table, other), 4);
  table.apply("w", { stored: [], evicted: [], cleared: true });
  assert.equal(depth(table, other), 0);
  const capped = new PrefixTable(1_000, 4);
  capped.record("w", prompt);
  assert.equal(capped.size("w"), 4);
  assert.equal(depth(capped, prompt), 4);
});

test("prefix table: a worker keeps exactly its most recently touched blocks, evicted and stored blocks included", () => {
  const table = new PrefixTable(100);
  const prompts = Array.from({ length: 300 }, (_, index) => blockHashes(`prompt ${index} `.padEnd(64, "x")));
  for (let index = 0; index < 300; index += 1) {
    table.record("w", prompts[index]!);
    if (index % 10 === 0) table.record("w", prompts[0]!); // prompt 0 stays recent
    assert.ok(table.size("w") <= 100, `never over its share: ${table.size("w")}`);
  }
  const held = (index: number) => depth(table, prompts[index]!) === 1;
  // The 100 most recently touched: prompt 0 (touched at 290) and prompts 201–299.
  assert.deepEqual(prompts.map((_, index) => index).filter(held), [0, ...Array.from({ length: 99 }, (_, offset) => 201 + offset)]);
  // A worker's evicted event frees a place: the next block stored takes it and evicts nothing.
  table.apply("w", { stored: [], evicted: prompts[250]!, cleared: false });
  assert.equal(table.size("w"), 99);
  table.apply("w", { stored: prompts[150]!, evicted: [], cleared: false });
  assert.equal(table.size("w"), 100);
  assert.ok(held(150) && held(201) && !held(250), "the stored block came in; the oldest stayed");
  table.record("w", prompts[149]!);
  assert.ok(held(149) && !held(201), "past its share again, the least recent (201) went");
});

test("prefix table: blocks shared by several workers stay held by the others when one forgets or evicts them", () => {
  const table = new PrefixTable(100);
  const shared = blockHashes("s".repeat(64 * 6));
  const longer = blockHashes(`${"s".repeat(64 * 6)}${"t".repeat(64 * 3)}`);
  table.record("a", shared);
  table.record("b", longer);
  table.apply("c", { stored: shared.slice(0, 2), evicted: [], cleared: false });
  assert.deepEqual([...table.match(longer)].sort(), [
    ["a", 6],
    ["b", 9],
    ["c", 2],
  ]);
  table.forget("b");
  assert.deepEqual([...table.match(longer)].sort(), [
    ["a", 6],
    ["c", 2],
  ]);
  table.apply("a", { stored: [], evicted: shared.slice(3), cleared: false });
  assert.deepEqual([...table.match(shared)].sort(), [
    ["a", 3],
    ["c", 2],
  ]);
  table.apply("c", { stored: [], evicted: [], cleared: true });
  table.forget("a");
  assert.equal(table.match(shared).size, 0);
  assert.equal(table.match([]).size, 0);
});

test("the round-robin baseline takes the workers in turn, whatever the prefix or load", () => {
  const { scheduler, setLoad } = setup([{ id: "a" }, { id: "b" }, { id: "c" }], { policy: "round-robin" });
  setLoad("a", { running: 9 });
  const shared = query({ text: systemPrompt, sessionId: "s" });
  const firsts: string[] = [];
  for (let turn = 0; turn < 6; turn += 1) {
    const result = scheduler.pick(shared);
    assert.equal(result.reason, "round-robin");
    assert.equal(result.placements.length, 3, "the rest of the turn are the fallbacks");
    firsts.push(result.placements[0]!.member.registration.workerId);
    scheduler.commit(shared, result.placements[0]!);
  }
  assert.deepEqual(firsts, ["a", "b", "c", "a", "b", "c"]);
});

test("the least-loaded baseline takes the fewest outstanding requests and ignores prefix affinity", () => {
  const { scheduler, setLoad } = setup([{ id: "a" }, { id: "b" }], { policy: "least-loaded" });
  const shared = query({ text: systemPrompt });
  setLoad("a", { running: 2 });
  scheduler.commit(shared, scheduler.pick(shared).placements.find((placement) => placement.member.registration.workerId === "a")!);
  // a holds the prefix, but b has fewer requests.
  const result = scheduler.pick(shared);
  assert.equal(result.reason, "least-loaded");
  assert.deepEqual(
    result.placements.map((placement) => placement.member.registration.workerId),
    ["b", "a"],
  );
  assert.deepEqual(Object.keys(result.placements[0]!.scores), ["queue"], "a baseline scores the load alone");
});

/** `count` workers named `${prefix}0`…, each with `spec`. */
const many = (prefix: string, count: number, spec: Omit<WorkerSpec, "id"> = {}): WorkerSpec[] =>
  Array.from({ length: count }, (_, index) => ({ id: `${prefix}${index}`, ...spec }));

test("a fleet larger than scoreAtMost is scored in part: the least loaded, but never without the prefix holder or the session's worker", () => {
  const { scheduler, prefixes } = setup([...many("idle", 150), ...many("busy", 150, { running: 4 })], { scoreAtMost: 16 });
  // busy7 holds the prompt and busy9 had the session: both are more loaded than the 16 least loaded.
  prefixes.record("busy7", blockHashes(`${systemPrompt}billing question`));
  assert.equal(firstId(scheduler, query({ text: `${systemPrompt}another billing question` })), "busy7");
  scheduler.commit(query({ sessionId: "carol" }), scheduler.pick(query()).placements[0]!);
  const sessionWorker = scheduler.pick(query({ sessionId: "carol" })).placements[0]!.member.registration.workerId;
  assert.match(sessionWorker, /^idle/);
  // Without affinity, a pick goes to one of the idle half.
  for (let index = 0; index < 50; index += 1) assert.match(firstId(scheduler, query())!, /^idle/);
});

test("in a partly scored fleet with many prefix holders, the pick scores the deepest and least loaded of them", () => {
  // 40 holders, scoreAtMost 16: the pick scores 8 of them. Those holding the whole
  // prompt beat those holding a part; among the whole ones, the least loaded win.
  const { scheduler, prefixes } = setup([...many("part", 20, { running: 0 }), ...many("whole", 20, { running: 3 }), ...many("idle", 200)], {
    scoreAtMost: 16,
  });
  const text = `${systemPrompt}billing question`;
  const hashes = blockHashes(text);
  for (let index = 0; index < 20; index += 1) {
    prefixes.record(`part${index}`, hashes.slice(0, 10));
    prefixes.record(`whole${index}`, hashes);
  }
  const { placements } = scheduler.pick(query({ text }));
  assert.match(placements[0]!.member.registration.workerId, /^whole/, "a holder of the whole prompt wins");
  // Among equal holders the less loaded come first: one at 1 request beats the rest at 3.
  const lighter = setup([...many("whole", 40, { running: 3 }), ...many("idle", 200)], { scoreAtMost: 16 });
  for (let index = 0; index < 40; index += 1) lighter.prefixes.record(`whole${index}`, hashes);
  lighter.setLoad("whole33", { running: 1 });
  assert.equal(firstId(lighter.scheduler, query({ text })), "whole33");
});

test("a partly scored fleet spreads equal cache misses over all its idle workers, not the same few", () => {
  const { scheduler } = setup(many("w", 200), { scoreAtMost: 8 });
  const firsts = new Set<string>();
  for (let index = 0; index < 400; index += 1) firsts.add(firstId(scheduler, query())!);
  assert.ok(firsts.size > 100, `misses reached ${firsts.size} of 200 workers`);
});

test("in a partly scored fleet, idle but failing workers do not crowd out healthy ones", () => {
  const { scheduler } = setup([...many("failing", 100, { failureRatio: 0.5 }), ...many("healthy", 100, { running: 6 })], {
    scoreAtMost: 16,
  });
  for (let index = 0; index < 50; index += 1) assert.match(firstId(scheduler, query())!, /^healthy/);
});

test("in a partly scored fleet, a long prompt still finds the tensor-parallel group and a big prompt the big context", () => {
  const { scheduler } = setup(
    [...many("small", 100), { id: "tp", tensorParallel: 4, running: 8 }, { id: "wide", contextTokens: 200_000, running: 9 }],
    { scoreAtMost: 8 },
  );
  assert.equal(firstId(scheduler, query({ estimatedInputTokens: 9_000 })), "tp");
  assert.equal(firstId(scheduler, query({ estimatedInputTokens: 50_000 })), "wide");
});

test("a long new prompt goes where the least prefill waits, even past a worker with fewer requests", () => {
  const { scheduler } = setup([
    { id: "backlogged", running: 1, pendingPrefill: 30_000 },
    { id: "decoding", running: 4 },
  ]);
  const result = scheduler.pick(query({ estimatedInputTokens: 10_000 }));
  assert.equal(result.placements[0]!.member.registration.workerId, "decoding");
  assert.equal(result.reason, "shortest-prefill");
  // (2,048 + 10,000) / (2,048 + 30,000 + 10,000)
  assert.ok(Math.abs(result.placements[1]!.scores.prefill! - 12_048 / 42_048) < 1e-9);
});

test("a question on a cached document goes to its holder, unless the holder's prefill backlog costs more than computing the document elsewhere", () => {
  const { scheduler, prefixes, setLoad, members } = setup([{ id: "holder" }, { id: "other" }]);
  const document = `${systemPrompt}${"Quarterly figures, line by line. ".repeat(800)}`;
  prefixes.record("holder", blockHashes(document));
  const question = query({ text: `${document}user: what changed?` });
  setLoad("holder", { pendingPrefill: 4_000 });
  assert.equal(firstId(scheduler, question), "holder");
  setLoad("holder", { pendingPrefill: 40_000 });
  assert.equal(firstId(scheduler, question), "other");
  // The pick counts what it will prefill there until a report covers it: nearly all of the prompt on the other worker.
  scheduler.commit(question, scheduler.pick(question).placements[0]!);
  assert.ok(members.get("other")!.inFlightPrefill > question.estimatedInputTokens * 0.9);
});

test("a reload's new weights decide the next pick, and what the router learned stays", () => {
  // "cached" holds the prompt but is busier; "idle" is idle.
  const { scheduler, prefixes } = setup([{ id: "cached", running: 4 }, { id: "idle" }]);
  const q = query({ text: "a long shared system prompt ".repeat(20) });
  prefixes.record("cached", q.prefixHashes);
  scheduler.reconfigure({ ...defaults, scorers: { prefix: 10, queue: 1 } });
  assert.equal(firstId(scheduler, q), "cached", "the prefix weighs most");
  scheduler.reconfigure({ ...defaults, scorers: { queue: 10 } });
  assert.equal(firstId(scheduler, q), "idle", "only the queue counts now");
  scheduler.reconfigure({ ...defaults, scorers: { prefix: 10, queue: 1 } });
  assert.equal(firstId(scheduler, q), "cached", "the prefix table survived the reloads");
});

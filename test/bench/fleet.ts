/**
 * Fleet benchmark: the same trace through the same mesh of `sim` workers (an H100
 * preset: gpt-oss-20b by default, `--preset h100-gpt-oss-120b` for a GPU whose KV cache
 * cannot hold every tenant's prompt), once per router policy: infermesh's scoring picker
 * against the plain round-robin and least-loaded baselines. Each policy gets a fresh
 * mesh, so every run starts with cold caches.
 *
 * Traces a and b run in one of two loops:
 *   closed (the default): `--users` clients, each sending its next request when the last
 *      one ends, so the figures are what the fleet sustains at that concurrency;
 *   open (`--session-rate`): sessions arrive at that many a second (Poisson), and each
 *      sends its next turn `--think-ms` (exponential mean) after the last answer. New
 *      users do not wait for the fleet, so a policy that serves slower builds a queue:
 *      the way the published router comparisons (llm-d, Dynamo) load their fleets, at a
 *      fixed request rate.
 *   a  tenants share long system prompts; each session is several turns, each turn
 *      sending the whole conversation back (the shape of a chat product).
 *   b  short one-off chats mixed with ~10k-token documents asked several questions.
 *   c  open loop: one-turn chats of three priority classes (x-infermesh-priority),
 *      first a closed loop at admission's cap to measure capacity, then a quarter of
 *      it (the unloaded TTFT, over every class), then a spike to three times it. Every
 *      request must complete or get a clean 429/503; anything else counts as lost.
 *
 * The simulated GPUs run `--time-scale` times slower than an H100 (the default 10), so
 * the mesh's own cost on this 2-core machine stays small against the simulated one and
 * the fleet, not the mesh, is the bottleneck. Times are printed as measured (wall
 * clock); divide by the time scale for H100 time. Ratios do not depend on it.
 *
 * Prefix hit rate is cached prompt tokens over prompt tokens, from each response's
 * usage. The oracle is a router that knows every cache and never loses a block: a
 * request's leading blocks count as cached when any earlier request's prompt (from the
 * moment it was sent) or answer had them.
 *
 *   npm run bench:fleet
 *   npm run bench:fleet -- --traces a --policies score,round-robin --users 64 --sessions 120
 *   npm run bench:fleet -- --traces a --session-rate 1.5 --think-ms 2000
 *   npm run bench:fleet -- --traces a --preset h100-gpt-oss-120b --users 64
 *   npm run bench:fleet -- --traces a --policies score,score@2        (one router replica against two)
 *
 * "busiest worker" is the requests the busiest worker finished over the mean: 1.00 is
 * an even spread; a shared prompt piling onto one worker shows here.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { blockHashes, canonicalPrompt, prefixBlockChars } from "../../services/common/prefix-hash.js";
import { Random } from "../../services/common/random.js";
import { simPresets, type SimPresetName } from "../../services/worker/engines/sim/sim-options.js";
import { startTestMesh } from "../support/harness.js";

const { values } = parseArgs({
  options: {
    traces: { type: "string", default: "a,b" },
    policies: { type: "string", default: "score,round-robin,least-loaded" },
    workers: { type: "string", default: "8" },
    users: { type: "string", default: "256" },
    "session-rate": { type: "string", default: "0" },
    "think-ms": { type: "string", default: "0" },
    sessions: { type: "string", default: "480" },
    tenants: { type: "string", default: "64" },
    turns: { type: "string", default: "3-10" },
    "time-scale": { type: "string", default: "10" },
    preset: { type: "string", default: "h100-gpt-oss-20b" },
    /** Extra router flags for every policy, to try a setting: --router-args="--affinity-slack 2". */
    "router-args": { type: "string", default: "" },
    seed: { type: "string", default: "1" },
    "spike-concurrency": { type: "string", default: "192" },
    "spike-seconds": { type: "string", default: "60" },
    "spike-interactive": { type: "string", default: "0.15" },
  },
});
const workers = Number(values.workers);
const users = Number(values.users);
/** Sessions arriving a second in the open loop; 0 runs the closed loop of `users`. */
const sessionRate = Number(values["session-rate"]);
const thinkMs = Number(values["think-ms"]);
const sessionCount = Number(values.sessions);
const tenantCount = Number(values.tenants);
const [fewestTurns, mostTurns] = values.turns.split("-").map(Number) as [number, number];
const timeScale = Number(values["time-scale"]);
if (!Object.hasOwn(simPresets, values.preset)) throw new Error(`--preset must be one of ${Object.keys(simPresets).join(", ")}`);
/** The simulated GPU and model: gpt-oss-20b leaves an H100 room for ~2.4M tokens of KV, gpt-oss-120b for ~197k. */
const preset = values.preset as SimPresetName;
const model = simPresets[preset].modelId;
const routerArgs = values["router-args"].split(/\s+/).filter(Boolean);
const routerSetting = routerArgs.length === 0 ? "" : `, router ${routerArgs.join(" ")}`;

interface Message {
  role: "system" | "user" | "assistant";
  content: string;
}

/** A conversation: its turns' user messages, sent one after another with the history. */
interface Session {
  readonly id: string;
  readonly system: string;
  readonly turns: readonly string[];
}

/** One response, as the client saw it. */
interface Outcome {
  readonly ttftMs: number;
  readonly e2eMs: number;
  readonly promptTokens: number;
  readonly cachedTokens: number;
  readonly completionTokens: number;
  readonly oracleCachedTokens: number;
  readonly answer: string;
}

/** A deterministic stream of numbers in [0,1) (mulberry32). */
function random(seed: number): () => number {
  const generator = new Random(seed);
  return () => generator.next();
}

const vocabulary =
  "the of and to in is for on that with as by at from this be are or an it was which not can has have will data user team order policy account billing report request service system value record".split(
    " ",
  );

/** About `tokens` tokens (4 characters each) of text. */
function text(next: () => number, tokens: number): string {
  const words: string[] = [];
  let chars = 0;
  while (chars < tokens * 4) {
    const word = vocabulary[Math.floor(next() * vocabulary.length)]!;
    words.push(word);
    chars += word.length + 1;
  }
  return words.join(" ");
}

const between = (next: () => number, low: number, high: number) => low + Math.floor(next() * (high - low + 1));

/** Trace a: `--tenants` (a few big, many small) with system prompts of 1.5k–6k tokens; sessions of `--turns` turns of 40–300 tokens. */
function sharedPromptTrace(seed: number): Session[] {
  const next = random(seed);
  const tenants = Array.from(
    { length: tenantCount },
    (_, index) => `You are the assistant of tenant ${index}. ${text(next, between(next, 1_500, 6_000))}`,
  );
  return Array.from({ length: sessionCount }, (_, index) => {
    // Zipf-like: tenant k is chosen about 1/(k+1) as often as tenant 0.
    const weights = tenants.map((_, k) => 1 / (k + 1));
    let pick = next() * weights.reduce((sum, weight) => sum + weight, 0);
    let tenant = 0;
    while (pick > weights[tenant]!) pick -= weights[tenant++]!;
    const turns = Array.from({ length: between(next, fewestTurns, mostTurns) }, () => text(next, between(next, 40, 300)));
    return { id: `a-${seed}-${index}`, system: tenants[tenant]!, turns };
  });
}

/** Trace b: three in four sessions are one short chat; the rest a ~10k-token document asked 2–4 questions. */
function documentTrace(seed: number): Session[] {
  const next = random(seed + 1_000);
  return Array.from({ length: sessionCount }, (_, index) => {
    if (next() < 0.75)
      return { id: `b-${seed}-${index}`, system: "You are a helpful assistant.", turns: [text(next, between(next, 20, 200))] };
    const document = text(next, between(next, 8_000, 12_000));
    const questions = Array.from({ length: between(next, 2, 4) }, () => text(next, between(next, 20, 80)));
    return { id: `b-${seed}-${index}`, system: `Answer questions about this document.\n\n${document}`, turns: questions };
  });
}

/** Blocks some earlier request's prompt or answer had: what an all-knowing, never-evicting router could reuse. */
class Oracle {
  private readonly seen = new Set<number>();

  cachedTokens(messages: readonly Message[], promptTokens: number): number {
    let matched = 0;
    for (const hash of blockHashes(canonicalPrompt({ messages }))) {
      if (!this.seen.has(hash)) break;
      matched += 1;
    }
    return Math.min(Math.max(0, promptTokens - 1), (matched * prefixBlockChars) / 4);
  }

  remember(messages: readonly Message[]): void {
    for (const hash of blockHashes(canonicalPrompt({ messages }))) this.seen.add(hash);
  }
}

/** The fields of an OpenAI chat chunk the bench reads. */
interface ChatChunk {
  readonly error?: unknown;
  readonly choices?: { readonly delta?: { content?: string; reasoning_content?: string; reasoning?: string } }[];
  readonly usage?: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details?: { cached_tokens?: number } };
}

/** The JSON of each `data:` event of an OpenAI chat stream, up to `[DONE]`. */
async function* chunksOf(body: AsyncIterable<Uint8Array>): AsyncGenerator<ChatChunk> {
  let buffered = "";
  const decoder = new TextDecoder();
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      if (event.startsWith("data: ") && event !== "data: [DONE]") yield JSON.parse(event.slice(6));
    }
  }
}

/** Whether a chunk's delta carries a token: answer or reasoning text. */
const carriesToken = (delta: NonNullable<ChatChunk["choices"]>[number]["delta"]) =>
  Boolean(delta?.content || delta?.reasoning_content || delta?.reasoning);

/** One streamed chat: time to the first token, the answer and the usage. */
async function chat(baseUrl: string, sessionId: string, messages: readonly Message[]): Promise<Omit<Outcome, "oracleCachedTokens">> {
  const begin = performance.now();
  const response = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model,
      messages,
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 2_048,
      reasoning_effort: "low",
      user: sessionId,
    }),
  });
  if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  let ttftMs = -1;
  let answer = "";
  let usage: ChatChunk["usage"];
  for await (const data of chunksOf(response.body)) {
    if (data.error) throw new Error(JSON.stringify(data.error));
    const delta = data.choices?.[0]?.delta;
    if (ttftMs < 0 && carriesToken(delta)) ttftMs = performance.now() - begin;
    if (typeof delta?.content === "string") answer += delta.content;
    if (data.usage) usage = data.usage;
  }
  if (!usage) throw new Error("the stream ended without usage");
  return {
    ttftMs,
    e2eMs: performance.now() - begin,
    promptTokens: usage.prompt_tokens,
    cachedTokens: usage.prompt_tokens_details?.cached_tokens ?? 0,
    completionTokens: usage.completion_tokens,
    answer,
  };
}

interface RunResult {
  readonly outcomes: Outcome[];
  readonly failures: string[];
  readonly wallMs: number;
  /** Requests each worker finished. */
  readonly perWorker: number[];
}

/** Generations each worker finished, from its own metrics. */
async function finishedPerWorker(metricsBase: number): Promise<number[]> {
  return Promise.all(
    Array.from({ length: workers }, async (_, index) => {
      const text = await (await fetch(`http://127.0.0.1:${metricsBase + index}/metrics`)).text();
      const line = text
        .split("\n")
        .find((row) => row.startsWith("infermesh_worker_generations_total") && row.includes('outcome="finished"'));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
    }),
  );
}

/** A fresh mesh of sim workers whose router uses `policy`; "score@2" runs two router replicas. */
function startMesh(policy: string, admissionArgs: string[]) {
  const [name, replicas = "1"] = policy.split("@");
  return startTestMesh({
    workers,
    routers: Number(replicas),
    routerArgs: ["--policy", name!, ...routerArgs],
    admissionArgs,
    workerArgs: [
      "--engine",
      "sim",
      "--sim-preset",
      preset,
      "--sim-time-scale",
      String(timeScale),
      "--sim-answer-tokens-min",
      "40",
      "--sim-answer-tokens-max",
      "240",
      "--log-level",
      "info",
    ],
  });
}

/** An exponentially distributed wait of mean `meanMs`, from `next`. */
const exponential = (next: () => number, meanMs: number) => -Math.log(1 - next()) * meanMs;

/**
 * Replays `sessions` against a fresh mesh whose router uses `policy`: with `users`
 * clients (closed loop), or arriving at `sessionRate` a second (open loop).
 */
async function run(sessions: readonly Session[], policy: string): Promise<RunResult> {
  const mesh = await startMesh(policy, ["--max-concurrency", "100000", "--max-queue", "100000"]);
  const oracle = new Oracle();
  const outcomes: Outcome[] = [];
  const failures: string[] = [];
  const seed = Number(values.seed);
  const begin = performance.now();

  const replay = async (session: Session, sessionIndex: number) => {
    // The same think times for every policy, whatever order the sessions end in.
    const think = random(seed + 3_000 + sessionIndex);
    const messages: Message[] = [{ role: "system", content: session.system }];
    for (const [index, turn] of session.turns.entries()) {
      if (index > 0 && thinkMs > 0) await sleep(exponential(think, thinkMs));
      messages.push({ role: "user", content: turn });
      try {
        const promptTokens = Math.ceil(canonicalPrompt({ messages }).length / 4);
        const oracleCachedTokens = oracle.cachedTokens(messages, promptTokens);
        // The oracle has the prompt at once: an upper bound, as a real cache has it only after prefill.
        oracle.remember(messages);
        const outcome = await chat(mesh.baseUrl, session.id, messages);
        outcomes.push({ ...outcome, oracleCachedTokens });
        messages.push({ role: "assistant", content: outcome.answer });
        oracle.remember(messages);
      } catch (error) {
        failures.push((error as Error).message);
        return;
      }
    }
  };

  try {
    if (sessionRate > 0) {
      const next = random(seed + 2_000);
      let arrival = 0;
      const arrivals = sessions.map(() => (arrival += exponential(next, 1000 / sessionRate)));
      await Promise.all(
        sessions.map(async (session, index) => {
          await sleep(Math.max(0, arrivals[index]! - (performance.now() - begin)));
          await replay(session, index);
        }),
      );
    } else {
      let nextSession = 0;
      await Promise.all(
        Array.from({ length: users }, async () => {
          while (nextSession < sessions.length) {
            const index = nextSession++;
            await replay(sessions[index]!, index);
          }
        }),
      );
    }
    const wallMs = performance.now() - begin;
    return { outcomes, failures, wallMs, perWorker: await finishedPerWorker(mesh.ports.workerMetricsBase) };
  } finally {
    await mesh.stop();
  }
}

const percentile = (values: readonly number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};
const sum = (values: readonly number[]) => values.reduce((total, value) => total + value, 0);

interface Summary {
  readonly policy: string;
  readonly requests: number;
  readonly failures: number;
  readonly ttftP50: number;
  readonly ttftP90: number;
  readonly e2eP50: number;
  /** Requests in flight on average over the run (Little's law: their total time over the wall time). */
  readonly meanInFlight: number;
  readonly tokensPerSecond: number;
  readonly hitRate: number;
  readonly oracleHitRate: number;
  readonly busiestShare: number;
}

function summarize(policy: string, result: RunResult): Summary {
  const { outcomes } = result;
  const promptTokens = sum(outcomes.map((outcome) => outcome.promptTokens));
  return {
    policy,
    requests: outcomes.length,
    failures: result.failures.length,
    ttftP50: percentile(
      outcomes.map((outcome) => outcome.ttftMs),
      50,
    ),
    ttftP90: percentile(
      outcomes.map((outcome) => outcome.ttftMs),
      90,
    ),
    e2eP50: percentile(
      outcomes.map((outcome) => outcome.e2eMs),
      50,
    ),
    meanInFlight: sum(outcomes.map((outcome) => outcome.e2eMs)) / result.wallMs,
    tokensPerSecond: (sum(outcomes.map((outcome) => outcome.completionTokens)) * 1000) / result.wallMs,
    hitRate: sum(outcomes.map((outcome) => outcome.cachedTokens)) / promptTokens,
    oracleHitRate: sum(outcomes.map((outcome) => outcome.oracleCachedTokens)) / promptTokens,
    busiestShare: (Math.max(...result.perWorker) * workers) / Math.max(1, sum(result.perWorker)),
  };
}

function print(trace: string, summaries: readonly Summary[]): void {
  const baseline = summaries.find((summary) => summary.policy === "round-robin");
  const ratio = (value: number, base: number | undefined, higherIsBetter: boolean) =>
    base === undefined ? "" : ` (${(higherIsBetter ? value / base : base / value).toFixed(2)}×)`;
  const load =
    sessionRate > 0
      ? `open loop, ${sessionRate} sessions/s, think ${thinkMs} ms (output tok/s is then the offered load's, unless a policy falls behind)`
      : `closed loop, ${users} users`;
  console.log(
    `\ntrace ${trace}: ${workers} sim workers (${preset}, time scale ${timeScale}), ${load}${routerSetting}; ratios against round-robin, >1 is better`,
  );
  console.log(
    "| policy | requests | failed | TTFT p50 ms | TTFT p90 ms | e2e p50 ms | mean in flight | output tok/s | prefix hit | oracle hit | busiest worker |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const s of summaries) {
    console.log(
      `| ${s.policy} | ${s.requests} | ${s.failures} | ${s.ttftP50.toFixed(0)}${ratio(s.ttftP50, baseline?.ttftP50, false)} | ` +
        `${s.ttftP90.toFixed(0)}${ratio(s.ttftP90, baseline?.ttftP90, false)} | ${s.e2eP50.toFixed(0)} | ${s.meanInFlight.toFixed(0)} | ` +
        `${s.tokensPerSecond.toFixed(0)}${ratio(s.tokensPerSecond, baseline?.tokensPerSecond, true)} | ` +
        `${(100 * s.hitRate).toFixed(1)} % | ${(100 * s.oracleHitRate).toFixed(1)} % | ${s.busiestShare.toFixed(2)}× mean |`,
    );
  }
}

type Priority = "interactive" | "standard" | "batch";

/** One request of trace c, as the client saw it. */
interface SpikeOutcome {
  readonly priority: Priority;
  /** When it was sent and ended, ms from the phase's start. */
  readonly sentAt: number;
  readonly endedAt: number;
  /** HTTP status; 200 with `broken` set means the stream failed after it began. */
  readonly status: number;
  readonly broken?: string;
  readonly ttftMs: number;
  readonly completionTokens: number;
  /** Prompt tokens, and those the worker's prefix cache held (from the usage; 0 without one). */
  readonly promptTokens: number;
  readonly cachedTokens: number;
  /** Why a 429/503 was given, from its message (admission's rejection). */
  readonly reason?: string;
}

/** Admission's rejection, told apart by the message the gateway passes on (services/admission/outcomes.ts). */
function rejectionReason(message: string): string {
  const known: [RegExp, string][] = [
    [/queue is full/, "queue_full"],
    [/waited too long/, "queue_timeout"],
    [/expected wait/, "shed_early"],
    [/more urgent/, "shed_for_urgent"],
    [/KV-cache memory/, "shed_memory"],
    [/limit/i, "rate_limited"],
  ];
  return known.find(([pattern]) => pattern.test(message))?.[1] ?? "other";
}

/**
 * Trace c's requests: one-turn chats under 16 shared system prompts; `--spike-interactive`
 * of them interactive (15 % by default: the spike is bulk work), the rest split 45:40
 * between standard and batch.
 */
function spikeRequest(next: () => number, systems: readonly string[]): { priority: Priority; messages: Message[]; user: string } {
  const draw = next();
  const interactive = Number(values["spike-interactive"]);
  const priority: Priority = draw < interactive ? "interactive" : draw < interactive + ((1 - interactive) * 45) / 85 ? "standard" : "batch";
  const system = systems[Math.floor(next() * systems.length)]!;
  return {
    priority,
    messages: [
      { role: "system", content: system },
      { role: "user", content: text(next, between(next, 50, 300)) },
    ],
    user: `c-${Math.floor(next() * 1e9)}`,
  };
}

/** Sends one chat of trace c; never throws: a failure is an outcome. */
async function spikeChat(baseUrl: string, request: ReturnType<typeof spikeRequest>, phaseStart: number): Promise<SpikeOutcome> {
  const sentAt = performance.now() - phaseStart;
  const base = { priority: request.priority, sentAt };
  try {
    const response = await fetch(`${baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-infermesh-priority": request.priority },
      body: JSON.stringify({
        model,
        messages: request.messages,
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: 1_024,
        reasoning_effort: "low",
        user: request.user,
      }),
    });
    if (response.status !== 200) {
      const body = (await response.json().catch(() => ({}))) as { error?: { message?: string } };
      const endedAt = performance.now() - phaseStart;
      return {
        ...base,
        endedAt,
        status: response.status,
        ttftMs: -1,
        completionTokens: 0,
        promptTokens: 0,
        cachedTokens: 0,
        reason: rejectionReason(body.error?.message ?? ""),
      };
    }
    let ttftMs = -1;
    let completionTokens = 0;
    let promptTokens = 0;
    let cachedTokens = 0;
    let broken: string | undefined;
    for await (const data of chunksOf(response.body!)) {
      if (data.error) broken = JSON.stringify(data.error);
      if (ttftMs < 0 && carriesToken(data.choices?.[0]?.delta)) ttftMs = performance.now() - phaseStart - sentAt;
      if (data.usage) {
        completionTokens = data.usage.completion_tokens;
        promptTokens = data.usage.prompt_tokens;
        cachedTokens = data.usage.prompt_tokens_details?.cached_tokens ?? 0;
      }
    }
    return {
      ...base,
      endedAt: performance.now() - phaseStart,
      status: 200,
      ttftMs,
      completionTokens,
      promptTokens,
      cachedTokens,
      ...(broken && { broken }),
    };
  } catch (error) {
    return {
      ...base,
      endedAt: performance.now() - phaseStart,
      status: 0,
      broken: (error as Error).message,
      ttftMs: -1,
      completionTokens: 0,
      promptTokens: 0,
      cachedTokens: 0,
    };
  }
}

/** Poisson arrivals at `perSecond` for `seconds`; resolves when every request has ended. */
async function openLoop(
  baseUrl: string,
  perSecond: number,
  seconds: number,
  next: () => number,
  systems: readonly string[],
): Promise<SpikeOutcome[]> {
  const phaseStart = performance.now();
  const pending: Promise<SpikeOutcome>[] = [];
  let due = 0;
  while (due < seconds * 1000) {
    const wait = due - (performance.now() - phaseStart);
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    pending.push(spikeChat(baseUrl, spikeRequest(next, systems), phaseStart));
    due += (-Math.log(1 - next()) * 1000) / perSecond;
  }
  return Promise.all(pending);
}

interface SpikeSummary {
  readonly policy: string;
  readonly capacityPerSecond: number;
  readonly capacityTokensPerSecond: number;
  /**
   * The unloaded TTFT p99 the spike is judged against, over every class: below the cap
   * each class is granted at once and neither router nor worker sees the class, so all
   * of them sample interactive's unloaded TTFT (interactive alone would be ~15 % of the
   * phase, too few for a p99). Interactive's own figures are printed beside it.
   */
  readonly unloadedP99: number;
  readonly unloadedP50: number;
  readonly unloadedCount: number;
  readonly unloadedInteractiveP99: number;
  readonly unloadedInteractiveCount: number;
  readonly spikeInteractiveP99: number;
  readonly spikeInteractiveP50: number;
  readonly spikeInteractiveCount: number;
  /** The spike's interactive requests slower than twice the unloaded p99, and the mean uncached prompt tokens of those and of all. */
  readonly spikeSlow: { count: number; uncachedSlow: number; uncachedAll: number; slowest: string };
  /** Prefix-cache hit rate (cached over prompt tokens) of the unloaded phase and of the spike, all classes and interactive alone. */
  readonly hitRates: { unloaded: number; spike: number; spikeInteractive: number };
  readonly goodputPerSecond: number;
  readonly goodputTokensPerSecond: number;
  readonly sent: number;
  readonly completed: Record<Priority, number>;
  readonly rejected: Record<string, number>;
  readonly lost: number;
  readonly firstLost?: string;
  /** How long a 429/503 took to come back during the spike, p50 and p99 (ms). */
  readonly rejectionP50: number;
  readonly rejectionP99: number;
  /** Rejections in the spike by class and admission's reason: how many, and how long the slowest percent took. */
  readonly rejectionsByReason: Record<string, { count: number; p99: number }>;
  /** Admission's own time from arrival to rejection, over the whole run: the share within 5 ms, and the bucket holding the p99. */
  readonly admissionRejections: { count: number; within5ms: number; p99AtMost: number };
  /** Admission's wait before the grant of the spike's interactive requests: how many, the share within 10 ms, the p50's and p99's bucket bounds (ms). */
  readonly interactiveWait: { granted: number; within10ms: number; p50AtMost: number; p99AtMost: number };
}

/** A histogram's cumulative buckets (upper bound in seconds → count), summed over the series whose labels contain `labels`. */
async function histogramBuckets(metricsUrl: string, name: string, labels = ""): Promise<Map<number, number>> {
  const text = await fetch(metricsUrl).then((response) => response.text());
  const buckets = new Map<number, number>();
  const pattern = new RegExp(`^${name}_bucket\\{(.*)\\} (\\S+)$`);
  for (const line of text.split("\n")) {
    const match = pattern.exec(line);
    if (!match || !match[1]!.includes(labels)) continue;
    const le = /le="([^"]+)"/.exec(match[1]!)![1];
    const bound = le === "+Inf" ? Infinity : Number(le);
    buckets.set(bound, (buckets.get(bound) ?? 0) + Number(match[2]));
  }
  return buckets;
}

/** The bound (ms) of the bucket holding `share` of the observations of `after` less `before`. */
function bucketAtMost(after: Map<number, number>, before: Map<number, number>, share: number): number {
  const count = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  const bounds = [...after.keys()].sort((a, b) => a - b);
  return 1000 * (bounds.find((bound) => after.get(bound)! - (before.get(bound) ?? 0) >= share * count) ?? Infinity);
}

/** Admission's rejection-time histogram (all classes and reasons together): the share within 5 ms and the p99's bucket bound, in ms. */
async function admissionRejectionTimes(metricsUrl: string): Promise<{ count: number; within5ms: number; p99AtMost: number }> {
  const buckets = await histogramBuckets(metricsUrl, "infermesh_admission_rejection_seconds");
  const count = buckets.get(Infinity) ?? 0;
  return { count, within5ms: count === 0 ? 1 : (buckets.get(0.005) ?? 0) / count, p99AtMost: bucketAtMost(buckets, new Map(), 0.99) };
}

/**
 * Trace c on a fresh mesh: the capacity (closed loop of `--spike-concurrency` clients,
 * admission's cap), then an unloaded phase at a quarter of it (the TTFT
 * baseline), then a spike to three times it. Capacity and goodput are measured the same
 * way: requests that completed in the last two thirds of their phase (the first third
 * is the fleet filling up), per second.
 */
async function spikeRun(policy: string): Promise<SpikeSummary> {
  const cap = Number(values["spike-concurrency"]);
  const seconds = Number(values["spike-seconds"]);
  const next = random(Number(values.seed) + 2_000);
  const systems = Array.from({ length: 16 }, (_, index) => `Assistant ${index}. ${text(next, between(next, 500, 2_000))}`);
  const mesh = await startMesh(policy, ["--max-concurrency", String(cap), "--max-queue", String(cap * 8)]);
  try {
    // Capacity: `cap` clients back to back, the cache warm from the first round.
    const capacityStart = performance.now();
    const capacityOutcomes: SpikeOutcome[] = [];
    await Promise.all(
      Array.from({ length: cap }, async () => {
        while (performance.now() - capacityStart < seconds * 1000)
          capacityOutcomes.push(await spikeChat(mesh.baseUrl, spikeRequest(next, systems), capacityStart));
      }),
    );
    // Completed in the last two thirds of a phase of `seconds`: the steady state.
    const steady = (outcomes: readonly SpikeOutcome[]) =>
      outcomes.filter(
        (outcome) =>
          outcome.status === 200 && !outcome.broken && outcome.endedAt > (seconds * 1000) / 3 && outcome.endedAt <= seconds * 1000,
      );
    const window = ((seconds * 2) / 3) * 1000;
    const measured = steady(capacityOutcomes);
    const capacityPerSecond = (measured.length * 1000) / window;
    const capacityTokensPerSecond = (sum(measured.map((outcome) => outcome.completionTokens)) * 1000) / window;

    const unloaded = await openLoop(mesh.baseUrl, capacityPerSecond / 4, seconds, next, systems);
    const admissionMetrics = `http://127.0.0.1:${mesh.ports.admissionMetrics}/metrics`;
    const waitBefore = await histogramBuckets(admissionMetrics, "infermesh_admission_queue_wait_seconds", 'priority_class="interactive"');
    const spike = await openLoop(mesh.baseUrl, capacityPerSecond * 3, seconds, next, systems);
    const waitAfter = await histogramBuckets(admissionMetrics, "infermesh_admission_queue_wait_seconds", 'priority_class="interactive"');
    const admissionRejections = await admissionRejectionTimes(admissionMetrics);
    const answered = (outcomes: readonly SpikeOutcome[]) => outcomes.filter((outcome) => outcome.status === 200 && outcome.ttftMs >= 0);
    const interactive = (outcomes: readonly SpikeOutcome[]) => answered(outcomes).filter((outcome) => outcome.priority === "interactive");
    const ttfts = (outcomes: readonly SpikeOutcome[]) => outcomes.map((outcome) => outcome.ttftMs);
    const inWindow = steady(spike);
    const unloadedTtft = ttfts(answered(unloaded));
    const unloadedP99 = percentile(unloadedTtft, 99);
    const unloadedInteractiveTtft = ttfts(interactive(unloaded));
    const spikeInteractive = interactive(spike);
    const spikeInteractiveTtft = ttfts(spikeInteractive);
    const slow = spikeInteractive.filter((outcome) => outcome.ttftMs > 2 * unloadedP99);
    const hitRate = (outcomes: readonly SpikeOutcome[]) =>
      sum(outcomes.map((outcome) => outcome.cachedTokens)) / Math.max(1, sum(outcomes.map((outcome) => outcome.promptTokens)));
    const meanUncached = (outcomes: readonly SpikeOutcome[]) =>
      outcomes.length === 0 ? 0 : sum(outcomes.map((outcome) => outcome.promptTokens - outcome.cachedTokens)) / outcomes.length;
    const rejected: Record<string, number> = {};
    const completed: Record<Priority, number> = { interactive: 0, standard: 0, batch: 0 };
    let lost = 0;
    let firstLost: string | undefined;
    for (const outcome of [...unloaded, ...spike]) {
      if (outcome.status === 200 && !outcome.broken) completed[outcome.priority] += 1;
      else if (outcome.status === 429 || outcome.status === 503)
        rejected[`${outcome.priority} ${outcome.status}`] = (rejected[`${outcome.priority} ${outcome.status}`] ?? 0) + 1;
      else {
        lost += 1;
        firstLost ??= `${outcome.status} ${outcome.broken ?? ""}`;
      }
    }
    const spikeRejections = spike.filter((outcome) => outcome.status === 429 || outcome.status === 503);
    const rejectionMs = spikeRejections.map((outcome) => outcome.endedAt - outcome.sentAt);
    const rejectionsByReason: Record<string, { count: number; p99: number }> = {};
    const reasonOf = (outcome: SpikeOutcome) => `${outcome.priority} ${outcome.reason ?? "other"}`;
    for (const reason of new Set(spikeRejections.map(reasonOf))) {
      const times = spikeRejections.filter((outcome) => reasonOf(outcome) === reason).map((outcome) => outcome.endedAt - outcome.sentAt);
      rejectionsByReason[reason] = { count: times.length, p99: percentile(times, 99) };
    }
    const granted = (waitAfter.get(Infinity) ?? 0) - (waitBefore.get(Infinity) ?? 0);
    return {
      rejectionsByReason,
      admissionRejections,
      interactiveWait: {
        granted,
        within10ms: granted === 0 ? 1 : ((waitAfter.get(0.01) ?? 0) - (waitBefore.get(0.01) ?? 0)) / granted,
        p50AtMost: bucketAtMost(waitAfter, waitBefore, 0.5),
        p99AtMost: bucketAtMost(waitAfter, waitBefore, 0.99),
      },
      policy,
      rejectionP50: percentile(rejectionMs, 50),
      rejectionP99: percentile(rejectionMs, 99),
      capacityPerSecond,
      capacityTokensPerSecond,
      unloadedP99,
      unloadedP50: percentile(unloadedTtft, 50),
      unloadedCount: unloadedTtft.length,
      unloadedInteractiveP99: percentile(unloadedInteractiveTtft, 99),
      unloadedInteractiveCount: unloadedInteractiveTtft.length,
      spikeInteractiveP99: percentile(spikeInteractiveTtft, 99),
      spikeInteractiveP50: percentile(spikeInteractiveTtft, 50),
      spikeInteractiveCount: spikeInteractiveTtft.length,
      hitRates: { unloaded: hitRate(unloaded), spike: hitRate(spike), spikeInteractive: hitRate(spikeInteractive) },
      spikeSlow: {
        count: slow.length,
        uncachedSlow: meanUncached(slow),
        uncachedAll: meanUncached(spikeInteractive),
        slowest: [...slow]
          .sort((a, b) => b.ttftMs - a.ttftMs)
          .slice(0, 8)
          .map(
            (outcome) =>
              `${outcome.ttftMs.toFixed(0)} ms at ${(outcome.sentAt / 1000).toFixed(1)} s (${outcome.promptTokens - outcome.cachedTokens}/${outcome.promptTokens} uncached)`,
          )
          .join(", "),
      },
      goodputPerSecond: (inWindow.length * 1000) / window,
      goodputTokensPerSecond: (sum(inWindow.map((outcome) => outcome.completionTokens)) * 1000) / window,
      sent: unloaded.length + spike.length,
      completed,
      rejected,
      lost,
      ...(firstLost && { firstLost }),
    };
  } finally {
    await mesh.stop();
  }
}

function printSpike(summaries: readonly SpikeSummary[]): void {
  console.log(
    `\ntrace c: ${workers} sim workers (${preset}, time scale ${timeScale}), admission cap ${values["spike-concurrency"]}, ` +
      `${(100 * Number(values["spike-interactive"])).toFixed(0)} % interactive, spike to 3× the measured capacity for ${values["spike-seconds"]} s${routerSetting}`,
  );
  console.log(
    "| policy | capacity req/s | goodput req/s (share) | capacity tok/s | goodput tok/s (share) | TTFT p99 unloaded | interactive spike p50 / p99 (× unloaded p99) | completed i/s/b | rejected | rejection p50 / p99 | lost |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const s of summaries) {
    console.log(
      `| ${s.policy} | ${s.capacityPerSecond.toFixed(1)} | ${s.goodputPerSecond.toFixed(1)} (${((100 * s.goodputPerSecond) / s.capacityPerSecond).toFixed(0)} %) | ` +
        `${s.capacityTokensPerSecond.toFixed(0)} | ${s.goodputTokensPerSecond.toFixed(0)} (${((100 * s.goodputTokensPerSecond) / s.capacityTokensPerSecond).toFixed(0)} %) | ` +
        `${s.unloadedP99.toFixed(0)} ms | ${s.spikeInteractiveP50.toFixed(0)} / ${s.spikeInteractiveP99.toFixed(0)} ms (${(s.spikeInteractiveP99 / s.unloadedP99).toFixed(2)}×) | ` +
        `${s.completed.interactive}/${s.completed.standard}/${s.completed.batch} | ${
          Object.entries(s.rejected)
            .map(([key, count]) => `${key}: ${count}`)
            .join(", ") || "none"
        } | ` +
        `${s.rejectionP50.toFixed(1)} / ${s.rejectionP99.toFixed(1)} ms | ${s.lost}${s.firstLost ? ` (${s.firstLost})` : ""} |`,
    );
  }
  for (const s of summaries) {
    const reasons = Object.entries(s.rejectionsByReason).map(([reason, { count, p99 }]) => `${reason} ${count} (p99 ${p99.toFixed(1)} ms)`);
    console.log(`${s.policy}: spike rejections by class and reason: ${reasons.join(", ") || "none"}`);
    const own = s.admissionRejections;
    console.log(
      `${s.policy}: admission's own time to reject (arrival to Rejected, all ${own.count}): ${(100 * own.within5ms).toFixed(1)} % within 5 ms, ` +
        `p99 ≤ ${own.p99AtMost === Infinity ? "∞" : `${own.p99AtMost} ms`} (histogram bucket)`,
    );
    console.log(
      `${s.policy}: unloaded TTFT p50 / p99 ${s.unloadedP50.toFixed(0)} / ${s.unloadedP99.toFixed(0)} ms over ${s.unloadedCount} requests of every class ` +
        `(interactive alone: p99 ${s.unloadedInteractiveP99.toFixed(0)} ms over ${s.unloadedInteractiveCount}); spike interactive over ${s.spikeInteractiveCount}; ` +
        `${s.spikeSlow.count} slower than 2× the unloaded p99, mean uncached prompt tokens ${s.spikeSlow.uncachedSlow.toFixed(0)} (all interactive: ${s.spikeSlow.uncachedAll.toFixed(0)})`,
    );
    const hits = s.hitRates;
    console.log(
      `${s.policy}: prefix hit rate unloaded ${(100 * hits.unloaded).toFixed(1)} %, spike ${(100 * hits.spike).toFixed(1)} % (interactive ${(100 * hits.spikeInteractive).toFixed(1)} %)`,
    );
    if (s.spikeSlow.slowest) console.log(`${s.policy}: slowest interactive in the spike: ${s.spikeSlow.slowest}`);
    const wait = s.interactiveWait;
    console.log(
      `${s.policy}: spike's interactive wait in admission (${wait.granted} granted): ${(100 * wait.within10ms).toFixed(1)} % within 10 ms, ` +
        `p50 ≤ ${wait.p50AtMost} ms, p99 ≤ ${wait.p99AtMost} ms (histogram buckets)`,
    );
  }
}

const traces: Record<string, (seed: number) => Session[]> = { a: sharedPromptTrace, b: documentTrace };
for (const trace of values.traces.split(",")) {
  if (trace === "c") {
    const summaries: SpikeSummary[] = [];
    for (const policy of values.policies.split(",")) {
      summaries.push(await spikeRun(policy));
      console.error(`trace c, ${policy}: done`);
    }
    printSpike(summaries);
    continue;
  }
  const build = traces[trace];
  if (!build) throw new Error(`unknown trace ${trace}; known: ${Object.keys(traces).join(", ")}, c`);
  const sessions = build(Number(values.seed));
  const summaries: Summary[] = [];
  for (const policy of values.policies.split(",")) {
    const result = await run(sessions, policy);
    if (result.failures.length > 0) console.error(`${policy}: ${result.failures.length} failed, first: ${result.failures[0]}`);
    summaries.push(summarize(policy, result));
    console.error(`trace ${trace}, ${policy}: ${result.outcomes.length} requests in ${(result.wallMs / 1000).toFixed(1)} s`);
  }
  print(trace, summaries);
}

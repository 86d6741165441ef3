/**
 * Fleet benchmark: the same trace through the same mesh of `sim` workers (H100 preset,
 * gpt-oss-20b), once per router policy: infermesh's scoring picker against the plain
 * round-robin and least-loaded baselines. Each policy gets a fresh mesh, so every run
 * starts with cold caches.
 *
 * Traces (closed loop: `--users` clients, each sending its next request when the last
 * one ends, so the figures are what the fleet sustains at that concurrency):
 *   a  tenants share long system prompts; each session is several turns, each turn
 *      sending the whole conversation back (the shape of a chat product).
 *   b  short one-off chats mixed with ~10k-token documents asked several questions.
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
 */
import { parseArgs } from "node:util";
import { blockHashes, canonicalPrompt, prefixBlockChars } from "../../services/common/prefix-hash.js";
import { startTestMesh } from "../support/harness.js";

const { values } = parseArgs({
  options: {
    traces: { type: "string", default: "a,b" },
    policies: { type: "string", default: "score,round-robin,least-loaded" },
    workers: { type: "string", default: "8" },
    users: { type: "string", default: "96" },
    sessions: { type: "string", default: "160" },
    "time-scale": { type: "string", default: "10" },
    seed: { type: "string", default: "1" },
  },
});
const workers = Number(values.workers);
const users = Number(values.users);
const sessionCount = Number(values.sessions);
const timeScale = Number(values["time-scale"]);
const model = "sim-gpt-oss-20b";

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
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const vocabulary = "the of and to in is for on that with as by at from this be are or an it was which not can has have will data user team order policy account billing report request service system value record".split(" ");

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

/** Trace a: 24 tenants (a few big, many small), system prompts of 1.5k–6k tokens, 3–8 turns of 40–300 tokens. */
function sharedPromptTrace(seed: number): Session[] {
  const next = random(seed);
  const tenants = Array.from({ length: 24 }, (_, index) => `You are the assistant of tenant ${index}. ${text(next, between(next, 1_500, 6_000))}`);
  return Array.from({ length: sessionCount }, (_, index) => {
    // Zipf-like: tenant k is chosen about 1/(k+1) as often as tenant 0.
    const weights = tenants.map((_, k) => 1 / (k + 1));
    let pick = next() * weights.reduce((sum, weight) => sum + weight, 0);
    let tenant = 0;
    while (pick > weights[tenant]!) pick -= weights[tenant++]!;
    const turns = Array.from({ length: between(next, 3, 8) }, () => text(next, between(next, 40, 300)));
    return { id: `a-${seed}-${index}`, system: tenants[tenant]!, turns };
  });
}

/** Trace b: three in four sessions are one short chat; the rest a ~10k-token document asked 2–4 questions. */
function documentTrace(seed: number): Session[] {
  const next = random(seed + 1_000);
  return Array.from({ length: sessionCount }, (_, index) => {
    if (next() < 0.75) return { id: `b-${seed}-${index}`, system: "You are a helpful assistant.", turns: [text(next, between(next, 20, 200))] };
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
  let usage: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details?: { cached_tokens?: number } } | undefined;
  let buffered = "";
  const decoder = new TextDecoder();
  for await (const chunk of response.body) {
    buffered += decoder.decode(chunk as Uint8Array, { stream: true });
    let end: number;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const data = JSON.parse(event.slice(6));
      if (data.error) throw new Error(JSON.stringify(data.error));
      const delta = data.choices?.[0]?.delta;
      if (delta && ttftMs < 0 && (delta.content || delta.reasoning_content || delta.reasoning)) ttftMs = performance.now() - begin;
      if (typeof delta?.content === "string") answer += delta.content;
      if (data.usage) usage = data.usage;
    }
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
}

/** Replays `sessions` with `users` clients against a fresh mesh whose router uses `policy`. */
async function run(sessions: readonly Session[], policy: string): Promise<RunResult> {
  const mesh = await startTestMesh({
    workers,
    routerArgs: ["--policy", policy],
    admissionArgs: ["--max-concurrency", "100000", "--max-queue", "100000"],
    workerArgs: [
      "--engine", "sim",
      "--sim-preset", "h100-gpt-oss-20b",
      "--sim-time-scale", String(timeScale),
      "--sim-answer-tokens-min", "40",
      "--sim-answer-tokens-max", "240",
      "--log-level", "info",
    ],
  });
  const oracle = new Oracle();
  const outcomes: Outcome[] = [];
  const failures: string[] = [];
  let nextSession = 0;
  const begin = performance.now();
  try {
    await Promise.all(
      Array.from({ length: users }, async () => {
        while (nextSession < sessions.length) {
          const session = sessions[nextSession++]!;
          const messages: Message[] = [{ role: "system", content: session.system }];
          for (const turn of session.turns) {
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
              break;
            }
          }
        }
      }),
    );
    return { outcomes, failures, wallMs: performance.now() - begin };
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
  readonly tokensPerSecond: number;
  readonly hitRate: number;
  readonly oracleHitRate: number;
}

function summarize(policy: string, result: RunResult): Summary {
  const { outcomes } = result;
  const promptTokens = sum(outcomes.map((outcome) => outcome.promptTokens));
  return {
    policy,
    requests: outcomes.length,
    failures: result.failures.length,
    ttftP50: percentile(outcomes.map((outcome) => outcome.ttftMs), 50),
    ttftP90: percentile(outcomes.map((outcome) => outcome.ttftMs), 90),
    e2eP50: percentile(outcomes.map((outcome) => outcome.e2eMs), 50),
    tokensPerSecond: (sum(outcomes.map((outcome) => outcome.completionTokens)) * 1000) / result.wallMs,
    hitRate: sum(outcomes.map((outcome) => outcome.cachedTokens)) / promptTokens,
    oracleHitRate: sum(outcomes.map((outcome) => outcome.oracleCachedTokens)) / promptTokens,
  };
}

function print(trace: string, summaries: readonly Summary[]): void {
  const baseline = summaries.find((summary) => summary.policy === "round-robin");
  const ratio = (value: number, base: number | undefined, higherIsBetter: boolean) =>
    base === undefined ? "" : ` (${(higherIsBetter ? value / base : base / value).toFixed(2)}×)`;
  console.log(`\ntrace ${trace}: ${workers} sim workers (h100-gpt-oss-20b, time scale ${timeScale}), ${users} users; ratios against round-robin, >1 is better`);
  console.log("| policy | requests | failed | TTFT p50 ms | TTFT p90 ms | e2e p50 ms | output tok/s | prefix hit | oracle hit |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const s of summaries) {
    console.log(
      `| ${s.policy} | ${s.requests} | ${s.failures} | ${s.ttftP50.toFixed(0)}${ratio(s.ttftP50, baseline?.ttftP50, false)} | ` +
        `${s.ttftP90.toFixed(0)}${ratio(s.ttftP90, baseline?.ttftP90, false)} | ${s.e2eP50.toFixed(0)} | ` +
        `${s.tokensPerSecond.toFixed(0)}${ratio(s.tokensPerSecond, baseline?.tokensPerSecond, true)} | ` +
        `${(100 * s.hitRate).toFixed(1)} % | ${(100 * s.oracleHitRate).toFixed(1)} % |`,
    );
  }
}

const traces: Record<string, (seed: number) => Session[]> = { a: sharedPromptTrace, b: documentTrace };
for (const trace of values.traces.split(",")) {
  const build = traces[trace];
  if (!build) throw new Error(`unknown trace ${trace}; known: ${Object.keys(traces).join(", ")}`);
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

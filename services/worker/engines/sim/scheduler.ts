import { pushable, type Pushable } from "it-pushable";
import { FinishReason, type TokenLogprob, type ToolCall } from "../../../../gen/infermesh/common/v1/common.js";
import type { Clock } from "../../../common/clock.js";
import { insertAfterLast } from "../../../common/ordered-insert.js";
import { EngineError, type EngineLoad, type GenerationEvent, type KvBlockEvent } from "../engine.js";
import type { StopStrings } from "../stop-strings.js";
import { KvBlocks, type CachedBlock } from "./kv-blocks.js";
import type { SimOptions } from "./sim-options.js";
import type { OutputWriter } from "./synthetic-output.js";
import { blockTokens } from "./synthetic-text.js";
import { stepDurationMs } from "./timing.js";

/** One generation as the scheduler runs it, settled (and validated) before it queues. */
export interface SequencePlan {
  readonly promptTokens: number;
  /** Prefix-block hashes of the canonical prompt. */
  readonly promptHashes: readonly number[];
  /** For a chat: the hashes of the conversation with this answer appended, which the next turn will share. */
  readonly continuation: ((answer: string) => number[]) | undefined;
  readonly maxTokens: number;
  /** The caller's session ("" for none), whose KV the scheduler tracks. */
  readonly sessionId: string;
  /** 0 for the most urgent priority class: it queues, computes its prompt and keeps its KV ahead of less urgent ones. */
  readonly urgency: number;
  readonly writer: OutputWriter;
  readonly stops: StopStrings;
  readonly logprobs: boolean;
}

/** Output gathered for a sequence's next delta. */
interface PendingDelta {
  text: string;
  reasoningText: string;
  channel: "reasoning" | "answer" | "tool" | undefined;
  tokens: number;
  logprobs: TokenLogprob[];
  toolCalls: readonly ToolCall[] | undefined;
}

/** A generation inside the scheduler: queued, in the batch, or done. */
export class Sequence {
  state: "waiting" | "running" | "done" = "waiting";
  readonly events: Pushable<GenerationEvent> = pushable<GenerationEvent>({ objectMode: true });
  cancelled = false;
  started = false;
  cachedTokens = 0;
  /** Tokens still to compute before the next token comes out (prompt, or prompt and output after a preemption). */
  prefillLeft = 0;
  /** While it waits: the prompt tokens it will compute, as the cache held when it arrived (or when it was preempted). */
  expectedPrefill = 0;
  generated = 0;
  reasoningTokens = 0;
  /** Cached prefix blocks it uses, in prompt order. */
  shared: CachedBlock[] = [];
  privateBlocks = 0;
  /** What the current step does for it. */
  role: "decode" | "prefill" | undefined;
  answer = "";
  readonly pending: PendingDelta = { text: "", reasoningText: "", channel: undefined, tokens: 0, logprobs: [], toolCalls: undefined };

  constructor(
    readonly plan: SequencePlan,
    readonly arrivedAt: number,
  ) {}

  /** Tokens whose KV it holds once its prompt is computed. */
  get contextTokens(): number {
    return this.plan.promptTokens + this.generated;
  }
}

/** Sessions tracked at most: the least recently used beyond it are forgotten (their KV stays, evictable by LRU). */
const maxTrackedSessions = 100_000;

interface PlannedStep {
  readonly endsAt: number;
  readonly prefill: readonly (readonly [Sequence, number])[];
}

/**
 * Continuous batching on a simulated GPU. Requests queue by priority, first come first
 * served within a class, and join the batch at a step boundary when a batch slot and
 * the KV blocks for their prompt are free (idle prefix blocks are evicted for them).
 * Each step decodes one token for every sequence past its prompt and computes prompt
 * chunks, more urgent classes first, within the step's token budget; it lasts what
 * `stepDurationMs` says, times `timeScale`. The batch is kept in that order (class,
 * then admission), and its last sequence is the one given up when KV runs short: a
 * sequence that cannot grow its KV preempts it, and a queued request that does not fit
 * preempts it while it is of a less urgent class (vLLM's priority policy). A preempted
 * sequence queues again at the front of its class and recomputes. One timer runs per
 * step; steps run back to back on simulated time, so a late timer does not slow the
 * simulated GPU, and with timeScale 0 all work runs at once.
 */
export class Scheduler {
  private readonly waiting: Sequence[] = [];
  private running: Sequence[] = [];
  private readonly kv: KvBlocks;
  private step: PlannedStep | undefined;
  private timer: { cancel(): void } | undefined;
  private wakeQueued = false;
  /** When the last step ended. */
  private idleSince = Number.NEGATIVE_INFINITY;
  private loadChanged = false;
  private closed = false;
  private prefixCacheQueries = 0;
  private prefixCacheHits = 0;
  private readonly throughput: { atMs: number; tokens: number }[] = [];
  private tokensThisWake = 0;
  /** Sessions whose last generation left KV behind, least recently used first: the blocks it held, and when it ended. */
  private readonly sessions = new Map<string, { hashes: readonly number[]; endedAt: number }>();

  constructor(
    private readonly options: SimOptions,
    private readonly clock: Clock,
    private readonly notify: { loadChanged(): void; kvEvent(event: KvBlockEvent): void },
  ) {
    this.kv = new KvBlocks(Math.floor(options.kvCapacityTokens / blockTokens));
  }

  /** Queues a generation; it joins the batch at the next step boundary it fits. */
  submit(plan: SequencePlan): Sequence {
    if (this.closed) throw new EngineError("unavailable", "the engine is shutting down");
    const sequence = new Sequence(plan, this.clock.now());
    sequence.expectedPrefill =
      plan.promptTokens - this.kv.match(plan.promptHashes, Math.floor((plan.promptTokens - 1) / blockTokens)).length * blockTokens;
    // Behind every queued request of its class or a more urgent one.
    insertAfterLast(this.waiting, sequence, (queued) => queued.plan.urgency > plan.urgency);
    if (!this.step && !this.wakeQueued) {
      // Requests that arrive in the same tick (the n choices of one request) start together.
      this.wakeQueued = true;
      queueMicrotask(() => {
        this.wakeQueued = false;
        if (!this.step && !this.closed) this.wake();
      });
    }
    this.notify.loadChanged();
    return sequence;
  }

  /**
   * Cancels a generation: a queued one leaves the queue now and its events end with
   * `reason` (when given); a running one leaves the batch at the end of the step and
   * ends with a CANCELLED finish, as does a preempted one, at once.
   */
  cancel(sequence: Sequence, reason: unknown): void {
    if (sequence.state === "waiting") {
      this.waiting.splice(this.waiting.indexOf(sequence), 1);
      if (sequence.started) {
        this.finish(sequence, FinishReason.FINISH_REASON_CANCELLED);
      } else {
        sequence.state = "done";
        sequence.events.end(reason === undefined ? undefined : toError(reason));
      }
      this.notify.loadChanged();
    } else if (sequence.state === "running") {
      sequence.cancelled = true;
    }
  }

  load(): EngineLoad {
    return {
      runningRequests: this.running.length,
      waitingRequests: this.waiting.length,
      // Like vLLM's kv_cache_usage: idle cached blocks count as free, since taking them back costs nothing.
      kvUsedTokens: (this.kv.usedBlocks - this.kv.idleBlocks) * blockTokens,
      kvTotalTokens: this.kv.totalBlocks * blockTokens,
      idleSequences: this.kv.idlePrefixes,
      tokensPerSecond: this.tokensPerSecond(),
      prefixCacheQueries: this.prefixCacheQueries,
      prefixCacheHits: this.prefixCacheHits,
      pendingPrefillTokens: this.pendingPrefillTokens(),
    };
  }

  /** What is left to prefill of the batch, plus the uncached part of every queued prompt as the cache held on its arrival. */
  private pendingPrefillTokens(): number {
    let tokens = 0;
    for (const sequence of this.running) tokens += sequence.prefillLeft;
    for (const sequence of this.waiting) tokens += sequence.expectedPrefill;
    return tokens;
  }

  /** Evicts idle prefix blocks, least recently used first, until `tokens` are freed or none are idle. */
  evictIdle(tokens: number): number {
    const freed = this.kv.evictIdle(Math.ceil(tokens / blockTokens)) * blockTokens;
    this.publishKv();
    if (freed > 0) this.notify.loadChanged();
    return freed;
  }

  /**
   * Sessions whose KV may still be here (`count`, pruned as their blocks go), and the
   * idle ones, least recently used first, with the blocks only they hold: at most `limit`.
   */
  residentSessions(limit: number): { count: number; idle: { sessionId: string; kvTokens: number; idleMs: number }[] } {
    const busy = new Set<string>();
    for (const sequence of [...this.running, ...this.waiting]) if (sequence.plan.sessionId !== "") busy.add(sequence.plan.sessionId);
    const now = this.clock.now();
    const idle: { sessionId: string; kvTokens: number; idleMs: number }[] = [];
    for (const [sessionId, session] of this.sessions) {
      if (idle.length >= limit) break;
      if (session.hashes.length === 0 || !this.kv.holds(session.hashes[0]!)) {
        this.sessions.delete(sessionId);
        continue;
      }
      if (busy.has(sessionId)) continue;
      const tail = this.kv.exclusiveTail(session.hashes);
      if (tail > 0) idle.push({ sessionId, kvTokens: tail * blockTokens, idleMs: now - session.endedAt });
    }
    return { count: this.sessions.size, idle };
  }

  /** Drops the KV only these idle sessions hold (a shared prefix stays); returns the tokens freed. */
  evictSessions(sessionIds: readonly string[]): number {
    const busy = new Set<string>();
    for (const sequence of [...this.running, ...this.waiting]) busy.add(sequence.plan.sessionId);
    let freed = 0;
    for (const sessionId of sessionIds) {
      const session = this.sessions.get(sessionId);
      if (!session || busy.has(sessionId)) continue;
      freed += this.kv.evictChain(session.hashes) * blockTokens;
      this.sessions.delete(sessionId);
    }
    this.publishKv();
    if (freed > 0) this.notify.loadChanged();
    return freed;
  }

  /** Stops: generations not yet started fail with "unavailable"; started ones end CANCELLED. */
  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.step = undefined;
    for (const sequence of this.waiting.splice(0)) {
      if (sequence.started) {
        this.finish(sequence, FinishReason.FINISH_REASON_CANCELLED);
      } else {
        sequence.state = "done";
        sequence.events.end(new EngineError("unavailable", "the engine is shutting down"));
      }
    }
    for (const sequence of this.running) this.finish(sequence, FinishReason.FINISH_REASON_CANCELLED);
    this.running = [];
    this.publishKv();
    this.notify.loadChanged();
  }

  /** Completes the steps that have ended, admits and plans the next, and sets the timer for it. */
  private wake(): void {
    this.timer = undefined;
    const now = this.clock.now();
    for (;;) {
      let boundary: number;
      if (this.step) {
        if (this.step.endsAt > now) break;
        boundary = this.step.endsAt;
        this.complete(this.step);
        this.idleSince = boundary;
      } else {
        // The GPU was idle: it starts when the first queued request arrived.
        const next = this.waiting[0];
        if (!next) break;
        boundary = Math.max(next.arrivedAt, this.idleSince);
      }
      this.admit(boundary);
      this.step = this.plan(boundary);
      if (!this.step && (this.waiting.length === 0 || this.waiting[0]!.arrivedAt <= boundary)) break;
    }
    for (const sequence of this.running) this.flushDelta(sequence);
    if (this.tokensThisWake > 0) {
      this.throughput.push({ atMs: now, tokens: this.tokensThisWake });
      this.tokensThisWake = 0;
    }
    this.publishKv();
    if (this.loadChanged) {
      this.loadChanged = false;
      this.notify.loadChanged();
    }
    if (this.step) {
      const delay = Math.max(this.step.endsAt - now, this.options.wakeIntervalMs);
      this.timer = this.clock.setTimer(() => this.wake(), delay);
    }
  }

  /**
   * Moves queued sequences into the batch in queue order while they fit; one that does
   * not fit preempts the batch's last sequence while that one is of a less urgent class.
   */
  private admit(boundary: number): void {
    while (this.waiting.length > 0) {
      const sequence = this.waiting[0]!;
      if (sequence.arrivedAt > boundary) break;
      const plan = sequence.plan;
      const toCompute = sequence.contextTokens;
      // At least the last prompt token is computed again: its output starts the answer.
      const matched = this.kv.match(plan.promptHashes, Math.floor((plan.promptTokens - 1) / blockTokens));
      const needed = Math.ceil((toCompute + 1) / blockTokens) - matched.length;
      if (this.running.length >= this.options.maxBatch || !this.kv.fits(needed, matched)) {
        const last = this.running[this.running.length - 1];
        if (last === undefined || last.plan.urgency <= plan.urgency) break;
        this.preempt(last);
        continue;
      }
      this.waiting.shift();
      this.kv.acquire(matched);
      this.kv.allocate(needed);
      sequence.shared = matched;
      sequence.privateBlocks = needed;
      sequence.prefillLeft = toCompute - matched.length * blockTokens;
      sequence.state = "running";
      insertAfterLast(this.running, sequence, (running) => running.plan.urgency > plan.urgency);
      this.loadChanged = true;
      if (!sequence.started) {
        sequence.started = true;
        sequence.cachedTokens = matched.length * blockTokens;
        this.prefixCacheQueries += plan.promptTokens;
        this.prefixCacheHits += sequence.cachedTokens;
        sequence.events.push({
          kind: "started",
          promptTokens: plan.promptTokens,
          cachedTokens: sequence.cachedTokens,
          maxTokens: plan.maxTokens,
        });
      }
    }
  }

  /** The next step's work and end, or undefined when the batch is empty. */
  private plan(boundary: number): PlannedStep | undefined {
    let decodingSequences = 0;
    let decodingKvTokens = 0;
    for (let index = 0; index < this.running.length; index += 1) {
      const sequence = this.running[index]!;
      sequence.role = undefined;
      if (sequence.prefillLeft > 0) continue;
      // Room for the token it writes; preempting the newest sequences when there is none.
      const needed = Math.ceil((sequence.contextTokens + 1) / blockTokens) - sequence.shared.length - sequence.privateBlocks;
      let preempted = false;
      while (needed > 0 && !this.kv.allocate(needed)) {
        const victim = this.running[this.running.length - 1]!;
        this.preempt(victim);
        if (victim === sequence) {
          preempted = true;
          break;
        }
      }
      if (preempted) break;
      if (needed > 0) sequence.privateBlocks += needed;
      sequence.role = "decode";
      decodingSequences += 1;
      decodingKvTokens += sequence.contextTokens;
    }
    let budget = this.options.maxBatchTokens - decodingSequences;
    const prefill: (readonly [Sequence, number])[] = [];
    let prefillTokens = 0;
    for (const sequence of this.running) {
      if (budget <= 0) break;
      if (sequence.prefillLeft === 0) continue;
      const chunk = Math.min(sequence.prefillLeft, budget);
      budget -= chunk;
      prefillTokens += chunk;
      sequence.role = "prefill";
      prefill.push([sequence, chunk]);
    }
    if (decodingSequences === 0 && prefill.length === 0) return undefined;
    const durationMs = stepDurationMs(this.options, { decodingSequences, decodingKvTokens, prefillTokens });
    return { endsAt: boundary + durationMs * this.options.timeScale, prefill };
  }

  /** Applies a finished step: prompt chunks computed, one token for every sequence that produces one. */
  private complete(step: PlannedStep): void {
    this.step = undefined;
    for (const [sequence, chunk] of step.prefill) {
      sequence.prefillLeft -= chunk;
      if (sequence.prefillLeft === 0 && !sequence.cancelled) this.storePrompt(sequence);
    }
    for (const sequence of this.running) {
      if (sequence.cancelled) this.finish(sequence, FinishReason.FINISH_REASON_CANCELLED);
      else if (sequence.role === "decode" || (sequence.role === "prefill" && sequence.prefillLeft === 0)) this.produce(sequence);
    }
    this.running = this.running.filter((sequence) => sequence.state === "running");
  }

  /** Caches the prompt's blocks once computed, so later prompts that share them skip them. */
  private storePrompt(sequence: Sequence): void {
    const hashes = sequence.plan.promptHashes;
    for (let index = sequence.shared.length; index < hashes.length; index += 1) {
      sequence.shared.push(this.kv.store(hashes[index]!, index === 0 ? undefined : hashes[index - 1]));
      sequence.privateBlocks -= 1;
    }
  }

  private produce(sequence: Sequence): void {
    const plan = sequence.plan;
    const token = plan.writer.next();
    sequence.generated += 1;
    this.tokensThisWake += 1;
    const pending = sequence.pending;
    if (pending.channel !== undefined && pending.channel !== token.channel) this.flushDelta(sequence);
    pending.channel = token.channel;
    pending.tokens += 1;
    if (token.channel === "reasoning") {
      pending.reasoningText += token.text;
      sequence.reasoningTokens += 1;
    } else if (token.channel === "answer") {
      const text = plan.stops.push(token.text);
      pending.text += text;
      sequence.answer += text;
      if (token.logprob) pending.logprobs.push(token.logprob);
    } else if (token.toolCalls) {
      pending.toolCalls = token.toolCalls;
    }
    if (plan.stops.stopped) this.finish(sequence, FinishReason.FINISH_REASON_STOP);
    else if (plan.writer.done)
      this.finish(sequence, plan.writer.callsTools ? FinishReason.FINISH_REASON_TOOL_CALLS : FinishReason.FINISH_REASON_STOP);
    else if (sequence.generated >= plan.maxTokens) this.finish(sequence, FinishReason.FINISH_REASON_LENGTH);
    else if (pending.tokens >= this.options.maxTokensPerDelta) this.flushDelta(sequence);
  }

  private finish(sequence: Sequence, reason: FinishReason): void {
    const plan = sequence.plan;
    if (reason !== FinishReason.FINISH_REASON_CANCELLED) {
      const held = plan.stops.flush();
      sequence.pending.text += held;
      sequence.answer += held;
    }
    this.flushDelta(sequence);
    if (reason === FinishReason.FINISH_REASON_STOP && plan.continuation) {
      // The KV now also holds the answer: a next turn that sends it back shares it.
      const hashes = plan.continuation(sequence.answer);
      for (let index = plan.promptHashes.length; index < hashes.length && sequence.privateBlocks > 0; index += 1) {
        sequence.shared.push(this.kv.store(hashes[index]!, hashes[index - 1]));
        sequence.privateBlocks -= 1;
      }
    }
    if (plan.sessionId !== "" && sequence.shared.length > 0) {
      // Its KV stays cached after it: the session's, until evicted.
      this.sessions.delete(plan.sessionId);
      this.sessions.set(plan.sessionId, { hashes: sequence.shared.map((block) => block.hash), endedAt: this.clock.now() });
      if (this.sessions.size > maxTrackedSessions) this.sessions.delete(this.sessions.keys().next().value!);
    }
    this.releaseKv(sequence);
    sequence.state = "done";
    sequence.events.push({
      kind: "finished",
      finishReason: reason,
      promptTokens: plan.promptTokens,
      completionTokens: sequence.generated,
      cachedTokens: sequence.cachedTokens,
      reasoningTokens: sequence.reasoningTokens,
    });
    sequence.events.end();
    this.loadChanged = true;
  }

  /** Takes the batch's last sequence out and queues it first in its class, to recompute what it had. */
  private preempt(sequence: Sequence): void {
    this.flushDelta(sequence);
    this.releaseKv(sequence);
    sequence.state = "waiting";
    sequence.role = undefined;
    sequence.expectedPrefill = sequence.contextTokens;
    this.running.pop();
    insertAfterLast(this.waiting, sequence, (queued) => queued.plan.urgency >= sequence.plan.urgency);
    this.loadChanged = true;
  }

  private releaseKv(sequence: Sequence): void {
    this.kv.release(sequence.shared);
    this.kv.free(sequence.privateBlocks);
    sequence.shared = [];
    sequence.privateBlocks = 0;
  }

  private flushDelta(sequence: Sequence): void {
    const pending = sequence.pending;
    if (pending.tokens === 0 && pending.text === "" && pending.reasoningText === "" && !pending.toolCalls) return;
    sequence.events.push({
      kind: "delta",
      text: pending.text,
      ...(pending.reasoningText !== "" && { reasoningText: pending.reasoningText }),
      tokenCount: pending.tokens,
      ...(sequence.plan.logprobs && pending.channel === "answer" && { logprobs: pending.logprobs }),
      // The simulated model writes its calls whole, at their last token.
      ...(pending.toolCalls && { toolCalls: pending.toolCalls.map((call, index) => ({ index, call })) }),
    });
    pending.text = "";
    pending.reasoningText = "";
    pending.channel = undefined;
    pending.tokens = 0;
    pending.logprobs = [];
    pending.toolCalls = undefined;
  }

  private publishKv(): void {
    const event = this.kv.takeEvents();
    if (event) this.notify.kvEvent(event);
  }

  /** Tokens per second over the last five seconds of real time. */
  private tokensPerSecond(): number {
    const windowMs = 5_000;
    const oldest = this.clock.now() - windowMs;
    while (this.throughput.length > 0 && this.throughput[0]!.atMs < oldest) this.throughput.shift();
    let tokens = 0;
    for (const sample of this.throughput) tokens += sample.tokens;
    return (tokens * 1000) / windowMs;
  }
}

function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

import type {
  ChatMessage,
  FinishReason,
  ModelInfo,
  ReasoningEffort,
  SamplingParams,
  TokenLogprob,
  Tool,
} from "../../../gen/infermesh/common/v1/common.js";
import type { IndexedToolCall } from "../../../gen/infermesh/worker/v1/worker_service.js";
import { urgencyOf, type ClassName } from "../../common/priority-classes.js";

/**
 * One generation as an engine receives it: one choice (the worker runs `n` of them
 * as `n` generations). Exactly one of messages or prompt is set.
 */
export interface GenerationInput {
  readonly requestId: string;
  readonly model: string;
  readonly messages: readonly ChatMessage[];
  readonly prompt: string | undefined;
  /** `n` is the worker's business; an engine decodes one choice. */
  readonly sampling: SamplingParams;
  readonly tools: readonly Tool[];
  /** "auto" (or ""), "none", "required", or one tool's name. */
  readonly toolChoice: string;
  /** The caller's session, "" for none: the engine tracks the KV it leaves behind (residentSessions). */
  readonly sessionId?: string;
  readonly reasoningEffort: ReasoningEffort;
  /** The class admission granted it under (standard when the caller named none): engines that schedule by priority serve more urgent classes first. */
  readonly priority?: ClassName;
}

/** 0 for the most urgent class; a generation without one is standard. */
export const generationUrgency = (input: GenerationInput): number => urgencyOf(input.priority ?? "standard");

/** What an engine emits for one generation, in order: started, deltas, finished. */
export type GenerationEvent =
  | {
      readonly kind: "started";
      readonly promptTokens: number;
      readonly cachedTokens: number;
      /** The output bound in force (the request's, or the engine's default). */
      readonly maxTokens: number;
    }
  | {
      readonly kind: "delta";
      /** Answer text (may be empty). */
      readonly text: string;
      /** Reasoning text (may be empty). */
      readonly reasoningText?: string;
      readonly tokenCount: number;
      /** One entry per token of the delta, when logprobs were asked for. */
      readonly logprobs?: readonly TokenLogprob[];
      /**
       * Tool calls as they are generated, by their index among the choice's calls: a
       * call's first fragment carries its id and name, later ones (empty id) append to
       * its arguments. An engine that learns calls whole sends each as one fragment.
       */
      readonly toolCalls?: readonly IndexedToolCall[];
    }
  | {
      readonly kind: "finished";
      readonly finishReason: FinishReason;
      readonly promptTokens: number;
      readonly completionTokens: number;
      readonly cachedTokens: number;
      readonly reasoningTokens: number;
    };

/** Current load of an engine, for the router's and memory-guard's reports. */
export interface EngineLoad {
  readonly runningRequests: number;
  readonly waitingRequests: number;
  readonly kvUsedTokens: number;
  readonly kvTotalTokens: number;
  /** Sequences (or sessions) holding reusable KV but running nothing. */
  readonly idleSequences: number;
  readonly tokensPerSecond: number;
  /** Prompt tokens looked up in the prefix cache since start. */
  readonly prefixCacheQueries: number;
  /** Of those, tokens that were found cached. */
  readonly prefixCacheHits: number;
  /** Prompt tokens queued or running and not yet computed (cached ones not counted); absent when the engine cannot tell. */
  readonly pendingPrefillTokens?: number;
}

/**
 * Which prompt prefixes the engine's KV cache now holds, as chained 64-character
 * block hashes of the canonical prompt (services/common/prefix-hash.ts).
 */
export interface KvBlockEvent {
  readonly stored: readonly number[];
  readonly evicted: readonly number[];
}

export interface Embeddings {
  readonly vectors: number[][];
  readonly promptTokens: number;
}

/** The sessions whose KV an engine keeps. */
export interface SessionResidency {
  /** Sessions with KV on the device, running or idle. */
  readonly count: number;
  /** Idle ones, least recently used first: what evicting each would free, and for how long it has been idle. */
  readonly idle: readonly { readonly sessionId: string; readonly kvTokens: number; readonly idleMs: number }[];
}

/** A failure the worker maps to a gRPC status; `kind` is a closed set. */
export class EngineError extends Error {
  override readonly name = "EngineError";
  constructor(
    readonly kind:
      | "invalid_argument"
      | "not_found"
      | "failed_precondition"
      | "unavailable"
      | "resource_exhausted"
      | "deadline_exceeded"
      | "permission_denied"
      | "unauthenticated"
      | "unimplemented"
      | "internal",
    message: string,
  ) {
    super(message);
  }
}

/**
 * The engine behind a worker: llama.cpp in-process, an upstream OpenAI-compatible
 * server, or the named GPU simulator. One engine per worker process.
 */
export interface Engine {
  /** "llamacpp", "openai" or "sim". */
  readonly kind: string;
  /** The device it runs on, e.g. "cpu" or "cuda:0". */
  readonly device: string;
  /** Sequences it decodes at once. */
  readonly maxSequences: number;
  models(): ModelInfo[];
  /**
   * Runs one generation. Validation failures throw EngineError before the first event.
   * Aborting `signal` stops decoding within one step; the iterable then ends with a
   * finished event whose reason is CANCELLED.
   */
  generate(input: GenerationInput, signal: AbortSignal): AsyncIterable<GenerationEvent>;
  /** Tokens of `text`, or of `messages` rendered with the chat template when given. */
  tokenize(model: string, text: string, messages?: readonly ChatMessage[]): Promise<number[]>;
  detokenize(model: string, tokens: readonly number[]): Promise<string>;
  /** One L2-normalised vector per input; EngineError "unimplemented" when unsupported. */
  embed(model: string, inputs: readonly string[], signal: AbortSignal): Promise<Embeddings>;
  load(): EngineLoad;
  /** Frees KV held by idle sequences until about `tokens` cells are free; returns cells freed. */
  evictIdle(tokens: number): Promise<number>;
  /** Registers a callback for load changes (a request started or ended). */
  onLoadChange(listener: () => void): void;
  /** Registers a callback for prefix blocks stored or evicted; engines that cannot tell never call it. */
  onKvEvent(listener: (event: KvBlockEvent) => void): void;
  /** Every prefix block held now, for a router that just (re)connected; absent when the engine cannot tell. */
  heldBlocks?(): readonly number[];
  /** Sessions whose KV the engine keeps, with at most `idleLimit` idle ones listed; absent when it cannot tell (an upstream server). */
  residentSessions?(idleLimit: number): SessionResidency;
  /** Drops the KV of these sessions where nothing runs on them; returns cells freed. */
  evictSessions?(sessionIds: readonly string[]): Promise<number>;
  close(): Promise<void>;
}

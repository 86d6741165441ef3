import type { ChatMessage, FinishReason, ModelInfo, SamplingParams } from "../../../gen/infermesh/common/v1/common.js";

/** One generation as an engine receives it. Exactly one of messages or prompt is set. */
export interface GenerationInput {
  readonly requestId: string;
  readonly model: string;
  readonly messages: readonly ChatMessage[];
  readonly prompt: string | undefined;
  readonly sampling: SamplingParams;
}

/** What an engine emits for one generation, in order: started, deltas, finished. */
export type GenerationEvent =
  | {
      readonly kind: "started";
      readonly promptTokens: number;
      readonly cachedTokens: number;
      /** The output bound in force (the request's, or the engine's default). */
      readonly maxTokens: number;
    }
  | { readonly kind: "delta"; readonly text: string; readonly tokenCount: number }
  | {
      readonly kind: "finished";
      readonly finishReason: FinishReason;
      readonly promptTokens: number;
      readonly completionTokens: number;
      readonly cachedTokens: number;
    };

/** Current load of an engine, for the router's and memory-guard's reports. */
export interface EngineLoad {
  readonly runningRequests: number;
  readonly waitingRequests: number;
  readonly kvUsedTokens: number;
  readonly kvTotalTokens: number;
  readonly idleSequences: number;
  readonly tokensPerSecond: number;
}

/** A failure the worker maps to a gRPC status; `kind` is a closed set. */
export class EngineError extends Error {
  override readonly name = "EngineError";
  constructor(
    readonly kind: "invalid_argument" | "not_found" | "unavailable" | "internal",
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
  tokenize(model: string, text: string): Promise<number[]>;
  load(): EngineLoad;
  /** Frees KV held by idle sequences until about `tokens` cells are free; returns cells freed. */
  evictIdle(tokens: number): Promise<number>;
  /** Registers a callback for load changes (a request started or ended). */
  onLoadChange(listener: () => void): void;
  close(): Promise<void>;
}

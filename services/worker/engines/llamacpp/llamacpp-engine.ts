import { basename } from "node:path";
import { pushable } from "it-pushable";
import {
  getLlama,
  LlamaChat,
  LlamaCompletion,
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatWrapper,
  type Llama,
  type LlamaContext,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { FinishReason, type ChatMessage, type ModelInfo, type SamplingParams } from "../../../../gen/infermesh/common/v1/common.js";
import { EngineError, type Engine, type EngineLoad, type GenerationEvent, type GenerationInput } from "../engine.js";
import { SequencePool, type PooledSequence } from "./sequence-pool.js";
import { ThroughputMeter } from "./throughput-meter.js";

/** How to run a GGUF model with llama.cpp. */
export interface LlamaCppOptions {
  readonly modelPath: string;
  /** The id clients use; defaults to the file name without .gguf. */
  readonly modelId: string | undefined;
  readonly description: string;
  /** "cpu" forces the CPU; "auto" takes CUDA, Vulkan or Metal when present. */
  readonly gpu: "auto" | "cpu";
  /** CPU threads for decoding; 1 is fastest on a 2-core machine (measured). */
  readonly threads: number;
  /** KV cells per sequence (the context window of one request). */
  readonly contextTokens: number;
  /** Sequences decoded together (the batch). */
  readonly sequences: number;
  /** Tokens evaluated per batch step. */
  readonly batchSize: number;
  /** Output bound when the request sets none. */
  readonly defaultMaxTokens: number;
}

/** llama.cpp in-process through node-llama-cpp: one context, many sequences. */
export class LlamaCppEngine implements Engine {
  readonly kind = "llamacpp";
  private readonly listeners = new Set<() => void>();
  private readonly throughput = new ThroughputMeter(5_000);

  private constructor(
    private readonly llama: Llama,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly pool: SequencePool,
    private readonly modelInfo: ModelInfo,
    private readonly options: LlamaCppOptions,
    /** Resolved once: resolving parses the model's Jinja template, which is slow. */
    private readonly chatWrapper: ChatWrapper,
  ) {}

  /** Loads the model and creates the context; throws with the reason when it cannot. */
  static async load(options: LlamaCppOptions): Promise<LlamaCppEngine> {
    const llama = await getLlama({ gpu: options.gpu === "cpu" ? false : "auto", logLevel: "error" as never });
    const model = await llama.loadModel({ modelPath: options.modelPath });
    const context = await model.createContext({
      contextSize: options.contextTokens,
      sequences: options.sequences,
      batchSize: options.batchSize,
      threads: options.threads,
    });
    const sequences: PooledSequence[] = [];
    for (let index = 0; index < options.sequences; index += 1) {
      sequences.push({ sequence: context.getSequence(), busy: false, lastUsedAtMs: 0 });
    }
    const modelInfo: ModelInfo = {
      id: options.modelId ?? basename(options.modelPath).replace(/\.gguf$/i, ""),
      engine: "llamacpp",
      contextTokens: context.contextSize,
      description: options.description,
    };
    const chatWrapper = resolveChatWrapper(model);
    return new LlamaCppEngine(llama, model, context, new SequencePool(sequences), modelInfo, options, chatWrapper);
  }

  get device(): string {
    return this.llama.gpu === false ? "cpu" : `${this.llama.gpu}:0`;
  }

  get maxSequences(): number {
    return this.options.sequences;
  }

  models(): ModelInfo[] {
    return [this.modelInfo];
  }

  onLoadChange(listener: () => void): void {
    this.listeners.add(listener);
  }

  load(): EngineLoad {
    let kvUsedTokens = 0;
    for (const pooled of this.pool.sequences) kvUsedTokens += pooled.sequence.contextTokens.length;
    return {
      runningRequests: this.pool.busyCount,
      waitingRequests: this.pool.waitingCount,
      kvUsedTokens,
      kvTotalTokens: this.context.contextSize * this.options.sequences,
      idleSequences: this.pool.idle().filter((pooled) => pooled.sequence.contextTokens.length > 0).length,
      tokensPerSecond: this.throughput.perSecond(),
    };
  }

  async tokenize(model: string, text: string): Promise<number[]> {
    this.checkModel(model);
    return this.model.tokenize(text, false) as number[];
  }

  async evictIdle(tokens: number): Promise<number> {
    let freed = 0;
    for (const pooled of this.pool.idle()) {
      if (freed >= tokens) break;
      const held = pooled.sequence.contextTokens.length;
      if (held === 0) continue;
      await pooled.sequence.clearHistory();
      freed += held;
    }
    this.changed();
    return freed;
  }

  async *generate(input: GenerationInput, signal: AbortSignal): AsyncIterable<GenerationEvent> {
    this.checkModel(input.model);
    const history = input.prompt === undefined ? toChatHistory(input.messages) : undefined;
    const pooled = await this.pool.acquire(signal);
    this.changed();
    // Stops decoding when the caller cancels or stops reading; the sequence goes back
    // to the pool only after decoding on it has ended.
    const decoding = new AbortController();
    const onAbort = () => decoding.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    let chat: LlamaChat | undefined;
    let run: Promise<unknown> | undefined;
    try {
      const sequence = pooled.sequence;
      // Each request starts from an empty sequence; KV prefix reuse across requests
      // belongs to the worker-engine work, so cached_tokens is truthfully 0 here.
      await sequence.clearHistory();
      chat = history ? new LlamaChat({ contextSequence: sequence, chatWrapper: this.chatWrapper, autoDisposeSequence: false }) : undefined;
      const promptTokens = chat && history
        ? this.countChatPromptTokens(chat, history)
        : this.model.tokenize(input.prompt!, false).length;
      const contextTokens = sequence.contextSize;
      if (promptTokens >= contextTokens) {
        throw new EngineError(
          "invalid_argument",
          `the prompt has ${promptTokens} tokens but the model's context holds ${contextTokens}`,
        );
      }
      const maxTokens = Math.min(input.sampling.maxTokens ?? this.options.defaultMaxTokens, contextTokens - promptTokens);
      yield { kind: "started", promptTokens, cachedTokens: 0, maxTokens };

      const events = pushable<GenerationEvent>({ objectMode: true });
      let completionTokens = 0;
      let pendingTokens = 0;
      const onToken = (tokens: Token[]) => {
        completionTokens += tokens.length;
        pendingTokens += tokens.length;
        this.throughput.add(tokens.length);
      };
      const onTextChunk = (text: string) => {
        if (text === "" && pendingTokens === 0) return;
        events.push({ kind: "delta", text, tokenCount: pendingTokens });
        pendingTokens = 0;
      };
      const options = {
        ...samplingOptions(input.sampling),
        maxTokens,
        signal: decoding.signal,
        stopOnAbortSignal: true,
        onToken,
        onTextChunk,
      };
      const stopped = chat && history
        ? chat.generateResponse(history, options).then((result) => result.metadata.stopReason)
        : new LlamaCompletion({ contextSequence: sequence })
            .generateCompletionWithMeta(input.prompt!, options)
            .then((result) => result.metadata.stopReason);
      run = stopped.then(
        (stopReason) => {
          events.push({
            kind: "finished",
            finishReason: finishReasonOf(stopReason, signal),
            promptTokens,
            completionTokens,
            cachedTokens: 0,
          });
          events.end();
        },
        (error: unknown) => events.end(error instanceof Error ? error : new Error(String(error))),
      );
      yield* events;
    } finally {
      signal.removeEventListener("abort", onAbort);
      decoding.abort();
      await run;
      chat?.dispose({ disposeSequence: false });
      this.pool.release(pooled);
      this.changed();
    }
  }

  async close(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
    await this.llama.dispose();
  }

  private countChatPromptTokens(chat: LlamaChat, history: ChatHistoryItem[]): number {
    const { contextText } = chat.chatWrapper.generateContextState({ chatHistory: [...history, { type: "model", response: [] }] });
    return contextText.tokenize(this.model.tokenizer).length;
  }

  private checkModel(model: string): void {
    if (model !== this.modelInfo.id) throw new EngineError("not_found", `model "${model}" is not loaded on this worker`);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}

function toChatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  if (messages.length === 0) throw new EngineError("invalid_argument", "messages must not be empty");
  return messages.map((message, index): ChatHistoryItem => {
    switch (message.role) {
      case "system":
      case "developer":
        return { type: "system", text: message.content };
      case "user":
        return { type: "user", text: message.content };
      case "assistant":
        return { type: "model", response: [message.content] };
      default:
        throw new EngineError("invalid_argument", `messages[${index}].role "${message.role}" is not system, developer, user or assistant`);
    }
  });
}

function samplingOptions(sampling: SamplingParams) {
  const penalties = sampling.presencePenalty !== undefined || sampling.frequencyPenalty !== undefined;
  return {
    // OpenAI's default: sample at temperature 1 unless the request says otherwise.
    temperature: sampling.temperature ?? 1,
    topP: sampling.topP,
    topK: sampling.topK,
    minP: sampling.minP,
    seed: sampling.seed,
    customStopTriggers: sampling.stop.length > 0 ? sampling.stop : undefined,
    repeatPenalty: penalties
      ? { presencePenalty: sampling.presencePenalty, frequencyPenalty: sampling.frequencyPenalty }
      : undefined,
  };
}

function finishReasonOf(stopReason: string, signal: AbortSignal): FinishReason {
  if (signal.aborted || stopReason === "abort") return FinishReason.FINISH_REASON_CANCELLED;
  if (stopReason === "maxTokens") return FinishReason.FINISH_REASON_LENGTH;
  return FinishReason.FINISH_REASON_STOP;
}

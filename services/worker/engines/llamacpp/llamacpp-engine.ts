import { randomBytes } from "node:crypto";
import { basename } from "node:path";
import { pushable } from "it-pushable";
import {
  getLlama,
  HarmonyChatWrapper,
  LlamaChat,
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatModelFunctions,
  type ChatWrapper,
  type Llama,
  type LlamaChatResponseChunk,
  type LlamaChatResponseFunctionCallParamsChunk,
  type LlamaContext,
  type LlamaEmbeddingContext,
  type LlamaGrammar,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import {
  FinishReason,
  ReasoningEffort,
  type ChatMessage,
  type ModelInfo,
  type ResponseFormat,
  type SamplingParams,
} from "../../../../gen/infermesh/common/v1/common.js";
import type { IndexedToolCall } from "../../../../gen/infermesh/worker/v1/worker_service.js";
import { blockHashes, canonicalPrompt, HeldBlocks } from "../../../common/prefix-hash.js";
import {
  EngineError,
  generationUrgency,
  type Embeddings,
  type Engine,
  type EngineLoad,
  type GenerationEvent,
  type GenerationInput,
  type KvBlockEvent,
  type SessionResidency,
} from "../engine.js";
import { queuedSequenceIds, sequenceOrderedStrategy } from "./batch-strategy.js";
import { forcingFunctionCall, requiresToolCall, toChatHistory, toFunctions } from "./chat-history.js";
import { SequencePool, type PooledSequence } from "./sequence-pool.js";
import { maxEmbeddingTokens } from "../../../common/request-limits.js";
import { checkTokenizable } from "./text-bounds.js";
import { ThroughputMeter } from "./throughput-meter.js";
import { decodeTokens, type DecodeStop } from "./token-decoder.js";

/** How to run a GGUF model with llama.cpp. */
export interface LlamaCppOptions {
  readonly modelPath: string;
  /** The id clients use; defaults to the file name without .gguf. */
  readonly modelId: string | undefined;
  readonly description: string;
  /** "cpu" forces the CPU; "auto" takes CUDA, Vulkan or Metal when present; or one backend by name. */
  readonly gpu: "auto" | "cpu" | "cuda" | "vulkan" | "metal";
  /** The GPU this worker owns, by index; undefined lets the backend choose (all visible GPUs). */
  readonly gpuIndex: number | undefined;
  /** CPU threads for decoding; 1 is fastest on a 2-core machine (measured). */
  readonly threads: number;
  /** KV cells per sequence (the context window of one request). */
  readonly contextTokens: number;
  /** Sequences decoded together (the batch). */
  readonly sequences: number;
  /** Tokens evaluated per batch step. */
  readonly batchSize: number;
  /** Flash attention (default on). */
  readonly flashAttention?: boolean;
  /** Called as the weights load with the share loaded so far, in (0, 1]. */
  readonly onLoadProgress?: (fraction: number) => void;
}

/** How one generation runs, settled before it takes a sequence. */
interface GenerationPlan {
  readonly promptTokens: Token[];
  /** The canonical prompt text whose blocks the sequence will hold. */
  readonly canonical: string;
  /** Chat through LlamaChat (templates, reasoning, tools, grammar) or token by token (raw prompts, logprobs). */
  readonly chat: { history: ChatHistoryItem[]; wrapper: ChatWrapper; functions: ChatModelFunctions | undefined } | undefined;
  readonly grammar: LlamaGrammar | undefined;
  readonly maxTokens: number;
}

/**
 * llama.cpp in-process through node-llama-cpp: one context whose sequences decode
 * together (continuous batching), each keeping the KV of what it last ran so a prompt
 * that shares a prefix with it evaluates only the rest.
 */
export class LlamaCppEngine implements Engine {
  readonly kind = "llamacpp";
  private readonly listeners = new Set<() => void>();
  private readonly kvListeners = new Set<(event: KvBlockEvent) => void>();
  private readonly throughput = new ThroughputMeter(5_000);
  private readonly held = new HeldBlocks<PooledSequence>();
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  private readonly harmonyWrappers = new Map<ReasoningEffort, ChatWrapper>();
  private embedding: Promise<LlamaEmbeddingContext> | undefined;
  private embedQueue: Promise<unknown> = Promise.resolve();
  private prefixCacheQueries = 0;
  private prefixCacheHits = 0;

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
    if (options.gpuIndex !== undefined) {
      // One worker per GPU: the backends read these when they start.
      process.env.CUDA_VISIBLE_DEVICES = String(options.gpuIndex);
      process.env.GGML_VK_VISIBLE_DEVICES = String(options.gpuIndex);
    }
    const llama = await getLlama({ gpu: options.gpu === "cpu" ? false : options.gpu, logLevel: "error" as never });
    const model = await llama.loadModel({ modelPath: options.modelPath, onLoadProgress: options.onLoadProgress });
    let pool: SequencePool | undefined;
    let created: LlamaContext | undefined;
    const context = await model.createContext({
      contextSize: options.contextTokens,
      sequences: options.sequences,
      batchSize: options.batchSize,
      threads: options.threads,
      flashAttention: options.flashAttention ?? true,
      // Sliding-window layers (gpt-oss) keep their whole KV, so a cached prefix stays
      // reusable past the window instead of being evaluated again.
      swaFullCache: true,
      // Whole steps in sequence order, so llama.cpp decodes each step in one pass.
      batching: {
        itemPrioritizationStrategy: sequenceOrderedStrategy(
          queuedSequenceIds(() => created),
          () => pool?.busyCount ?? 0,
        ),
      },
    });
    created = context;
    const sequences: PooledSequence[] = [];
    for (let index = 0; index < options.sequences; index += 1) {
      sequences.push({ sequence: context.getSequence(), busy: false, lastUsedAtMs: 0, promptTokens: 0, sessionId: "" });
    }
    pool = new SequencePool(sequences);
    const modelInfo: ModelInfo = {
      id: options.modelId ?? basename(options.modelPath).replace(/\.gguf$/i, ""),
      engine: "llamacpp",
      contextTokens: context.contextSize,
      description: options.description,
    };
    return new LlamaCppEngine(llama, model, context, pool, modelInfo, options, resolveChatWrapper(model));
  }

  get device(): string {
    return this.llama.gpu === false ? "cpu" : `${this.llama.gpu}:${this.options.gpuIndex ?? 0}`;
  }

  get maxSequences(): number {
    return this.options.sequences;
  }

  /** The GGUF's token list (each token's text as the tokenizer stores it). */
  private get vocabulary(): readonly string[] {
    const metadata = this.model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: readonly string[] } } };
    return metadata.tokenizer?.ggml?.tokens ?? [];
  }

  /** Tokens in the model's vocabulary. */
  private get vocabularySize(): number {
    return this.vocabulary.length;
  }

  private textLimit: number | undefined;

  /**
   * The most characters a text may have and still fit the context: the context in
   * tokens times the longest token's text. Longer text is refused before the tokenizer
   * spends time on it.
   */
  private get maxTextChars(): number {
    if (this.textLimit === undefined) {
      let longest = 1;
      for (const token of this.vocabulary) longest = Math.max(longest, token.length);
      this.textLimit = this.context.contextSize * longest;
    }
    return this.textLimit;
  }

  /** Refuses text llama.cpp's tokenizer cannot safely take (see text-bounds.ts). */
  private checkText(field: string, text: string): void {
    checkTokenizable(field, text, this.maxTextChars);
  }

  /** The chat wrapper the model's template resolved to, e.g. "Harmony" for gpt-oss. */
  get chatWrapperName(): string {
    return this.chatWrapper.wrapperName;
  }

  models(): ModelInfo[] {
    return [this.modelInfo];
  }

  onLoadChange(listener: () => void): void {
    this.listeners.add(listener);
  }

  onKvEvent(listener: (event: KvBlockEvent) => void): void {
    this.kvListeners.add(listener);
  }

  heldBlocks(): readonly number[] {
    return this.held.all();
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
      prefixCacheQueries: this.prefixCacheQueries,
      prefixCacheHits: this.prefixCacheHits,
    };
  }

  async tokenize(model: string, text: string, messages?: readonly ChatMessage[]): Promise<number[]> {
    this.checkModel(model);
    if (messages && messages.length > 0) {
      this.checkMessages(messages);
      return this.renderChat(toChatHistory(messages), this.chatWrapper, undefined);
    }
    this.checkText("text", text);
    return this.model.tokenize(text, false);
  }

  async detokenize(model: string, tokens: readonly number[]): Promise<string> {
    this.checkModel(model);
    const vocabulary = this.vocabularySize;
    for (const [index, token] of tokens.entries()) {
      if (!Number.isInteger(token) || token < 0 || token >= vocabulary) {
        throw new EngineError("invalid_argument", `tokens[${index}] = ${token} is outside the vocabulary`);
      }
    }
    return this.model.detokenize(tokens as Token[], true);
  }

  async embed(model: string, inputs: readonly string[], signal: AbortSignal): Promise<Embeddings> {
    this.checkModel(model);
    if (inputs.length === 0) throw new EngineError("invalid_argument", "inputs must not be empty");
    // Every input is tokenized and bounded before the request waits for the context.
    let promptTokens = 0;
    const tokenized = inputs.map((input, index) => {
      this.checkText(`input[${index}]`, input);
      const tokens = this.model.tokenize(input, false);
      if (tokens.length > this.options.contextTokens) {
        throw new EngineError(
          "invalid_argument",
          `input[${index}] has ${tokens.length} tokens but the model's context holds ${this.options.contextTokens}`,
        );
      }
      promptTokens += tokens.length;
      if (promptTokens > maxEmbeddingTokens) {
        throw new EngineError(
          "invalid_argument",
          `input: the inputs hold more than ${maxEmbeddingTokens} tokens in all (past input[${index}])`,
        );
      }
      return tokens;
    });
    // One embedding context, created on first use and used by one request at a time.
    const run = this.embedQueue.then(async () => {
      this.embedding ??= this.model.createEmbeddingContext({ contextSize: this.options.contextTokens, threads: this.options.threads });
      const context = await this.embedding;
      const vectors: number[][] = [];
      for (const tokens of tokenized) {
        signal.throwIfAborted();
        const { vector } = await context.getEmbeddingFor(tokens);
        const norm = Math.hypot(...vector) || 1;
        vectors.push(vector.map((value) => value / norm));
      }
      return { vectors, promptTokens };
    });
    this.embedQueue = run.catch(() => undefined);
    return run;
  }

  async evictIdle(tokens: number): Promise<number> {
    let freed = 0;
    for (const pooled of this.pool.idle()) {
      if (freed >= tokens) break;
      const held = pooled.sequence.contextTokens.length;
      if (held === 0) continue;
      await pooled.sequence.clearHistory();
      pooled.promptTokens = 0;
      pooled.sessionId = "";
      this.emitKv(this.held.set(pooled, []));
      freed += held;
    }
    this.changed();
    return freed;
  }

  /** One session per sequence: the sessions of sequences holding KV, and the idle ones least recently used first. */
  residentSessions(idleLimit: number): SessionResidency {
    const now = performance.now();
    const holding = (pooled: PooledSequence) => pooled.sessionId !== "" && pooled.sequence.contextTokens.length > 0;
    return {
      count: this.pool.sequences.filter(holding).length,
      idle: this.pool
        .idle()
        .filter(holding)
        .slice(0, idleLimit)
        .map((pooled) => ({
          sessionId: pooled.sessionId,
          kvTokens: pooled.sequence.contextTokens.length,
          idleMs: now - pooled.lastUsedAtMs,
        })),
    };
  }

  async evictSessions(sessionIds: readonly string[]): Promise<number> {
    const evict = new Set(sessionIds);
    let freed = 0;
    for (const pooled of this.pool.idle()) {
      if (!evict.has(pooled.sessionId)) continue;
      freed += pooled.sequence.contextTokens.length;
      await pooled.sequence.clearHistory();
      pooled.promptTokens = 0;
      pooled.sessionId = "";
      this.emitKv(this.held.set(pooled, []));
    }
    this.changed();
    return freed;
  }

  async *generate(input: GenerationInput, signal: AbortSignal): AsyncIterable<GenerationEvent> {
    const plan = await this.plan(input);
    const pooled = await this.pool.acquire((candidate) => reuseScore(candidate, plan.promptTokens), signal, generationUrgency(input));
    pooled.sessionId = input.sessionId ?? "";
    this.changed();
    // Stops decoding when the caller cancels or stops reading; the sequence goes back
    // to the pool only after decoding on it has ended.
    const decoding = new AbortController();
    const onAbort = () => decoding.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    let run: Promise<unknown> | undefined;
    let output = "";
    let finishReason: FinishReason | undefined;
    try {
      const sequence = pooled.sequence;
      // At least the last prompt token is evaluated again: its logits start the answer.
      const promptCount = plan.promptTokens.length;
      const cachedTokens = Math.min(sequence.compareContextTokens(plan.promptTokens).firstDifferentIndex, promptCount - 1);
      pooled.promptTokens = promptCount;
      this.prefixCacheQueries += promptCount;
      this.prefixCacheHits += cachedTokens;
      this.emitKv(this.held.set(pooled, blockHashes(plan.canonical)));
      yield { kind: "started", promptTokens: promptCount, cachedTokens, maxTokens: plan.maxTokens };

      const events = pushable<GenerationEvent>({ objectMode: true });
      let completionTokens = 0;
      let reasoningTokens = 0;
      let pendingTokens = 0;
      const countTokens = (count: number) => {
        completionTokens += count;
        pendingTokens += count;
        this.throughput.add(count);
      };
      const finish = (stop: DecodeStop | "toolCalls", toolCalls: IndexedToolCall[] = []) => {
        if (toolCalls.length > 0 || pendingTokens > 0) {
          events.push({ kind: "delta", text: "", tokenCount: pendingTokens, toolCalls: toolCalls.length > 0 ? toolCalls : undefined });
        }
        finishReason =
          signal.aborted || stop === "abort"
            ? FinishReason.FINISH_REASON_CANCELLED
            : stop === "toolCalls"
              ? FinishReason.FINISH_REASON_TOOL_CALLS
              : stop === "length"
                ? FinishReason.FINISH_REASON_LENGTH
                : FinishReason.FINISH_REASON_STOP;
        events.push({ kind: "finished", finishReason, promptTokens: promptCount, completionTokens, cachedTokens, reasoningTokens });
        events.end();
      };
      const fail = (error: unknown) => events.end(error instanceof Error ? error : new Error(String(error)));

      if (plan.chat) {
        const chat = new LlamaChat({ contextSequence: sequence, chatWrapper: plan.chat.wrapper, autoDisposeSequence: false });
        // The sequence's meter counts every sampled token, the ones the chat wrapper holds
        // back (harmony's trigger detection) included, so deltas and usage count from it.
        const outputBefore = sequence.tokenMeter.usedOutputTokens;
        const syncTokens = () => {
          const sampled = sequence.tokenMeter.usedOutputTokens - outputBefore;
          if (sampled > completionTokens) countTokens(sampled - completionTokens);
        };
        const onResponseChunk = (chunk: LlamaChatResponseChunk) => {
          syncTokens();
          const reasoning = chunk.type === "segment";
          if (reasoning) reasoningTokens += chunk.tokens.length;
          else output += chunk.text;
          events.push(
            reasoning
              ? { kind: "delta", text: "", reasoningText: chunk.text, tokenCount: pendingTokens }
              : { kind: "delta", text: chunk.text, tokenCount: pendingTokens },
          );
          pendingTokens = 0;
        };
        // A call streams as it is generated: its first fragment carries a fresh id and the
        // function's name, later ones more of its arguments. A call cut short by
        // max_tokens is thus still in the answer, as far as it got.
        const callIds = new Map<number, string>();
        const startCall = (index: number, name: string, argumentsText: string) => {
          const id = `call_${randomBytes(12).toString("base64url")}`;
          callIds.set(index, id);
          return { index, call: { id, name, arguments: argumentsText } };
        };
        const onFunctionCallParamsChunk = (chunk: LlamaChatResponseFunctionCallParamsChunk) => {
          syncTokens();
          const fragment = callIds.has(chunk.callIndex)
            ? { index: chunk.callIndex, call: { id: "", name: "", arguments: chunk.paramsChunk } }
            : startCall(chunk.callIndex, chunk.functionName, chunk.paramsChunk);
          if (fragment.call.id === "" && fragment.call.arguments === "") return;
          events.push({ kind: "delta", text: "", tokenCount: pendingTokens, toolCalls: [fragment] });
          pendingTokens = 0;
        };
        const temperature = samplingTemperature(input.sampling.temperature);
        run = chat
          .generateResponse(plan.chat.history, {
            ...chatSampling(input.sampling, temperature),
            maxTokens: plan.maxTokens,
            signal: decoding.signal,
            stopOnAbortSignal: true,
            onToken: syncTokens,
            onResponseChunk,
            ...(plan.chat.functions ? { functions: plan.chat.functions, onFunctionCallParamsChunk } : { grammar: plan.grammar }),
          })
          .then((result) => {
            // Calls whose arguments never streamed (none, or all at once) are sent whole.
            const calls = (result.functionCalls ?? []).flatMap((call, index) =>
              callIds.has(index) ? [] : [startCall(index, call.functionName, JSON.stringify(call.params ?? {}))],
            );
            syncTokens();
            const stopReason = result.metadata.stopReason;
            finish(
              stopReason === "functionCalls"
                ? "toolCalls"
                : stopReason === "maxTokens"
                  ? "length"
                  : stopReason === "abort"
                    ? "abort"
                    : "stop",
              calls,
            );
          }, fail)
          .finally(() => chat.dispose({ disposeSequence: false }));
      } else {
        run = decodeTokens({
          model: this.model,
          sequence,
          promptTokens: plan.promptTokens,
          keep: cachedTokens,
          sampling: input.sampling,
          temperature: samplingTemperature(input.sampling.temperature),
          maxTokens: plan.maxTokens,
          grammar: plan.grammar,
          signal: decoding.signal,
          emit: (delta) => {
            countTokens(delta.tokenCount);
            output += delta.text;
            events.push({ kind: "delta", text: delta.text, tokenCount: pendingTokens, logprobs: delta.logprobs });
            pendingTokens = 0;
          },
        }).then(finish, fail);
      }
      yield* events;
    } finally {
      signal.removeEventListener("abort", onAbort);
      decoding.abort();
      await run;
      // The sequence now also holds the answer: a follow-up turn that sends it back reuses it.
      if (finishReason === FinishReason.FINISH_REASON_STOP && input.prompt === undefined) {
        this.emitKv(
          this.held.set(pooled, blockHashes(canonicalPrompt({ messages: [...input.messages, { role: "assistant", content: output }] }))),
        );
      }
      this.pool.release(pooled);
      this.changed();
    }
  }

  async close(): Promise<void> {
    await (await this.embedding)?.dispose();
    await this.context.dispose();
    await this.model.dispose();
    await this.llama.dispose();
  }

  /** Validates the request and settles how it runs; every refusal comes before decoding. */
  private async plan(input: GenerationInput): Promise<GenerationPlan> {
    this.checkModel(input.model);
    const sampling = input.sampling;
    if (sampling.topLogprobs > 20) throw new EngineError("invalid_argument", "top_logprobs must be between 0 and 20");
    const grammar = await this.grammarFor(sampling.responseFormat);
    let chat: GenerationPlan["chat"];
    let promptTokens: Token[];
    if (input.prompt !== undefined) {
      if (input.tools.length > 0) throw new EngineError("invalid_argument", "tools need messages, not a raw prompt");
      this.checkText("prompt", input.prompt);
      promptTokens = this.model.tokenize(input.prompt, false);
      if (promptTokens.length === 0) throw new EngineError("invalid_argument", "the prompt must not be empty");
    } else {
      this.checkMessages(input.messages);
      const history = toChatHistory(input.messages);
      const functions = toFunctions(input.tools, input.toolChoice);
      const wrapper =
        functions && requiresToolCall(input.toolChoice)
          ? forcingFunctionCall(this.wrapperFor(input.reasoningEffort))
          : this.wrapperFor(input.reasoningEffort);
      if (functions && grammar)
        throw new EngineError("invalid_argument", "response_format cannot be combined with tools on the llama.cpp engine");
      if (functions && sampling.logprobs)
        throw new EngineError("invalid_argument", "logprobs cannot be combined with tools on the llama.cpp engine");
      promptTokens = this.renderChat(history, wrapper, functions);
      // LlamaChat cannot report log probabilities: such chats are decoded token by token.
      chat = sampling.logprobs ? undefined : { history, wrapper, functions };
    }
    const contextTokens = this.context.contextSize;
    if (promptTokens.length >= contextTokens) {
      throw new EngineError(
        "invalid_argument",
        `the prompt has ${promptTokens.length} tokens but the model's context holds ${contextTokens}`,
      );
    }
    return {
      promptTokens,
      canonical: canonicalPrompt(input),
      chat,
      grammar,
      // The gateway always sends the request's bound; a caller that sends none gets the context's room.
      maxTokens: Math.min(sampling.maxTokens ?? Number.POSITIVE_INFINITY, contextTokens - promptTokens.length),
    };
  }

  private messageTokens: number | undefined;

  /** Tokens the chat template adds for each message, however short (harmony: 4). */
  private get templateTokensPerMessage(): number {
    if (this.messageTokens === undefined) {
      const empty = (count: number) =>
        this.renderChat(
          Array.from({ length: count }, () => ({ type: "user" as const, text: "" })),
          this.chatWrapper,
          undefined,
        ).length;
      this.messageTokens = Math.max(1, empty(2) - empty(1));
    }
    return this.messageTokens;
  }

  /**
   * Every text of a conversation a client sent, checked before it is rendered, and the
   * number of messages against what the context can hold: llama.cpp tokenizes each
   * piece of the template on its own, at about a millisecond a message here, so a
   * conversation that cannot fit is refused before that cost.
   */
  private checkMessages(messages: readonly ChatMessage[]): void {
    const contextTokens = this.context.contextSize;
    const leastTokens = messages.length * this.templateTokensPerMessage;
    if (leastTokens >= contextTokens) {
      throw new EngineError(
        "invalid_argument",
        `messages: ${messages.length} messages take at least ${leastTokens} tokens of the chat template, but the model's context holds ${contextTokens}`,
      );
    }
    for (const [index, message] of messages.entries()) {
      this.checkText(`messages[${index}].content`, message.content);
      this.checkText(`messages[${index}].reasoning_content`, message.reasoningContent);
      for (const [call, toolCall] of message.toolCalls.entries())
        this.checkText(`messages[${index}].tool_calls[${call}].function.arguments`, toolCall.arguments);
    }
  }

  private renderChat(history: ChatHistoryItem[], wrapper: ChatWrapper, functions: ChatModelFunctions | undefined): Token[] {
    const { contextText } = wrapper.generateContextState({
      chatHistory: [...history, { type: "model", response: [] }],
      availableFunctions: functions,
    });
    // Tool definitions and the template's own text join the messages here.
    for (const value of contextText.values)
      if (typeof value === "string") this.checkText("the conversation as the chat template renders it", value);
    return contextText.tokenize(this.model.tokenizer);
  }

  /** gpt-oss takes the reasoning effort in its harmony system message; other templates have none. */
  private wrapperFor(effort: ReasoningEffort): ChatWrapper {
    if (!(this.chatWrapper instanceof HarmonyChatWrapper) || effort === ReasoningEffort.REASONING_EFFORT_UNSPECIFIED)
      return this.chatWrapper;
    let wrapper = this.harmonyWrappers.get(effort);
    if (!wrapper) {
      const level =
        effort === ReasoningEffort.REASONING_EFFORT_LOW ? "low" : effort === ReasoningEffort.REASONING_EFFORT_HIGH ? "high" : "medium";
      wrapper = new HarmonyChatWrapper({ reasoningEffort: level });
      this.harmonyWrappers.set(effort, wrapper);
    }
    return wrapper;
  }

  /** A grammar for JSON output, compiled once per schema. */
  private grammarFor(format: ResponseFormat | undefined): Promise<LlamaGrammar | undefined> {
    const kind = format?.format;
    if (!kind) return Promise.resolve(undefined);
    const key = kind.$case === "jsonObject" ? "" : kind.value.schemaJson;
    let grammar = this.grammars.get(key);
    if (!grammar) {
      if (kind.$case === "jsonObject") {
        grammar = this.llama.getGrammarFor("json");
      } else {
        let schema: unknown;
        try {
          schema = JSON.parse(kind.value.schemaJson);
        } catch {
          return Promise.reject(new EngineError("invalid_argument", "response_format.json_schema.schema is not valid JSON"));
        }
        grammar = this.llama.createGrammarForJsonSchema(schema as never);
      }
      grammar = grammar.catch((error: unknown) => {
        this.grammars.delete(key);
        throw new EngineError("invalid_argument", `response_format: ${error instanceof Error ? error.message : String(error)}`);
      });
      if (this.grammars.size >= 64) this.grammars.delete(this.grammars.keys().next().value!);
      this.grammars.set(key, grammar);
    }
    return grammar;
  }

  private checkModel(model: string): void {
    if (model !== this.modelInfo.id) throw new EngineError("not_found", `model "${model}" is not loaded on this worker`);
  }

  private emitKv(event: { stored: number[]; evicted: number[] }): void {
    if (event.stored.length === 0 && event.evicted.length === 0) return;
    for (const listener of this.kvListeners) listener(event);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}

/**
 * What taking `candidate` for `promptTokens` is worth: the prefix it saves evaluating,
 * less the part of the candidate's last prompt it would throw away (its answer is not
 * counted: only that conversation's next turn could use it). A sequence that shares only
 * template boilerplate (gpt-oss's 100-token harmony system message) with the prompt thus
 * keeps a long cached prompt for a better match.
 */
function reuseScore(candidate: PooledSequence, promptTokens: Token[]): number {
  const reused = candidate.sequence.compareContextTokens(promptTokens).firstDifferentIndex;
  return reused - Math.max(0, candidate.promptTokens - reused);
}

/** Below this a temperature is greedy decoding. */
const greedyBelow = 1e-3;

/**
 * The temperature llama.cpp samples at: OpenAI's default of 1, and a tiny one (3e-44 is
 * a valid float) as 0, greedy. Dividing logits by a tiny temperature overflows them to
 * infinities, the sampler then draws a token a JSON grammar forbids, and llama.cpp's
 * grammar fails on it in a promise node-llama-cpp leaves unhandled: the worker died.
 */
export const samplingTemperature = (temperature: number | undefined) =>
  temperature === undefined ? 1 : temperature < greedyBelow ? 0 : temperature;

function chatSampling(sampling: SamplingParams, temperature: number) {
  const penalties =
    sampling.presencePenalty !== undefined || sampling.frequencyPenalty !== undefined || sampling.repetitionPenalty !== undefined;
  return {
    // OpenAI's default: sample at temperature 1 unless the request says otherwise.
    temperature,
    topP: sampling.topP,
    topK: sampling.topK,
    minP: sampling.minP,
    seed: sampling.seed,
    customStopTriggers: sampling.stop.length > 0 ? sampling.stop : undefined,
    repeatPenalty: penalties
      ? { penalty: sampling.repetitionPenalty, presencePenalty: sampling.presencePenalty, frequencyPenalty: sampling.frequencyPenalty }
      : undefined,
  };
}

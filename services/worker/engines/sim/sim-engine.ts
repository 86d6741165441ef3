import { ReasoningEffort, type ChatMessage, type ModelInfo, type ToolCall } from "../../../../gen/infermesh/common/v1/common.js";
import { systemClock, type Clock } from "../../../common/clock.js";
import { blockHashes, canonicalPrompt } from "../../../common/prefix-hash.js";
import { Random } from "../../../common/random.js";
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
import { StopStrings } from "../stop-strings.js";
import { Scheduler, type SequencePlan } from "./scheduler.js";
import { simOptionsSchema, type SimOptions, type SimOptionsInput } from "./sim-options.js";
import { jsonObjectAnswer, OutputWriter, parseSchema, placeholderFor, type AnswerShape } from "./synthetic-output.js";
import { countTokens, detokenize, hashText, tokenize } from "./synthetic-text.js";

/**
 * The named GPU simulator: serves one model id with a timing model of a real GPU
 * (prefill rate, decode step time by batch, KV capacity, prefix-block LRU, continuous
 * batching) and synthetic output. For load tests, release gates and fleet benchmarks.
 */
export class SimEngine implements Engine {
  readonly kind = "sim";
  private readonly listeners = new Set<() => void>();
  private readonly kvListeners = new Set<(event: KvBlockEvent) => void>();
  private readonly scheduler: Scheduler;
  private readonly modelInfo: ModelInfo;
  /** Draws which generations fail (failureRatio). */
  private readonly faults: Random;

  constructor(
    readonly options: SimOptions,
    clock: Clock = systemClock,
  ) {
    this.scheduler = new Scheduler(options, clock, {
      loadChanged: () => {
        for (const listener of this.listeners) listener();
      },
      kvEvent: (event) => {
        for (const listener of this.kvListeners) listener(event);
      },
    });
    this.modelInfo = { id: options.modelId, engine: "sim", contextTokens: options.contextTokens, description: options.description };
    this.faults = new Random(options.seed ^ 0x5eed_fa11);
  }

  /** Parses `input` (a preset and overrides) and builds the engine; throws the schema's error when invalid. */
  static create(input: SimOptionsInput, clock: Clock = systemClock): SimEngine {
    return new SimEngine(simOptionsSchema.parse(input), clock);
  }

  get device(): string {
    return this.options.device;
  }

  get maxSequences(): number {
    return this.options.maxBatch;
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

  load(): EngineLoad {
    return this.scheduler.load();
  }

  async *generate(input: GenerationInput, signal: AbortSignal): AsyncIterable<GenerationEvent> {
    const plan = this.plan(input);
    signal.throwIfAborted();
    if (this.options.failureRatio > 0 && this.faults.next() < this.options.failureRatio) {
      throw new EngineError("internal", "the simulator failed this generation on purpose (failureRatio)");
    }
    const sequence = this.scheduler.submit(plan);
    const onAbort = () => this.scheduler.cancel(sequence, signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      yield* sequence.events;
    } finally {
      signal.removeEventListener("abort", onAbort);
      // A caller that stops reading early cancels too.
      this.scheduler.cancel(sequence, undefined);
    }
  }

  /** Synthetic ids: 4 characters a token (see synthetic-text.ts); `messages` as the canonical prompt. */
  async tokenize(model: string, text: string, messages?: readonly ChatMessage[]): Promise<number[]> {
    this.checkModel(model);
    return tokenize(messages && messages.length > 0 ? canonicalPrompt({ messages }) : text);
  }

  async detokenize(model: string, tokens: readonly number[]): Promise<string> {
    this.checkModel(model);
    return detokenize(tokens);
  }

  /** Synthetic embeddings: a unit vector seeded by the text, the same for the same text; no meaning. */
  async embed(model: string, inputs: readonly string[], signal: AbortSignal): Promise<Embeddings> {
    this.checkModel(model);
    if (inputs.length === 0) throw new EngineError("invalid_argument", "inputs must not be empty");
    const vectors: number[][] = [];
    let promptTokens = 0;
    for (const [index, input] of inputs.entries()) {
      signal.throwIfAborted();
      const tokens = countTokens(input);
      if (tokens > this.options.contextTokens) {
        throw new EngineError(
          "invalid_argument",
          `input[${index}] has ${tokens} tokens but the model's context holds ${this.options.contextTokens}`,
        );
      }
      promptTokens += tokens;
      const random = new Random(hashText(input, this.options.seed));
      const vector = Array.from({ length: this.options.embeddingDimensions }, () => gaussian(random));
      const norm = Math.hypot(...vector) || 1;
      vectors.push(vector.map((value) => value / norm));
    }
    return { vectors, promptTokens };
  }

  residentSessions(idleLimit: number): SessionResidency {
    return this.scheduler.residentSessions(idleLimit);
  }

  async evictSessions(sessionIds: readonly string[]): Promise<number> {
    return this.scheduler.evictSessions(sessionIds);
  }

  async evictIdle(tokens: number): Promise<number> {
    return this.scheduler.evictIdle(tokens);
  }

  async close(): Promise<void> {
    this.scheduler.close();
  }

  /** Validates the request and settles its output; every refusal comes before any event. */
  private plan(input: GenerationInput): SequencePlan {
    this.checkModel(input.model);
    const sampling = input.sampling;
    if (sampling.topLogprobs < 0 || sampling.topLogprobs > 20)
      throw new EngineError("invalid_argument", "top_logprobs must be between 0 and 20");
    if (sampling.maxTokens !== undefined && sampling.maxTokens < 1)
      throw new EngineError("invalid_argument", "max_tokens must be at least 1");
    if (input.prompt === undefined && input.messages.length === 0) throw new EngineError("invalid_argument", "messages must not be empty");
    if (input.prompt !== undefined && input.tools.length > 0)
      throw new EngineError("invalid_argument", "tools need messages, not a raw prompt");
    const canonical = canonicalPrompt(input);
    if (canonical.length === 0) throw new EngineError("invalid_argument", "the prompt must not be empty");
    // Tool definitions are part of what the model reads.
    let promptTokens = countTokens(canonical);
    for (const tool of input.tools) promptTokens += countTokens(tool.name + tool.description + tool.parametersJson);
    const contextTokens = this.options.contextTokens;
    if (promptTokens >= contextTokens) {
      throw new EngineError("invalid_argument", `the prompt has ${promptTokens} tokens but the model's context holds ${contextTokens}`);
    }
    // The same prompt and seed (the request's, or the engine's when it sets none) give the same output.
    const seedText = sampling.seed === undefined ? `engine:${this.options.seed}` : `request:${sampling.seed}`;
    const random = new Random(hashText(canonical, hashText(seedText)));
    const answer = this.answerShape(input, random);
    const messages = input.messages;
    return {
      promptTokens,
      promptHashes: blockHashes(canonical),
      continuation:
        input.prompt === undefined
          ? (text) => blockHashes(canonicalPrompt({ messages: [...messages, { role: "assistant", content: text }] }))
          : undefined,
      // The gateway always sends the request's bound; a caller that sends none gets the context's room.
      maxTokens: Math.min(sampling.maxTokens ?? Number.POSITIVE_INFINITY, contextTokens - promptTokens),
      sessionId: input.sessionId ?? "",
      urgency: generationUrgency(input),
      writer: new OutputWriter(
        random,
        this.reasoningTokens(input.reasoningEffort),
        answer,
        sampling.logprobs ? sampling.topLogprobs : undefined,
      ),
      stops: new StopStrings(sampling.stop),
      logprobs: sampling.logprobs,
    };
  }

  /**
   * Tool calls when tools are offered and not refused, unless a tool has just answered
   * and no call is required (a model then answers from the result, so a tool loop
   * ends); JSON when asked for; words otherwise.
   */
  private answerShape(input: GenerationInput, random: Random): AnswerShape {
    const choice = input.toolChoice;
    const toolAnswered = input.messages.at(-1)?.role === "tool" && (choice === "" || choice === "auto");
    const schemas = input.tools.map((tool, index) => parseSchema(tool.parametersJson, `tools[${index}].parameters`));
    if (input.tools.length === 0 && choice !== "" && choice !== "auto" && choice !== "none") {
      throw new EngineError("invalid_argument", `tool_choice "${choice}" needs tools`);
    }
    if (input.tools.length > 0 && choice !== "none" && !toolAnswered) {
      let index = random.below(input.tools.length);
      if (choice !== "" && choice !== "auto" && choice !== "required") {
        index = input.tools.findIndex((tool) => tool.name === choice);
        if (index < 0) throw new EngineError("invalid_argument", `tool_choice names "${choice}", which is not among the tools`);
      }
      const args = placeholderFor(schemas[index]);
      const call: ToolCall = {
        id: `call_${random.below(0x1_0000_0000).toString(16).padStart(8, "0")}${random.below(0x1_0000_0000).toString(16).padStart(8, "0")}`,
        name: input.tools[index]!.name,
        arguments: JSON.stringify(typeof args === "object" && args !== null && !Array.isArray(args) ? args : {}),
      };
      return { kind: "tools", calls: [call] };
    }
    const naturalTokens = random.between(this.options.answerTokensMin, this.options.answerTokensMax);
    const format = input.sampling.responseFormat?.format;
    if (format?.$case === "jsonObject") return { kind: "json", text: jsonObjectAnswer(random, Math.max(1, naturalTokens - 6)) };
    if (format?.$case === "jsonSchema") {
      return {
        kind: "json",
        text: JSON.stringify(placeholderFor(parseSchema(format.value.schemaJson, "response_format.json_schema.schema"))),
      };
    }
    return { kind: "text", naturalTokens };
  }

  private reasoningTokens(effort: ReasoningEffort): number {
    switch (effort) {
      case ReasoningEffort.REASONING_EFFORT_LOW:
        return this.options.reasoningTokensLow;
      case ReasoningEffort.REASONING_EFFORT_MEDIUM:
        return this.options.reasoningTokensMedium;
      case ReasoningEffort.REASONING_EFFORT_HIGH:
        return this.options.reasoningTokensHigh;
      default:
        return 0;
    }
  }

  private checkModel(model: string): void {
    if (model !== this.modelInfo.id) throw new EngineError("not_found", `model "${model}" is not served by this worker`);
  }
}

/** A standard normal draw (Box–Muller), so seeded vectors point in uniformly spread directions. */
function gaussian(random: Random): number {
  return Math.sqrt(-2 * Math.log(1 - random.next())) * Math.cos(2 * Math.PI * random.next());
}

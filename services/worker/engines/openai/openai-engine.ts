import type { ChatMessage, ModelInfo } from "../../../../gen/infermesh/common/v1/common.js";
import { systemClock, type Clock } from "../../../common/clock.js";
import type { Logger } from "../../../common/logger.js";
import {
  EngineError,
  type Embeddings,
  type Engine,
  type EngineLoad,
  type GenerationEvent,
  type GenerationInput,
  type KvBlockEvent,
} from "../engine.js";
import { LoadPoller } from "./load-poller.js";
import { openAiEngineOptionsSchema, type OpenAiEngineOptions, type OpenAiEngineOptionsInput } from "./options.js";
import { buildUpstreamRequest, toOpenAiMessage } from "./request-body.js";
import { sseData } from "./sse.js";
import { StreamMapper, UpstreamStreamError } from "./stream-mapper.js";
import { httpError, transportError, UpstreamClient } from "./upstream-client.js";

/** What the engine needs besides its options; tests pass their own clock. */
export interface OpenAiEngineDeps {
  readonly logger?: Logger;
  readonly clock?: Clock;
}

/**
 * Forwards generations to an OpenAI-compatible engine server (vLLM, SGLang,
 * trtllm-serve, llama-server) and reports its load from the server's Prometheus metrics.
 */
export class OpenAiEngine implements Engine {
  readonly kind = "openai";
  /** The accelerator belongs to the upstream; this process only holds HTTP streams. */
  readonly device = "upstream";
  private readonly listeners = new Set<() => void>();
  private readonly open = new Set<AbortController>();
  private readonly poller: LoadPoller;
  private inFlight = 0;
  private streamedTokens = 0;
  private modelInfos: ModelInfo[];

  private constructor(
    private readonly options: OpenAiEngineOptions,
    private readonly client: UpstreamClient,
    models: readonly { readonly id: string; readonly contextTokens: number }[],
    deps: OpenAiEngineDeps,
  ) {
    this.modelInfos = models.map((model) => ({
      ...model,
      engine: "openai",
      description: "served by an OpenAI-compatible upstream engine server",
    }));
    const metricsUrls =
      options.metricsUrl !== ""
        ? [options.metricsUrl]
        : options.flavor === "trtllm"
          ? [client.url("/prometheus/metrics")]
          : [client.url("/metrics"), client.url("/prometheus/metrics")];
    this.poller = new LoadPoller({
      client,
      candidateUrls: metricsUrls,
      flavor: options.flavor,
      intervalMs: options.pollIntervalMs,
      clock: deps.clock ?? systemClock,
      streamedTokens: () => this.streamedTokens,
      onChange: () => this.changed(),
      logger: deps.logger,
    });
  }

  /**
   * Checks that the upstream answers, finds its models (the configured ids, or all that
   * GET /v1/models lists), reads its metrics once and starts polling them. Throws an
   * EngineError that says what is wrong when the upstream cannot be used.
   */
  static async start(input: OpenAiEngineOptionsInput, deps: OpenAiEngineDeps = {}): Promise<OpenAiEngine> {
    const parsed = openAiEngineOptionsSchema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new EngineError("invalid_argument", `openai engine option ${issue.path.join(".") || "(root)"}: ${issue.message}`);
    }
    const options = parsed.data;
    const client = new UpstreamClient(options);
    const models = await discoverModels(client, options, deps.logger);
    const engine = new OpenAiEngine(options, client, models, deps);
    await engine.poller.start();
    const flavor = engine.poller.current().flavor;
    if (flavor !== undefined) {
      engine.modelInfos = engine.modelInfos.map((model) => ({ ...model, description: `served by an upstream ${flavor} server` }));
    }
    deps.logger?.info(
      { upstream: displayUrl(options.baseUrl), models: models.map((model) => model.id), flavor: flavor ?? "unknown" },
      "openai engine ready",
    );
    return engine;
  }

  get maxSequences(): number {
    return this.options.maxSequences;
  }

  models(): ModelInfo[] {
    return this.modelInfos.map((model) => ({ ...model }));
  }

  onLoadChange(listener: () => void): void {
    this.listeners.add(listener);
  }

  /** Never called: an upstream server publishes no KV block events over HTTP. */
  onKvEvent(_listener: (event: KvBlockEvent) => void): void {}

  /** The upstream's figures from its last metrics poll; this engine's open requests are a floor for running. */
  load(): EngineLoad {
    const { figures, tokensPerSecond } = this.poller.current();
    return {
      runningRequests: Math.max(Math.round(figures?.runningRequests ?? 0), this.inFlight),
      waitingRequests: Math.round(figures?.waitingRequests ?? 0),
      kvUsedTokens: Math.round(figures?.kvUsedTokens ?? 0),
      kvTotalTokens: Math.round(figures?.kvTotalTokens ?? 0),
      idleSequences: 0,
      tokensPerSecond,
      prefixCacheQueries: Math.round(figures?.prefixCacheQueries ?? 0),
      prefixCacheHits: Math.round(figures?.prefixCacheHits ?? 0),
    };
  }

  /** The upstream manages its own KV cache; nothing here can free it. */
  async evictIdle(_tokens: number): Promise<number> {
    return 0;
  }

  async *generate(input: GenerationInput, signal: AbortSignal): AsyncIterable<GenerationEvent> {
    const model = this.modelInfo(input.model);
    const flavor = this.poller.current().flavor;
    const request = buildUpstreamRequest(input, {
      contextTokens: model.contextTokens,
      continuousUsage: flavor === "vllm" || flavor === "sglang",
      priorityOrder: this.options.priorityOrder,
    });
    const upstream = new AbortController();
    const onAbort = () => upstream.abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();
    this.open.add(upstream);
    this.inFlight += 1;
    this.changed();
    const mapper = new StreamMapper({ estimatedPromptTokens: request.estimatedPromptTokens, maxTokens: request.maxTokens });
    try {
      const response = await this.client.stream(request.path, request.body, upstream.signal);
      for await (const data of sseData(response.body!)) {
        let chunk: unknown;
        try {
          chunk = JSON.parse(data);
        } catch {
          throw new UpstreamStreamError("the upstream sent an event that is not JSON", undefined);
        }
        for (const event of mapper.push(chunk)) {
          if (event.kind === "delta") this.streamedTokens += event.tokenCount;
          yield event;
        }
      }
      yield* mapper.end();
    } catch (error) {
      if (signal.aborted) {
        if (!mapper.hasStarted) throw signal.reason ?? error;
        yield mapper.cancelled();
        return;
      }
      throw this.failure(error, mapper.hasStarted);
    } finally {
      signal.removeEventListener("abort", onAbort);
      upstream.abort();
      this.open.delete(upstream);
      this.inFlight -= 1;
      this.changed();
    }
  }

  /**
   * vLLM's POST /tokenize ({prompt} or {messages}, answering {tokens}), which SGLang
   * copies; llama-server's takes {content}. Upstreams without one are unimplemented.
   */
  async tokenize(model: string, text: string, messages?: readonly ChatMessage[]): Promise<number[]> {
    this.modelInfo(model);
    const flavor = this.poller.current().flavor;
    let body: Record<string, unknown>;
    if (messages !== undefined && messages.length > 0) {
      body = { model, messages: messages.map(toOpenAiMessage), add_generation_prompt: true };
    } else if (flavor === "llamacpp") {
      body = { content: text, add_special: false };
    } else if (flavor === "vllm" || flavor === "sglang") {
      body = { model, prompt: text, add_special_tokens: false };
    } else {
      body = { model, prompt: text, content: text, add_special_tokens: false, add_special: false };
    }
    const answer = await this.optionalEndpoint("/tokenize", body);
    const tokens = (answer as { tokens?: unknown }).tokens;
    if (!Array.isArray(tokens) || !tokens.every((token) => Number.isInteger(token))) {
      throw new EngineError("internal", "the upstream's /tokenize answer has no token list");
    }
    return tokens as number[];
  }

  /** vLLM's POST /detokenize ({tokens} → {prompt}); llama-server answers {content}, SGLang {text}. */
  async detokenize(model: string, tokens: readonly number[]): Promise<string> {
    this.modelInfo(model);
    const answer = (await this.optionalEndpoint("/detokenize", { model, tokens })) as Record<string, unknown>;
    const text = answer.prompt ?? answer.content ?? answer.text;
    if (typeof text !== "string") throw new EngineError("internal", "the upstream's /detokenize answer has no text");
    return text;
  }

  /** POST /v1/embeddings; vectors are L2-normalised here whatever the upstream did. */
  async embed(model: string, inputs: readonly string[], signal: AbortSignal): Promise<Embeddings> {
    this.modelInfo(model);
    const answer = (await this.optionalEndpoint("/v1/embeddings", { model, input: inputs, encoding_format: "float" }, signal)) as {
      data?: { index?: number; embedding?: unknown }[];
      usage?: { prompt_tokens?: number };
    };
    const data = [...(answer.data ?? [])].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
    if (data.length !== inputs.length || !data.every((entry) => Array.isArray(entry.embedding))) {
      throw new EngineError("internal", `the upstream answered ${data.length} embeddings for ${inputs.length} inputs`);
    }
    return { vectors: data.map((entry) => normalise(entry.embedding as number[])), promptTokens: answer.usage?.prompt_tokens ?? 0 };
  }

  async close(): Promise<void> {
    this.poller.stop();
    for (const request of this.open) request.abort(new Error("the engine is closing"));
  }

  /** Calls an endpoint that not every upstream has: a missing route (404, 405, 501) is unimplemented. */
  private async optionalEndpoint(path: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    try {
      return await this.client.json(path, body, signal);
    } catch (error) {
      if (error instanceof EngineError && (error.kind === "not_found" || error.kind === "unimplemented")) {
        throw new EngineError("unimplemented", `the upstream does not serve ${path} (${error.message})`);
      }
      throw error;
    }
  }

  /** Before `started`: an EngineError the worker maps to a status. After: a plain Error for the stream's error event. */
  private failure(error: unknown, started: boolean): Error {
    if (!started) {
      if (error instanceof EngineError) return error;
      if (error instanceof UpstreamStreamError) {
        return error.status === undefined
          ? new EngineError("internal", `upstream error: ${this.client.redact(error.message)}`)
          : httpError({ status: error.status, message: this.client.redact(error.message) });
      }
      return transportError(error);
    }
    if (error instanceof UpstreamStreamError) return new Error(`upstream error: ${this.client.redact(error.message)}`);
    if (error instanceof EngineError) return new Error(error.message);
    return new Error(`the upstream stream broke off: ${transportError(error).message}`);
  }

  private modelInfo(id: string): ModelInfo {
    const model = this.modelInfos.find((candidate) => candidate.id === id);
    if (model === undefined) throw new EngineError("not_found", `model "${id}" is not served by this worker`);
    return model;
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}

/** The configured ids, or every model GET /v1/models lists; context from its max_model_len where listed. */
async function discoverModels(
  client: UpstreamClient,
  options: OpenAiEngineOptions,
  logger: Logger | undefined,
): Promise<{ id: string; contextTokens: number }[]> {
  const where = displayUrl(options.baseUrl);
  let listed: Map<string, number | undefined> | undefined;
  try {
    listed = modelList(await client.json("/v1/models", undefined));
  } catch (error) {
    if (!(error instanceof EngineError)) throw error;
    const fatal = error.kind === "unavailable" || error.kind === "unauthenticated" || error.kind === "permission_denied";
    if (fatal || options.modelIds.length === 0) {
      throw new EngineError(error.kind, `cannot use the upstream engine server at ${where}: GET /v1/models failed: ${error.message}`);
    }
    logger?.warn({ upstream: where, problem: error.message }, "the upstream lists no models; serving the configured model ids");
  }
  const ids = options.modelIds.length > 0 ? options.modelIds : [...(listed?.keys() ?? [])];
  if (ids.length === 0) throw new EngineError("not_found", `the upstream engine server at ${where} lists no models`);
  for (const id of ids) {
    if (listed !== undefined && !listed.has(id))
      logger?.warn({ upstream: where, model: id }, "a configured model id is not in the upstream's model list");
  }
  return ids.map((id) => ({ id, contextTokens: listed?.get(id) ?? options.contextTokens }));
}

/** Model ids and context windows from an OpenAI model list (vLLM and SGLang add max_model_len). */
function modelList(body: unknown): Map<string, number | undefined> {
  const data = (body as { data?: unknown } | undefined)?.data;
  if (!Array.isArray(data)) throw new EngineError("internal", "the upstream's /v1/models answer has no data list");
  const models = new Map<string, number | undefined>();
  for (const entry of data as Record<string, unknown>[]) {
    if (typeof entry?.id !== "string") continue;
    const context = entry.max_model_len ?? entry.context_length;
    models.set(entry.id, typeof context === "number" && context > 0 ? context : undefined);
  }
  return models;
}

/** The base URL without any user:password part, for logs and start-up errors. */
function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = "";
    parsed.password = "";
    return parsed.toString().replace(/\/$/, "");
  } catch {
    return "(invalid URL)";
  }
}

function normalise(vector: number[]): number[] {
  let sum = 0;
  for (const value of vector) sum += value * value;
  const norm = Math.sqrt(sum);
  return norm === 0 ? vector : vector.map((value) => value / norm);
}

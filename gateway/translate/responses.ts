/**
 * OpenAI's Responses API ↔ infermesh: input items to the chat the worker runs, and a
 * generation's events to output items — whole, or as the Responses stream's events.
 */
import { randomBytes } from "node:crypto";
import type { Status } from "nice-grpc";
import { ChatMessage, FinishReason, type ToolCall, type Usage } from "../../gen/infermesh/common/v1/common.js";
import type { Delta } from "../../gen/infermesh/worker/v1/worker_service.js";
import { ApiError, toApiError } from "../errors.js";
import type { ItemReference, ResponsesBody, ResponsesInputItem } from "../http/responses/schema.js";
import type { GenerationEvent } from "../mesh/generation.js";
import type { GenerationValues } from "../validation/generation.js";
import { logprobsContent, samplingParams, toReasoningEffort, toResponseFormat } from "./openai.js";

/** An id in OpenAI's style: a prefix and 48 hex digits. */
export const newItemId = (prefix: "resp" | "msg" | "rs" | "fc" | "fco") => `${prefix}_${randomBytes(24).toString("hex")}`;

/** The text of an item's content: a string, or its text parts joined. */
const textOf = (content: string | readonly { readonly text: string }[] | null | undefined) =>
  content == null ? "" : typeof content === "string" ? content : content.map((part) => part.text).join("");

/** An input or output item as stored and listed: OpenAI's JSON form, with its id. */
export type ResponseItem = Record<string, unknown> & { readonly type: string; readonly id: string };

/**
 * The request's input as OpenAI lists it back (GET …/input_items): a string becomes one
 * user message; every item gets an id and a status; message text in input_text parts.
 */
export function inputItemsOf(
  input: ResponsesBody["input"],
  referenced: (reference: ItemReference, index: number) => ResponseItem,
): ResponseItem[] {
  if (typeof input === "string") {
    return [{ type: "message", id: newItemId("msg"), role: "user", status: "completed", content: [{ type: "input_text", text: input }] }];
  }
  return input.map((item, index): ResponseItem => {
    switch (item.type) {
      case "item_reference":
        return referenced(item, index);
      case undefined:
      case "message": {
        const partType = item.role === "assistant" ? "output_text" : "input_text";
        const content =
          typeof item.content === "string"
            ? [{ type: partType, text: item.content }]
            : item.content.map((part) => ({ type: partType, text: part.text }));
        return {
          type: "message",
          id: item.id ?? newItemId("msg"),
          role: item.role,
          status: "completed",
          content: partType === "output_text" ? content.map((part) => ({ ...part, annotations: [] })) : content,
        };
      }
      case "function_call":
        return { ...item, id: item.id ?? newItemId("fc"), status: "completed" };
      case "function_call_output":
        return { ...item, id: item.id ?? newItemId("fco"), output: textOf(item.output), status: "completed" };
      default:
        return { ...item, id: item.id ?? newItemId("rs") };
    }
  });
}

/**
 * A conversation's items as the chat the worker runs. A reasoning item's text goes
 * with the assistant turn it preceded (gpt-oss's analysis before a tool call); the
 * function calls of one turn are one assistant message's tool calls.
 */
export function chatMessagesOf(items: readonly (ResponseItem | ResponsesInputItem)[]): ChatMessage[] {
  const messages: ChatMessage[] = [];
  let reasoning = "";
  /** The assistant message of the turn being read, which its function calls join. */
  let turn: ChatMessage | undefined;
  for (const raw of items) {
    const item = raw as ResponsesInputItem;
    switch (item.type) {
      case undefined:
      case "message":
        if (item.role === "assistant") {
          turn = ChatMessage.create({ role: "assistant", content: textOf(item.content), reasoningContent: reasoning });
          messages.push(turn);
        } else {
          turn = undefined;
          messages.push(ChatMessage.create({ role: item.role, content: textOf(item.content) }));
        }
        reasoning = "";
        break;
      case "function_call": {
        const call: ToolCall = { id: item.call_id, name: item.name, arguments: item.arguments };
        if (turn === undefined) {
          turn = ChatMessage.create({ role: "assistant", reasoningContent: reasoning });
          messages.push(turn);
        }
        turn.toolCalls.push(call);
        reasoning = "";
        break;
      }
      case "function_call_output":
        turn = undefined;
        messages.push(ChatMessage.create({ role: "tool", toolCallId: item.call_id, content: textOf(item.output) }));
        break;
      case "reasoning":
        reasoning += textOf(item.content && item.content.length > 0 ? item.content : item.summary);
        break;
    }
  }
  return messages;
}

/**
 * The Responses API's name for a chat completion parameter. The chat's messages are
 * its whole input (instructions and stored conversation included), so a problem of one
 * message is the input's.
 */
export const responsesParam = (param: string) =>
  param
    .replace(/^max_tokens$/, "max_output_tokens")
    .replace(/^response_format\.json_schema\./, "text.format.")
    .replace(/^reasoning_effort$/, "reasoning.effort")
    .replace(/^tools\[(\d+)\]\.function\./, "tools[$1].")
    .replace(/^messages(\[.*)?$/, "input");

/** Whether the response should carry token logprobs (OpenAI's `include`). */
export const wantsLogprobs = (body: ResponsesBody) => body.include?.includes("message.output_text.logprobs") === true;

/**
 * A Responses request as the values the shared validation checks and the worker runs:
 * `instructions` first (never carried over from a previous response, as OpenAI does),
 * then the stored conversation, then this input.
 */
export function responsesGenerationOf(
  body: ResponsesBody,
  conversation: readonly object[],
  input: readonly ResponseItem[],
): GenerationValues {
  const messages = chatMessagesOf([...(conversation as ResponseItem[]), ...input]);
  if (body.instructions) messages.unshift(ChatMessage.create({ role: "system", content: body.instructions }));
  const format = body.text?.format;
  const choice = body.tool_choice;
  return {
    messages,
    prompt: undefined,
    sampling: samplingParams(
      { temperature: body.temperature, top_p: body.top_p },
      // Validation checks the range under this API's name (max_output_tokens).
      body.max_output_tokens ?? undefined,
      {
        logprobs: wantsLogprobs(body),
        topLogprobs: wantsLogprobs(body) ? (body.top_logprobs ?? 0) : 0,
        responseFormat: toResponseFormat(
          format == null || format.type !== "json_schema"
            ? format
            : {
                type: "json_schema",
                json_schema: { name: format.name, schema: format.schema, description: format.description ?? undefined },
              },
        ),
      },
    ),
    tools: (body.tools ?? []).map((tool) => ({
      name: tool.name,
      description: tool.description ?? "",
      parametersJson: tool.parameters == null ? "" : JSON.stringify(tool.parameters),
    })),
    toolChoice: choice == null ? "" : typeof choice === "string" ? choice : choice.name,
    reasoningEffort: toReasoningEffort(body.reasoning?.effort),
  };
}

/** The fields of a response object that echo the request. */
export function responseEcho(body: ResponsesBody) {
  return {
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: body.previous_response_id ?? null,
    reasoning: { effort: body.reasoning?.effort ?? null, summary: body.reasoning?.summary ?? null },
    store: body.store ?? true,
    temperature: body.temperature ?? 1,
    text: { format: body.text?.format ?? { type: "text" } },
    tool_choice: body.tool_choice ?? "auto",
    tools: (body.tools ?? []).map((tool) => ({
      type: "function",
      name: tool.name,
      description: tool.description ?? null,
      parameters: tool.parameters ?? null,
      strict: tool.strict ?? null,
    })),
    top_p: body.top_p ?? 1,
    top_logprobs: body.top_logprobs ?? 0,
    truncation: "disabled",
    user: body.user ?? null,
    metadata: body.metadata ?? {},
    background: false,
    service_tier: "default",
  };
}

/** A response object's usage. */
export function responseUsage(usage: Usage | undefined) {
  const input = usage?.promptTokens ?? 0;
  const output = usage?.completionTokens ?? 0;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: usage?.cachedTokens ?? 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: usage?.reasoningTokens ?? 0 },
    total_tokens: input + output,
  };
}

/** Receives the stream's events, each with its type; the builder numbers them. */
export type ResponseEventSink = (type: string, event: Record<string, unknown>) => void;

type OpenItem =
  | { readonly kind: "reasoning"; readonly index: number; readonly item: ResponseItem & { content: { type: string; text: string }[] } }
  | {
      readonly kind: "message";
      readonly index: number;
      readonly item: ResponseItem & { content: { type: string; text: string; annotations: []; logprobs?: unknown[] }[] };
    }
  | {
      readonly kind: "function_call";
      readonly index: number;
      readonly callIndex: number;
      readonly item: ResponseItem & { arguments: string };
    };

/** A response's final state. */
export type ResponseStatus = "in_progress" | "completed" | "incomplete" | "failed";

/**
 * Builds a response from a generation's events: the output items, and, for a stream,
 * OpenAI's event sequence — response.created and .in_progress; per item
 * output_item.added, content_part.added, the text, reasoning or argument deltas, their
 * .done events, content_part.done and output_item.done; then response.completed
 * (response.incomplete at max_output_tokens, response.failed on an error). Events are
 * numbered from 0 by `sequence_number`.
 */
export class ResponseBuilder {
  private readonly output: ResponseItem[] = [];
  private open: OpenItem | undefined;
  private sequence = 0;
  private status: ResponseStatus = "in_progress";
  private usage: Usage | undefined;
  private incompleteReason: string | undefined;
  private error: { code: string; message: string } | undefined;
  /** Function calls seen, counting those `parallel_tool_calls: false` leaves out. */
  private calls = 0;

  constructor(
    private readonly head: { readonly id: string; readonly created_at: number; model: string } & ReturnType<typeof responseEcho>,
    private readonly options: { readonly logprobs: boolean; readonly parallelToolCalls: boolean },
    private readonly sink: ResponseEventSink | undefined,
  ) {}

  /** The response object as it stands. */
  response() {
    const { id, created_at, model, ...echo } = this.head;
    return {
      id,
      object: "response" as const,
      created_at,
      status: this.status,
      error: this.error ?? null,
      incomplete_details: this.incompleteReason ? { reason: this.incompleteReason } : null,
      model,
      output: this.output,
      usage: this.usage ? responseUsage(this.usage) : null,
      ...echo,
    };
  }

  /** Sends response.created and response.in_progress. */
  start(): void {
    this.emit("response.created", { response: this.response() });
    this.emit("response.in_progress", { response: this.response() });
  }

  /** Applies one generation event. A terminal error event fails the response. */
  add(event: GenerationEvent): void {
    switch (event.$case) {
      case "started":
        if (event.value.model) this.head.model = event.value.model;
        break;
      case "delta":
        this.addDelta(event.value);
        break;
      case "finished":
        this.finish(event.value.finishReason, event.value.usage);
        break;
      case "error":
        this.fail(new ApiError(event.value.statusCode as Status, event.value.message));
        break;
      case "choiceEnd":
        break;
    }
  }

  private addDelta(delta: Delta): void {
    if (delta.reasoningText !== "") {
      const open = this.openItem("reasoning");
      open.item.content[0]!.text += delta.reasoningText;
      this.emit("response.reasoning_text.delta", this.at(open, { content_index: 0, delta: delta.reasoningText }));
    }
    if (delta.text !== "" || (this.options.logprobs && delta.logprobs.length > 0)) {
      const open = this.openItem("message");
      const part = open.item.content[0]!;
      part.text += delta.text;
      const logprobs = this.options.logprobs ? logprobsContent(delta.logprobs) : undefined;
      if (logprobs) part.logprobs!.push(...logprobs);
      this.emit("response.output_text.delta", this.at(open, { content_index: 0, delta: delta.text, logprobs: logprobs ?? [] }));
    }
    for (const { index, call } of delta.toolCalls) {
      if (!call) continue;
      const open = this.open;
      if (call.id === "" && open?.kind === "function_call" && open.callIndex === index) {
        open.item.arguments += call.arguments;
        if (call.arguments !== "") this.emit("response.function_call_arguments.delta", this.at(open, { delta: call.arguments }));
        continue;
      }
      this.calls += 1;
      // `parallel_tool_calls: false`: the model's first call is the answer.
      if (!this.options.parallelToolCalls && this.calls > 1) continue;
      const opened = this.openFunctionCall(index, call);
      if (call.arguments !== "") this.emit("response.function_call_arguments.delta", this.at(opened, { delta: call.arguments }));
    }
  }

  private finish(reason: FinishReason, usage: Usage | undefined): void {
    this.close();
    this.usage = usage;
    if (reason === FinishReason.FINISH_REASON_LENGTH) {
      this.status = "incomplete";
      this.incompleteReason = "max_output_tokens";
      this.emit("response.incomplete", { response: this.response() });
    } else {
      this.status = "completed";
      this.emit("response.completed", { response: this.response() });
    }
  }

  /** Fails the response: its open item is closed, and response.failed carries the error. */
  fail(error: unknown): void {
    if (this.status !== "in_progress") return;
    this.close();
    const apiError = toApiError(error);
    this.status = "failed";
    this.error = { code: apiError.details.code ?? "server_error", message: apiError.message };
    this.emit("response.failed", { response: this.response() });
  }

  /** Whether the response reached its end (completed, incomplete or failed). */
  get ended(): boolean {
    return this.status !== "in_progress";
  }

  private openItem<Kind extends "reasoning" | "message">(kind: Kind): Extract<OpenItem, { kind: Kind }> {
    if (this.open?.kind === kind) return this.open as Extract<OpenItem, { kind: Kind }>;
    this.close();
    const index = this.output.length;
    const open: OpenItem =
      kind === "reasoning"
        ? { kind, index, item: { type: "reasoning", id: newItemId("rs"), summary: [], content: [], status: "in_progress" } }
        : {
            kind: "message",
            index,
            item: { type: "message", id: newItemId("msg"), status: "in_progress", role: "assistant", content: [] },
          };
    this.output.push(open.item);
    this.open = open;
    this.emit("response.output_item.added", { output_index: index, item: structuredClone(open.item) });
    const part =
      open.kind === "reasoning"
        ? { type: "reasoning_text", text: "" }
        : { type: "output_text", text: "", annotations: [] as [], ...(this.options.logprobs ? { logprobs: [] } : {}) };
    (open.item.content as object[]).push(part);
    this.emit("response.content_part.added", this.at(open, { content_index: 0, part: structuredClone(part) }));
    return open as Extract<OpenItem, { kind: Kind }>;
  }

  private openFunctionCall(callIndex: number, call: ToolCall): OpenItem {
    this.close();
    const index = this.output.length;
    const item = {
      type: "function_call",
      id: newItemId("fc"),
      call_id: call.id,
      name: call.name,
      arguments: call.arguments,
      status: "in_progress",
    };
    const open: OpenItem = { kind: "function_call", index, callIndex, item };
    this.output.push(item);
    this.open = open;
    this.emit("response.output_item.added", { output_index: index, item: { ...item, arguments: "" } });
    return open;
  }

  /** Ends the open item with its .done events. */
  private close(): void {
    const open = this.open;
    if (!open) return;
    this.open = undefined;
    open.item.status = "completed";
    switch (open.kind) {
      case "reasoning": {
        const part = open.item.content[0]!;
        this.emit("response.reasoning_text.done", this.at(open, { content_index: 0, text: part.text }));
        this.emit("response.content_part.done", this.at(open, { content_index: 0, part: structuredClone(part) }));
        break;
      }
      case "message": {
        const part = open.item.content[0]!;
        this.emit("response.output_text.done", this.at(open, { content_index: 0, text: part.text, logprobs: part.logprobs ?? [] }));
        this.emit("response.content_part.done", this.at(open, { content_index: 0, part: structuredClone(part) }));
        break;
      }
      case "function_call":
        this.emit("response.function_call_arguments.done", this.at(open, { name: open.item.name, arguments: open.item.arguments }));
        break;
    }
    this.emit("response.output_item.done", { output_index: open.index, item: structuredClone(open.item) });
  }

  private at(open: OpenItem, fields: Record<string, unknown>) {
    return { item_id: open.item.id, output_index: open.index, ...fields };
  }

  private emit(type: string, event: Record<string, unknown>): void {
    if (!this.sink) return;
    this.sink(type, { type, sequence_number: this.sequence, ...event });
    this.sequence += 1;
  }
}

import { z } from "zod";
import { jsonSchemaFormatFields } from "../chat-completions/schema.js";

/**
 * The body of POST /v1/responses (OpenAI's Responses API), as JSON types. As for chat,
 * unknown fields are ignored and known ones of the wrong type are refused; values are
 * the shared validation's (gateway/validation/generation.ts). Features the served
 * models or this gateway cannot give are refused by name rather than ignored: built-in
 * tools, background mode, stored prompts and conversations, non-text input.
 */

/** Most items one request's input may hold (the messages of a chat are bounded alike). */
export const maxInputItems = 2_048;

/** OpenAI's bounds on `metadata`: 16 pairs, keys of 64 characters, values of 512. */
export const metadataBounds = { pairs: 16, keyChars: 64, valueChars: 512 } as const;

/** A refusal of something valid in OpenAI's API that infermesh does not serve. */
const unsupported = (what: string) => ({ error: `${what} is not supported` });

/**
 * The result of parsing with `schema`, its issues reported at the current path: for a
 * choice among shapes made by hand, whose precise issues a zod union would hide.
 */
function forward<Schema extends z.ZodType>(schema: Schema, value: unknown, context: z.RefinementCtx): z.infer<Schema> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) context.addIssue({ code: "custom", path: issue.path, message: issue.message });
  return z.NEVER;
}

/** Content parts of an input message: text only; images, files and audio are refused by name. */
const inputContentPart = z.unknown().transform((part, context): { readonly text: string } => {
  const fields = typeof part === "object" && part !== null ? (part as { type?: unknown; text?: unknown }) : {};
  if (fields.type !== "input_text" && fields.type !== "output_text") {
    const message =
      typeof fields.type === "string"
        ? `content parts of type '${fields.type}' are not supported by the served models; send input_text parts`
        : "expected a content part with a type (input_text)";
    context.addIssue({ code: "custom", path: ["type"], message });
    return z.NEVER;
  }
  if (typeof fields.text !== "string") {
    context.addIssue({ code: "custom", path: ["text"], message: "a text part needs text (a string)" });
    return z.NEVER;
  }
  return { text: fields.text };
});

/** A string, or an array of at most `most` `part`s (`what` names them); anything else is refused. */
const stringOr = <Part extends z.ZodType>(part: Part, what: string, most = maxInputItems) =>
  z.unknown().transform((value, context): string | z.infer<Part>[] => {
    if (typeof value === "string") return value;
    if (!Array.isArray(value)) {
      context.addIssue({ code: "custom", message: `expected a string or an array of ${what}` });
      return z.NEVER;
    }
    if (value.length > most) {
      context.addIssue({ code: "custom", message: `at most ${most} ${what} are accepted` });
      return z.NEVER;
    }
    return forward(z.array(part), value, context);
  });

const textContent = stringOr(inputContentPart, "input_text parts");

const messageItem = z.object({
  type: z.literal("message").optional(),
  id: z.string().optional(),
  role: z.enum(["user", "system", "developer", "assistant"], {
    error: "expected role to be one of user, system, developer, assistant",
  }),
  content: textContent,
  status: z.string().optional(),
});

/** OpenAI's rule for function names, checked here to name the input item (the shared validation names the chat's message). */
const functionName = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "a function name is 1 to 64 letters, digits, underscores or dashes");

const functionCallItem = z.object({
  type: z.literal("function_call"),
  id: z.string().optional(),
  call_id: z.string({ error: "a function_call needs its call_id" }).min(1, "must not be empty"),
  name: functionName,
  arguments: z.string(),
  status: z.string().optional(),
});

const functionCallOutputItem = z.object({
  type: z.literal("function_call_output"),
  id: z.string().optional(),
  call_id: z.string({ error: "a function_call_output needs the call_id it answers" }).min(1, "must not be empty"),
  output: textContent,
  status: z.string().optional(),
});

const textPart = z.object({ type: z.string(), text: z.string() });

/** A reasoning item sent back: its text is the reasoning of the turn it preceded. */
const reasoningItem = z.object({
  type: z.literal("reasoning"),
  id: z.string().optional(),
  summary: z.array(textPart).default([]),
  content: z.array(textPart).nullish(),
  encrypted_content: z.string().nullish(),
  status: z.string().optional(),
});

/** An earlier item by its id: an input or output item of one of the caller's stored responses. */
const itemReference = z.object({ type: z.literal("item_reference"), id: z.string() });

const inputItemTypes = ["message", "function_call", "function_call_output", "reasoning", "item_reference"];

const inputItem = z.unknown().transform((item, context) => {
  const type = typeof item === "object" && item !== null ? (item as { type?: unknown }).type : undefined;
  const schema =
    type === undefined || type === "message"
      ? messageItem
      : type === "function_call"
        ? functionCallItem
        : type === "function_call_output"
          ? functionCallOutputItem
          : type === "reasoning"
            ? reasoningItem
            : type === "item_reference"
              ? itemReference
              : undefined;
  if (!schema) {
    context.addIssue({
      code: "custom",
      path: ["type"],
      message: `input items of type '${String(type)}' are not supported; send ${inputItemTypes.join(", ")}`,
    });
    return z.NEVER;
  }
  return forward(schema, item, context) as ResponsesInputItem | ItemReference;
});

export type ItemReference = z.infer<typeof itemReference>;

export type ResponsesInputItem =
  | (z.infer<typeof messageItem> & { readonly type?: "message" })
  | z.infer<typeof functionCallItem>
  | z.infer<typeof functionCallOutputItem>
  | z.infer<typeof reasoningItem>;

/** Function tools; OpenAI's built-in tools (web search, file search, code interpreter…) are refused by name. */
const tool = z.unknown().transform((value, context) => {
  const type = typeof value === "object" && value !== null ? (value as { type?: unknown }).type : undefined;
  if (type !== "function") {
    context.addIssue({
      code: "custom",
      path: ["type"],
      message:
        typeof type === "string"
          ? `built-in tools ('${type}') are not supported; infermesh serves function tools, which your code runs`
          : "expected a tool with type 'function'",
    });
    return z.NEVER;
  }
  return forward(functionTool, value, context);
});

const functionTool = z.object({
  type: z.literal("function"),
  name: z.string(),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});

const toolChoice = z.union([z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function"), name: z.string() })], {
  error: "expected 'none', 'auto', 'required' or {\"type\":\"function\",\"name\":…}",
});

const textFormat = z.discriminatedUnion(
  "type",
  [
    z.object({ type: z.literal("text") }),
    z.object({ type: z.literal("json_object") }),
    z.object({ type: z.literal("json_schema"), ...jsonSchemaFormatFields }),
  ],
  { error: "expected text.format.type to be text, json_object or json_schema" },
);

export const responsesBody = z.object({
  model: z.string({ error: "a model id (string) is required" }).min(1, "a model id is required"),
  input: stringOr(inputItem, "input items"),
  instructions: z.string().nullish(),
  previous_response_id: z.string().nullish(),
  tools: z.array(tool).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  max_output_tokens: z.number().nullish(),
  temperature: z.number().nullish(),
  top_p: z.number().nullish(),
  top_logprobs: z.number().nullish(),
  reasoning: z
    .object({
      effort: z.enum(["none", "minimal", "low", "medium", "high"]).nullish(),
      /** Accepted; gpt-oss's reasoning is returned as reasoning text, never summarised. */
      summary: z.string().nullish(),
    })
    .nullish(),
  text: z.object({ format: textFormat.nullish(), verbosity: z.string().nullish() }).nullish(),
  stream: z.boolean().nullish(),
  store: z.boolean().nullish(),
  user: z.string().nullish(),
  /** OpenAI's cache-routing hint: infermesh uses it as the session key (prefix and session affinity). */
  prompt_cache_key: z.string().nullish(),
  metadata: z
    .record(z.string().max(metadataBounds.keyChars), z.string({ error: "metadata values are strings" }).max(metadataBounds.valueChars))
    .refine((pairs) => Object.keys(pairs).length <= metadataBounds.pairs, `at most ${metadataBounds.pairs} key-value pairs`)
    .nullish(),
  /** Extra output to include; the served models have no encrypted reasoning, so only logprobs changes anything. */
  include: z.array(z.string()).nullish(),
  truncation: z.enum(["disabled"], unsupported("truncation 'auto'")).nullish(),
  background: z.literal(false, unsupported("background mode")).nullish(),
  conversation: z.null(unsupported("conversation")).optional(),
  prompt: z.null(unsupported("a stored prompt (prompt)")).optional(),
});

export type ResponsesBody = z.infer<typeof responsesBody>;

/** GET /v1/responses/{id}/input_items: OpenAI's pagination. */
export const inputItemsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  order: z.enum(["asc", "desc"]).default("desc"),
  after: z.string().optional(),
  include: z.unknown().optional(),
});

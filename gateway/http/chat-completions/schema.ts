import { z } from "zod";
import { sharedSamplingFields } from "../sampling-schema.js";

type TextPart = { readonly type: "text"; readonly text: string };

/**
 * Message content: a string, or an array of text parts. Only text is readable by the
 * served models; other part types (images, audio, files) are refused by name.
 */
const content = z.unknown().transform((value, context): string | TextPart[] => {
  if (typeof value === "string") return value;
  if (!Array.isArray(value)) {
    context.addIssue({ code: "custom", message: "expected a string or an array of text parts" });
    return z.NEVER;
  }
  const parts: TextPart[] = [];
  for (const [index, part] of value.entries()) {
    const type = typeof part === "object" && part !== null ? (part as { type?: unknown }).type : undefined;
    const text = typeof part === "object" && part !== null ? (part as { text?: unknown }).text : undefined;
    if (type !== "text") {
      const message =
        typeof type === "string"
          ? `content parts of type '${type}' are not supported by the served models; send text parts`
          : "expected a content part with a type";
      context.addIssue({ code: "custom", path: [index, "type"], message });
      return z.NEVER;
    }
    if (typeof text !== "string") {
      context.addIssue({ code: "custom", path: [index, "text"], message: "a text part needs text (a string)" });
      return z.NEVER;
    }
    parts.push({ type: "text", text });
  }
  return parts;
});

const toolCall = z.object({
  id: z.string(),
  type: z.literal("function").optional(),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

const message = z.discriminatedUnion(
  "role",
  [
    z.object({ role: z.literal("system"), content, name: z.string().optional() }),
    z.object({ role: z.literal("developer"), content, name: z.string().optional() }),
    z.object({ role: z.literal("user"), content, name: z.string().optional() }),
    z.object({
      role: z.literal("assistant"),
      content: content.nullish(),
      name: z.string().optional(),
      tool_calls: z.array(toolCall).nullish(),
      /** Not OpenAI's: the reasoning a previous answer carried, sent back (vLLM's name). */
      reasoning_content: z.string().nullish(),
    }),
    z.object({ role: z.literal("tool"), content, tool_call_id: z.string({ error: "a tool message needs the tool_call_id it answers" }) }),
  ],
  { error: "expected role to be one of system, developer, user, assistant, tool" },
);

const tool = z.object({
  type: z.literal("function", { error: "only tools of type 'function' are supported" }),
  function: z.object({
    name: z.string(),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().nullish(),
  }),
});

const toolChoice = z.union(
  [z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) })],
  { error: 'expected \'none\', \'auto\', \'required\' or {"type":"function","function":{"name":…}}' },
);

/** A JSON Schema output format: chat's `response_format.json_schema`, the Responses API's `text.format`. */
export const jsonSchemaFormatFields = {
  name: z.string(),
  description: z.string().nullish(),
  schema: z.record(z.string(), z.unknown()).optional(),
  strict: z.boolean().nullish(),
};

const responseFormat = z.discriminatedUnion(
  "type",
  [
    z.object({ type: z.literal("text") }),
    z.object({ type: z.literal("json_object") }),
    z.object({
      type: z.literal("json_schema"),
      json_schema: z.object(jsonSchemaFormatFields),
    }),
  ],
  { error: "expected response_format.type to be text, json_object or json_schema" },
);

/**
 * The body of POST /v1/chat/completions, as JSON types. Unknown fields are ignored, as
 * OpenAI ignores them; known fields of the wrong type are rejected. Values (ranges,
 * counts, which tool a choice names) are the shared validation's.
 */
export const chatCompletionBody = z.object({
  ...sharedSamplingFields,
  messages: z.array(message, { error: "an array of messages is required" }),
  max_completion_tokens: z.number().nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().nullish(),
  response_format: responseFormat.nullish(),
  tools: z.array(tool).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  reasoning_effort: z.enum(["none", "minimal", "low", "medium", "high"]).nullish(),
});

export type ChatCompletionBody = z.infer<typeof chatCompletionBody>;
export type ChatCompletionMessage = ChatCompletionBody["messages"][number];

/** The text of a message's content. */
export const contentText = (value: string | readonly TextPart[] | null | undefined): string =>
  value == null ? "" : typeof value === "string" ? value : value.map((part) => part.text).join("");

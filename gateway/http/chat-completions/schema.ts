import { z } from "zod";

const textPart = z.object({ type: z.literal("text"), text: z.string() });

/** Message content: a string, or text parts (other part types are not supported yet). */
const content = z.union([z.string(), z.array(textPart)], {
  error: "expected a string or an array of text parts",
});

const message = z.discriminatedUnion(
  "role",
  [
    z.object({ role: z.literal("system"), content, name: z.string().optional() }),
    z.object({ role: z.literal("developer"), content, name: z.string().optional() }),
    z.object({ role: z.literal("user"), content, name: z.string().optional() }),
    z.object({ role: z.literal("assistant"), content: content.nullish(), name: z.string().optional() }),
  ],
  { error: "expected role to be one of system, developer, user, assistant" },
);

/**
 * The body of POST /v1/chat/completions as far as this version serves it. Unknown
 * fields are ignored, as OpenAI ignores them; known fields of the wrong type are
 * rejected.
 */
export const chatCompletionBody = z.object({
  model: z.string({ error: "a model id (string) is required" }).min(1, "a model id is required"),
  messages: z.array(message, { error: "an array of messages is required" }).min(1, "at least one message is required"),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  n: z.number().int().min(1).max(1, "n > 1 is not supported yet").nullish(),
  user: z.string().nullish(),
});

export type ChatCompletionBody = z.infer<typeof chatCompletionBody>;

/** The text of a message's content. */
export const contentText = (value: z.infer<typeof content> | null | undefined): string =>
  value == null ? "" : typeof value === "string" ? value : value.map((part) => part.text).join("");

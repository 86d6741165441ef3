import { z } from "zod";

/**
 * Fields chat completions and completions share, as JSON types: their values (ranges,
 * counts) are checked by the validation both public APIs share
 * (gateway/validation/generation.ts). The extensions `top_k`, `min_p` and
 * `repetition_penalty` are vLLM's names for the same llama.cpp settings.
 */
export const sharedSamplingFields = {
  model: z.string({ error: "a model id (string) is required" }).min(1, "a model id is required"),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  max_tokens: z.number().nullish(),
  temperature: z.number().nullish(),
  top_p: z.number().nullish(),
  top_k: z.number().nullish(),
  min_p: z.number().nullish(),
  repetition_penalty: z.number().nullish(),
  // OpenAI's seed is any 64-bit integer; it is folded to the engines' 32 bits.
  seed: z.number().int().nullish(),
  stop: z.union([z.string(), z.array(z.string())]).nullish(),
  presence_penalty: z.number().nullish(),
  frequency_penalty: z.number().nullish(),
  n: z.number().nullish(),
  logit_bias: z
    .record(z.string(), z.number())
    .nullish()
    .refine((bias) => bias == null || Object.keys(bias).length === 0, "logit_bias is not supported"),
  user: z.string().nullish(),
};

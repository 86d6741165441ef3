import { z } from "zod";
import { maxChoices } from "../../services/common/request-limits.js";

/**
 * Fields chat completions and completions share. The extensions `top_k`, `min_p` and
 * `repetition_penalty` are vLLM's names for the same llama.cpp settings.
 */
export const sharedSamplingFields = {
  model: z.string({ error: "a model id (string) is required" }).min(1, "a model id is required"),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  seed: z.number().int().nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4, "at most 4 stop sequences")]).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  n: z.number().int().min(1).max(maxChoices, `n is at most ${maxChoices}`).nullish(),
  logit_bias: z
    .record(z.string(), z.number())
    .nullish()
    .refine((bias) => bias == null || Object.keys(bias).length === 0, "logit_bias is not supported"),
  user: z.string().nullish(),
};

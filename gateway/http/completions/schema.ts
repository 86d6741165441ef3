import { z } from "zod";
import { sharedSamplingFields } from "../sampling-schema.js";

/** Most prompts one completions request may carry; each is its own generation. */
export const maxPrompts = 32;

/**
 * The body of POST /v1/completions (OpenAI's legacy text completions). Prompts are
 * text; token-id prompts are refused by name, as are `suffix` and a `best_of` above `n`.
 */
export const completionBody = z
  .object({
    ...sharedSamplingFields,
    prompt: z.union([z.string(), z.array(z.string()).min(1).max(maxPrompts)], {
      error: "expected a string or an array of strings (token-id prompts are not supported)",
    }),
    echo: z.boolean().nullish(),
    logprobs: z.number().int().min(0).max(5).nullish(),
    suffix: z.null({ error: "suffix is not supported" }).optional(),
    best_of: z.number().int().min(1).nullish(),
  })
  .superRefine((body, context) => {
    if (body.best_of != null && body.best_of !== (body.n ?? 1)) {
      context.addIssue({ code: "custom", path: ["best_of"], message: "best_of other than n is not supported" });
    }
  });

export type CompletionBody = z.infer<typeof completionBody>;

import { z } from "zod";
import { maxEmbeddingInputs } from "../../../services/common/request-limits.js";

/** The body of POST /v1/embeddings. Token-id inputs and `dimensions` are refused by name. */
export const embeddingBody = z.object({
  model: z.string({ error: "a model id (string) is required" }).min(1, "a model id is required"),
  input: z.union([z.string(), z.array(z.string()).min(1).max(maxEmbeddingInputs)], {
    error: "expected a string or an array of strings (token-id inputs are not supported)",
  }),
  encoding_format: z.enum(["float", "base64"]).nullish(),
  dimensions: z.null({ error: "dimensions is not supported: the served models have one embedding size" }).optional(),
  user: z.string().nullish(),
});

export type EmbeddingBody = z.infer<typeof embeddingBody>;

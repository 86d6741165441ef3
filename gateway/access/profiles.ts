import { z } from "zod";

export const profileNames = ["latency_first", "quality_first", "balanced"] as const;
export type ProfileName = (typeof profileNames)[number];

/** A serving profile: which models, how long an answer may be, how urgent it is. */
export const profileSchema = z
  .object({
    /** Model ids in preference order; the first one some worker serves is used. */
    models: z.array(z.string().min(1)).min(1),
    /** Largest max_tokens a request may ask for; also the bound when it asks none. */
    maxTokens: z.number().int().min(1),
    /** The admission class of its requests (never more urgent than the key's). */
    priority: z.enum(["interactive", "standard", "batch"]),
    /** The router picks among all served `models` by prompt size and load. */
    routerChoosesModel: z.boolean().default(false),
  })
  .strict();

export type Profile = z.infer<typeof profileSchema>;

/**
 * The seeds' three profiles. Real models first; the simulator's and the generated test
 * model's ids last, so that aliases also work on a laptop mesh.
 */
export const defaultProfiles: Record<ProfileName, Profile> = {
  latency_first: {
    models: ["gpt-oss-20b", "sim-gpt-oss-20b", "gpt-oss-120b", "sim-gpt-oss-120b", "infermesh-test"],
    maxTokens: 512,
    priority: "interactive",
    routerChoosesModel: false,
  },
  quality_first: {
    models: ["gpt-oss-120b", "sim-gpt-oss-120b", "gpt-oss-20b", "sim-gpt-oss-20b", "infermesh-test"],
    maxTokens: 2048,
    priority: "standard",
    routerChoosesModel: false,
  },
  balanced: {
    models: ["gpt-oss-20b", "gpt-oss-120b", "sim-gpt-oss-20b", "sim-gpt-oss-120b", "infermesh-test"],
    maxTokens: 2048,
    priority: "standard",
    routerChoosesModel: true,
  },
};

/** An alias of the `model` field: a fixed model, a profile's choice, or both. */
export const aliasSchema = z
  .object({
    /** The model id it stands for; absent lets the profile choose. */
    model: z.string().min(1).optional(),
    /** The profile it selects; absent keeps the request's, key's or server's. */
    profile: z.enum(profileNames).optional(),
  })
  .strict();

export type Alias = z.infer<typeof aliasSchema>;

export const defaultAliases: Record<string, Alias> = {
  "gpt-oss": {},
  "gpt-oss:latency": { profile: "latency_first" },
  "gpt-oss:quality": { profile: "quality_first" },
  "gpt-oss:balanced": { profile: "balanced" },
  "gpt-oss:20b": { model: "gpt-oss-20b" },
  "gpt-oss:120b": { model: "gpt-oss-120b" },
};

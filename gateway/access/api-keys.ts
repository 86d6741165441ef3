import { createHash, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { PriorityClass } from "../../gen/infermesh/common/v1/common.js";
import { profileNames } from "./profiles.js";

/** Per-tenant limits admission enforces; an absent limit is no limit. */
export const tenantLimitsSchema = z
  .object({
    /** Requests of the tenant running at once. */
    maxConcurrency: z.number().int().min(1).optional(),
    /** Requests started per minute. */
    requestsPerMinute: z.number().int().min(1).optional(),
    /** Tokens per minute: the prompt estimate at admission, output tokens as they stream (may overdraw the minute). */
    tokensPerMinute: z.number().int().min(1).optional(),
  })
  .strict();

/** One API key. Give the key itself or, better, its SHA-256 in hex. */
export const apiKeySchema = z
  .object({
    /** Shown in logs and metrics instead of the key. */
    name: z.string().min(1),
    key: z.string().min(16, "an API key has at least 16 characters").optional(),
    keySha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/, "expected 64 lowercase hex digits")
      .optional(),
    /** The tenant the key's requests are charged to (fairness, limits). */
    tenant: z
      .string()
      .min(1)
      .refine((tenant) => !tenant.startsWith("anonymous"), "tenant names starting with 'anonymous' are kept for callers without a key"),
    priority: z.enum(["interactive", "standard", "batch"]).default("standard"),
    /** The profile used when a request names none. */
    profile: z.enum(profileNames).optional(),
    /** May call /admin/* and /debug/*. */
    admin: z.boolean().default(false),
    /** Its deterministic requests may be answered from the gateway's response cache (when on). */
    responseCache: z.boolean().default(false),
    /** Its deterministic requests may share an identical one's generation while it runs (when the gateway's dedupeRequests is on). */
    dedupeRequests: z.boolean().default(false),
    limits: tenantLimitsSchema.default({}),
  })
  .strict()
  .refine((entry) => (entry.key === undefined) !== (entry.keySha256 === undefined), "give exactly one of key and keySha256");

export type ApiKeyConfig = z.infer<typeof apiKeySchema>;
export type TenantLimits = z.infer<typeof tenantLimitsSchema>;

/** A key's identity once authenticated. */
export interface KeyIdentity {
  readonly name: string;
  readonly tenant: string;
  readonly priorityClass: PriorityClass;
  readonly profile: ApiKeyConfig["profile"];
  readonly admin: boolean;
  readonly responseCache: boolean;
  readonly dedupeRequests: boolean;
  readonly limits: TenantLimits;
}

const priorityClasses = {
  interactive: PriorityClass.PRIORITY_CLASS_INTERACTIVE,
  standard: PriorityClass.PRIORITY_CLASS_STANDARD,
  batch: PriorityClass.PRIORITY_CLASS_BATCH,
} as const;

export const priorityClassOf = (priority: keyof typeof priorityClasses) => priorityClasses[priority];

const digest = (text: string) => createHash("sha256").update(text, "utf8").digest();

/**
 * The configured keys. A presented key is hashed and found by its digest; the stored
 * digest is then compared in constant time, so neither the lookup nor the comparison
 * depends on how much of a guess is right.
 */
export class ApiKeys {
  private readonly byDigest = new Map<string, { digest: Buffer; identity: KeyIdentity }>();

  constructor(keys: readonly ApiKeyConfig[]) {
    for (const entry of keys) {
      const stored = entry.keySha256 !== undefined ? Buffer.from(entry.keySha256, "hex") : digest(entry.key!);
      const hex = stored.toString("hex");
      if (this.byDigest.has(hex)) throw new Error(`API key "${entry.name}" is configured twice`);
      this.byDigest.set(hex, {
        digest: stored,
        identity: Object.freeze({
          name: entry.name,
          tenant: entry.tenant,
          priorityClass: priorityClassOf(entry.priority),
          profile: entry.profile,
          admin: entry.admin,
          responseCache: entry.responseCache,
          dedupeRequests: entry.dedupeRequests,
          limits: entry.limits,
        }),
      });
    }
  }

  get hasAdmin(): boolean {
    return [...this.byDigest.values()].some((entry) => entry.identity.admin);
  }

  /** The identity of a presented key, or undefined. */
  find(presented: string): KeyIdentity | undefined {
    const presentedDigest = digest(presented);
    const entry = this.byDigest.get(presentedDigest.toString("hex"));
    return entry && timingSafeEqual(entry.digest, presentedDigest) ? entry.identity : undefined;
  }
}

/** The key of an `Authorization: Bearer <key>` header (or gRPC metadata value). */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

import { createHash } from "node:crypto";
import { LRUCache } from "lru-cache";
import { Counter, Gauge, type Registry } from "prom-client";

/** Why a request did or did not use the cache; a metrics label. */
export type CacheOutcome = "hit" | "miss" | "bypass" | "not_deterministic";

/** The response cache, in this process (ResponseCache) or shared by every gateway replica (SharedResponseCache). */
export interface ResponseCaching {
  count(outcome: CacheOutcome): void;
  /** The cached answer (serialised JSON) for a key, counting a hit or a miss. */
  get(key: string): string | undefined | Promise<string | undefined>;
  set(key: string, answer: string): void;
}

/**
 * Whole answers of deterministic requests (temperature 0, or a seed), keyed by the
 * canonical form of the request, in an LRU bounded by the bytes of what it holds.
 */
export class ResponseCache implements ResponseCaching {
  private entries: LRUCache<string, string>;
  private readonly outcomes: Counter<"outcome">;

  constructor(maxBytes: number, ttlMs: number, registry: Registry) {
    this.entries = lruOf(maxBytes, ttlMs);
    this.outcomes = new Counter({
      name: "infermesh_gateway_response_cache_requests_total",
      help: "Requests that asked the response cache, by outcome",
      labelNames: ["outcome"] as const,
      registers: [registry],
    });
    const held = () => this.entries.calculatedSize;
    new Gauge({
      name: "infermesh_gateway_response_cache_bytes",
      help: "Bytes held by the response cache",
      registers: [registry],
      collect() {
        this.set(held());
      },
    });
  }

  /** A new bound and TTL (a reload): the newest answers that fit stay, each with the time it had left. */
  resize(maxBytes: number, ttlMs: number): void {
    const previous = this.entries;
    this.entries = lruOf(maxBytes, ttlMs);
    // Oldest first, so the newest win the room.
    for (const [key, answer] of [...previous.entries()].reverse()) {
      const left = previous.getRemainingTTL(key);
      const ttl = ttlMs > 0 ? Math.min(ttlMs, Number.isFinite(left) && left > 0 ? left : ttlMs) : undefined;
      this.entries.set(key, answer, { ttl });
    }
  }

  count(outcome: CacheOutcome): void {
    this.outcomes.inc({ outcome });
  }

  /** The cached answer (serialised JSON) for a key, counting a hit or a miss. */
  get(key: string): string | undefined {
    const hit = this.entries.get(key);
    this.count(hit === undefined ? "miss" : "hit");
    return hit;
  }

  /** The answer for a key without counting (the shared cache's fallback counts its own). */
  peek(key: string): string | undefined {
    return this.entries.get(key);
  }

  set(key: string, answer: string): void {
    this.entries.set(key, answer);
  }
}

function lruOf(maxBytes: number, ttlMs: number): LRUCache<string, string> {
  return new LRUCache<string, string>({
    maxSize: maxBytes,
    // Strings are UTF-16 in memory; key and value both count.
    sizeCalculation: (value, key) => 2 * (value.length + key.length) + 64,
    ttl: ttlMs > 0 ? ttlMs : undefined,
  });
}

/** Whitespace runs become one space, and ends are trimmed: "Hi  there\n" equals "Hi there". */
export const normaliseWhitespace = (text: string) => text.replace(/\s+/g, " ").trim();

/** The fields whose text is prose, where whitespace runs do not change the request. */
const proseFields = new Set(["content", "text", "prompt"]);

/**
 * JSON with object keys sorted, and whitespace normalised in the prose of messages and
 * prompts (`content`, `text`, `prompt`). Every other string (stop sequences, schemas,
 * tool arguments) stays byte-exact.
 */
export function canonicalJson(value: unknown, prose = false): string {
  if (typeof value === "string") return JSON.stringify(prose ? normaliseWhitespace(value) : value);
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item, prose)).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record)
      .filter((key) => record[key] !== undefined)
      .sort();
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key], proseFields.has(key))}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** The cache key of a request: its tenant, resolved model and canonical body, hashed. */
export function cacheKey(scope: string, canonical: string): string {
  return createHash("sha256").update(scope).update("\0").update(canonical).digest("base64url");
}

/** Only requests whose answer does not depend on chance may be cached. */
export const isDeterministic = (body: { temperature?: number | null; seed?: number | null }) => body.temperature === 0 || body.seed != null;

/** Whether the client asked to skip caches (`Cache-Control: no-cache` or `no-store`). */
export const bypassRequested = (cacheControl: string | string[] | undefined) =>
  /\bno-(cache|store)\b/i.test(Array.isArray(cacheControl) ? cacheControl.join(",") : (cacheControl ?? ""));

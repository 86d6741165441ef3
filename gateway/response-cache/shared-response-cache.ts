import type { SharedRedis } from "../../services/common/redis.js";
import type { CacheOutcome, ResponseCache, ResponseCaching } from "./response-cache.js";

const prefix = "{infermesh:gateway}:cache";
/** Zset: cached keys by when they were stored (oldest go first when the cache is full). */
const indexKey = `${prefix}:index`;
/** Hash: cached key → its bytes. */
const sizesKey = `${prefix}:sizes`;
/** The bytes the cache holds, all gateways together. */
const bytesKey = `${prefix}:bytes`;
const answerPrefix = `${prefix}:answer:`;

/**
 * The response cache in Redis (the shared mode): an answer any gateway replica cached
 * is a hit on every other. Bounded by `maxBytes` all replicas together, oldest first,
 * each answer kept `ttlMs`; keys are already hashes of the tenant, model and request.
 * While Redis cannot be reached, this replica's own cache (`local`) answers and stores.
 */
export class SharedResponseCache implements ResponseCaching {
  constructor(
    private readonly redis: SharedRedis,
    private readonly local: ResponseCache,
    private maxBytes: number,
    private ttlMs: number,
  ) {
    redis.client.defineCommand("infermeshCacheSet", { numberOfKeys: 3, lua: setScript });
  }

  /** A new bound and TTL (a reload): answers stored from now on keep them, and the next store trims to the bound. */
  resize(maxBytes: number, ttlMs: number): void {
    this.maxBytes = maxBytes;
    this.ttlMs = ttlMs;
    this.local.resize(maxBytes, ttlMs);
  }

  count(outcome: CacheOutcome): void {
    this.local.count(outcome);
  }

  async get(key: string): Promise<string | undefined> {
    let hit: string | undefined;
    try {
      hit = (await this.redis.client.get(answerPrefix + key)) ?? undefined;
    } catch (error) {
      this.redis.noteFailure(error);
      hit = this.local.peek(key);
    }
    this.count(hit === undefined ? "miss" : "hit");
    return hit;
  }

  set(key: string, answer: string): void {
    const bytes = 2 * (answer.length + key.length) + 64;
    if (bytes > this.maxBytes) return;
    (this.redis.client as unknown as { infermeshCacheSet(...args: (string | number)[]): Promise<unknown> })
      .infermeshCacheSet(indexKey, sizesKey, bytesKey, answerPrefix, key, answer, bytes, this.maxBytes, this.ttlMs)
      .catch((error: unknown) => {
        this.redis.noteFailure(error);
        this.local.set(key, answer);
      });
  }
}

/** KEYS: index, sizes, bytes. ARGV: answer prefix, key, answer, bytes, maxBytes, ttlMs. Stores, then drops the oldest while over the bound. */
const setScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, bytes, max, ttl = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local old = redis.call('HGET', KEYS[2], key)
if old then redis.call('DECRBY', KEYS[3], tonumber(old)) end
if ttl > 0 then
  redis.call('SET', ARGV[1] .. key, ARGV[3], 'PX', ttl)
else
  redis.call('SET', ARGV[1] .. key, ARGV[3])
end
redis.call('ZADD', KEYS[1], now, key)
redis.call('HSET', KEYS[2], key, bytes)
local total = redis.call('INCRBY', KEYS[3], bytes)
while total > max do
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not oldest or oldest == key then break end
  redis.call('ZREM', KEYS[1], oldest)
  redis.call('DEL', ARGV[1] .. oldest)
  total = redis.call('DECRBY', KEYS[3], tonumber(redis.call('HGET', KEYS[2], oldest) or '0'))
  redis.call('HDEL', KEYS[2], oldest)
end
-- Answers that expired on their own still count until the bound drops them: drop those first.
if ttl > 0 then
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - ttl)) do
    redis.call('ZREM', KEYS[1], gone)
    redis.call('DECRBY', KEYS[3], tonumber(redis.call('HGET', KEYS[2], gone) or '0'))
    redis.call('HDEL', KEYS[2], gone)
  end
end
return 0
`;

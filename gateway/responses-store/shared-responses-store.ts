import type { Counter } from "prom-client";
import type { SharedRedis } from "../../services/common/redis.js";
import {
  conversationOf,
  nextLink,
  type ResponsesStore,
  type ResponsesStoreSettings,
  type ResponsesStoring,
  type StoredResponse,
  storedBytes,
} from "./responses-store.js";

/** The gateway's keys: one hash tag, so each script runs on one node of a Redis Cluster. */
const prefix = "{infermesh:gateway}:responses";
const keysOf = (tenant: string) => {
  const base = `${prefix}:${encodeURIComponent(tenant)}`;
  return {
    /** Zset: the tenant's response ids by last use (ms). */
    index: `${base}:index`,
    /** Hash: response id → "bytes item-id item-id …" (what dropping it frees). */
    meta: `${base}:meta`,
    /** Hash: item id → the response holding it. */
    items: `${base}:items`,
    /** The bytes the tenant's responses hold. */
    bytes: `${base}:bytes`,
    /** The prefix of one response's key (the payload, with its TTL). */
    response: `${base}:response:`,
  };
};

/**
 * Stored Responses in Redis (the shared mode), so that any gateway replica answers
 * `previous_response_id`, retrieve, input items and delete. The same rules as the
 * in-memory store: a tenant's own oldest go when its share is full, never another's;
 * each is kept `ttlMs` from its last use; another tenant's id is simply not there
 * (the tenant is part of every key). The bound across tenants is Redis's maxmemory.
 * While Redis cannot be reached, responses are stored in and read from this replica's
 * memory (`local`), so a conversation on one replica still works.
 */
export class SharedResponsesStore implements ResponsesStoring {
  constructor(
    private readonly redis: SharedRedis,
    private readonly local: ResponsesStore,
    private readonly settings: ResponsesStoreSettings,
    private readonly evictions: Counter<"reason">,
  ) {
    redis.client.defineCommand("infermeshResponsePut", { numberOfKeys: 4, lua: dropFunction + putScript });
    redis.client.defineCommand("infermeshResponseGet", { numberOfKeys: 4, lua: getScript });
    redis.client.defineCommand("infermeshResponseDelete", { numberOfKeys: 4, lua: dropFunction + deleteScript });
  }

  async put(stored: StoredResponse): Promise<void> {
    const bytes = storedBytes(stored);
    if (bytes > this.settings.tenantMaxBytes) return;
    const keys = keysOf(stored.tenantId);
    const items = [...stored.inputItems, ...stored.response.output].map((item) => (item as { id: string }).id);
    try {
      const [expired, evicted] = (await this.commands.infermeshResponsePut(
        keys.index,
        keys.meta,
        keys.items,
        keys.bytes,
        keys.response,
        stored.response.id,
        JSON.stringify({ response: stored.response, inputItems: stored.inputItems }),
        bytes,
        this.settings.ttlMs,
        this.settings.tenantMaxBytes,
        ...items,
      )) as [number, number];
      if (expired > 0) this.evictions.inc({ reason: "expired" }, expired);
      if (evicted > 0) this.evictions.inc({ reason: "evicted" }, evicted);
    } catch (error) {
      this.redis.noteFailure(error);
      this.local.put(stored);
    }
  }

  async get(tenantId: string, id: string): Promise<StoredResponse | undefined> {
    const keys = keysOf(tenantId);
    try {
      const payload = (await this.commands.infermeshResponseGet(
        keys.index,
        keys.meta,
        keys.items,
        keys.bytes,
        keys.response,
        id,
        this.settings.ttlMs,
      )) as string | null;
      if (payload !== null) return { tenantId, ...(JSON.parse(payload) as Omit<StoredResponse, "tenantId">) };
    } catch (error) {
      this.redis.noteFailure(error);
    }
    return this.local.get(tenantId, id);
  }

  async item(tenantId: string, id: string): Promise<object | undefined> {
    let responseId: string | null = null;
    try {
      responseId = await this.redis.client.hget(keysOf(tenantId).items, id);
    } catch (error) {
      this.redis.noteFailure(error);
    }
    if (responseId === null) return this.local.item(tenantId, id);
    const stored = await this.get(tenantId, responseId);
    return stored && [...stored.inputItems, ...stored.response.output].find((item) => (item as { id: string }).id === id);
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    const keys = keysOf(tenantId);
    let deleted = false;
    try {
      deleted = (await this.commands.infermeshResponseDelete(keys.index, keys.meta, keys.items, keys.bytes, keys.response, id)) === 1;
    } catch (error) {
      this.redis.noteFailure(error);
    }
    return this.local.delete(tenantId, id) || deleted;
  }

  async conversation(tenantId: string, previousResponseId: string): Promise<object[]> {
    const links: StoredResponse[] = [];
    for (let id: string | null = previousResponseId; id !== null; )
      id = nextLink(links, await this.get(tenantId, id), id, previousResponseId);
    return conversationOf(links);
  }

  private get commands(): ResponseCommands {
    return this.redis.client as unknown as ResponseCommands;
  }
}

interface ResponseCommands {
  infermeshResponsePut(...args: (string | number)[]): Promise<unknown>;
  infermeshResponseGet(...args: (string | number)[]): Promise<unknown>;
  infermeshResponseDelete(...args: (string | number)[]): Promise<unknown>;
}

/**
 * KEYS: index, meta, items, bytes. ARGV[1]: the response key prefix. drop(id) removes a
 * response and everything that points at it; it returns whether there was one.
 */
const dropFunction = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function drop(id)
  local meta = redis.call('HGET', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  local existed = redis.call('DEL', ARGV[1] .. id)
  if not meta then return existed end
  local first = true
  for word in string.gmatch(meta, '%S+') do
    if first then
      redis.call('DECRBY', KEYS[4], tonumber(word))
      first = false
    elseif redis.call('HGET', KEYS[3], word) == id then
      redis.call('HDEL', KEYS[3], word)
    end
  end
  return existed
end
`;

/**
 * ARGV: prefix, id, payload, bytes, ttlMs, tenantMaxBytes, item ids….
 * Drops the tenant's expired responses and, while its share would overflow, its least
 * recently used; then stores. Returns { expired, evicted }.
 */
const putScript = `
local id, payload, bytes, ttl, max = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local expired, evicted = 0, 0
if ttl > 0 then
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - ttl)) do
    drop(old)
    expired = expired + 1
  end
end
drop(id)
while tonumber(redis.call('GET', KEYS[4]) or '0') + bytes > max do
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not oldest then break end
  drop(oldest)
  evicted = evicted + 1
end
if ttl > 0 then
  redis.call('SET', ARGV[1] .. id, payload, 'PX', ttl)
else
  redis.call('SET', ARGV[1] .. id, payload)
end
redis.call('ZADD', KEYS[1], now, id)
local meta = { tostring(bytes) }
for i = 7, #ARGV do
  redis.call('HSET', KEYS[3], ARGV[i], id)
  meta[#meta + 1] = ARGV[i]
end
redis.call('HSET', KEYS[2], id, table.concat(meta, ' '))
redis.call('INCRBY', KEYS[4], bytes)
if ttl > 0 then
  for k = 1, 4 do redis.call('PEXPIRE', KEYS[k], ttl) end
end
return { expired, evicted }
`;

/** KEYS: index, meta, items, bytes. ARGV: prefix, id, ttlMs. The payload, its time to live renewed (a response read by a later turn stays). */
const getScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
local payload
if ttl > 0 then
  payload = redis.call('GETEX', ARGV[1] .. ARGV[2], 'PX', ttl)
else
  payload = redis.call('GET', ARGV[1] .. ARGV[2])
end
if payload then
  redis.call('ZADD', KEYS[1], 'XX', now, ARGV[2])
  if ttl > 0 then
    for k = 1, 4 do redis.call('PEXPIRE', KEYS[k], ttl) end
  end
end
return payload
`;

/** ARGV: prefix, id. 1 when the tenant had it. */
const deleteScript = `
return drop(ARGV[2])
`;

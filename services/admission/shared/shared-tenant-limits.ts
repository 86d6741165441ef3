import type { TenantLimits } from "../../../gen/infermesh/admission/v1/admission_service.js";
import type { Clock } from "../../common/clock.js";
import type { SharedRedis } from "../../common/redis.js";
import { type LimitExceeded, type TenantCharge, TenantLimiter, type TenantLimiting } from "../tenant-limits.js";
import { keys } from "./keys.js";

/**
 * Tenant limits that hold across every admission replica: the same refilling
 * allowances as the local TenantLimiter (requests and tokens per minute, debt for
 * output reported after the fact), and concurrency counted per replica in one hash,
 * all checked and charged in one Lua script so that a request is charged to every
 * limit or to none, and two replicas never both take the last unit. Time is Redis's
 * own (TIME), so replicas' clocks need not agree.
 *
 * A replica's concurrency counts go when its lease report expires (FleetLease keeps
 * the replica set): a replica that dies frees its tenants' slots after the lease TTL.
 *
 * Why not rate-limiter-flexible: its Redis limiters count fixed windows (a tenant can
 * pass twice its limit across a window's edge), charge one limit per call (a request
 * refused by its token limit would already have used a request), and have no leases
 * for concurrency. Our limits are three checks that must pass or fail together; one
 * script of 60 lines does that atomically.
 *
 * While Redis cannot be reached, the local limiter enforces each limit divided by the
 * replica count last seen, so the replicas together stay near the limit.
 */
export class SharedTenantLimiter implements TenantLimiting {
  private readonly local: TenantLimiter;
  /** Concurrency releases Redis did not take (it was down): sent again until it does, so no count leaks. */
  private readonly unsentReleases = new Map<string, number>();
  private readonly retry: NodeJS.Timeout;

  constructor(
    private readonly redis: SharedRedis,
    private readonly replicaId: string,
    /** The admission replicas last seen (for the local fallback's share). */
    private readonly replicas: () => number,
    clock: Clock,
  ) {
    this.local = new TenantLimiter(clock);
    const client = redis.client;
    client.defineCommand("infermeshTenantAdmit", { numberOfKeys: 4, lua: admitScript });
    client.defineCommand("infermeshTenantTake", { numberOfKeys: 1, lua: takeScript });
    client.defineCommand("infermeshTenantRefund", { numberOfKeys: 2, lua: refundScript });
    client.defineCommand("infermeshTenantRelease", { numberOfKeys: 1, lua: releaseScript });
    this.retry = setInterval(() => this.resendReleases(), 1_000);
    this.retry.unref();
  }

  close(): void {
    clearInterval(this.retry);
  }

  async admit(tenantId: string, limits: TenantLimits | undefined, inputTokens: number): Promise<LimitExceeded | TenantCharge> {
    const { maxConcurrency, requestsPerMinute, tokensPerMinute } = limits ?? {};
    if (maxConcurrency === undefined && requestsPerMinute === undefined && tokensPerMinute === undefined) return unlimited;
    if (!this.redis.isUp) return this.admitLocally(tenantId, limits!, inputTokens);
    const tenant = encodeURIComponent(tenantId);
    const commands = this.redis.client as unknown as TenantCommands;
    let answer: [number, number];
    try {
      answer = (await commands.infermeshTenantAdmit(
        keys.tenantConcurrency(tenant),
        keys.tenantRequests(tenant),
        keys.tenantTokens(tenant),
        keys.leaseReplicas,
        this.replicaId,
        maxConcurrency ?? -1,
        requestsPerMinute ?? -1,
        tokensPerMinute ?? -1,
        inputTokens,
      )) as [number, number];
    } catch (error) {
      this.redis.noteFailure(error);
      return this.admitLocally(tenantId, limits!, inputTokens);
    }
    const [exceeded, retryAfterMs] = answer;
    if (exceeded !== 0) return { limit: limitNames[exceeded - 1]!, retryAfterMs };

    // Charged in Redis. What follows is sent without waiting; a failure costs the
    // tenant at most this request's part of a limit until the keys expire.
    let released = false;
    let refunded = false;
    const release = () => {
      if (released) return;
      released = true;
      if (maxConcurrency !== undefined) this.sendRelease(tenant, 1);
    };
    return {
      chargeOutput: (outputTokens) => {
        if (refunded || outputTokens <= 0 || tokensPerMinute === undefined) return;
        commands.infermeshTenantTake(keys.tenantTokens(tenant), tokensPerMinute, outputTokens).catch(() => undefined);
      },
      release,
      refund: () => {
        if (released) return;
        refunded = true;
        commands
          .infermeshTenantRefund(
            keys.tenantRequests(tenant),
            keys.tenantTokens(tenant),
            requestsPerMinute ?? -1,
            tokensPerMinute ?? -1,
            inputTokens,
          )
          .catch(() => undefined);
        release();
      },
    };
  }

  private sendRelease(tenant: string, count: number): void {
    (this.redis.client as unknown as TenantCommands)
      .infermeshTenantRelease(keys.tenantConcurrency(tenant), this.replicaId, count)
      .catch(() => this.unsentReleases.set(tenant, (this.unsentReleases.get(tenant) ?? 0) + count));
  }

  private resendReleases(): void {
    if (!this.redis.isUp) return;
    const unsent = [...this.unsentReleases];
    this.unsentReleases.clear();
    for (const [tenant, count] of unsent) this.sendRelease(tenant, count);
  }

  /** The local fallback: each limit divided by the replicas last seen (at least 1 of each). */
  private admitLocally(tenantId: string, limits: TenantLimits, inputTokens: number): LimitExceeded | TenantCharge {
    const replicas = Math.max(1, this.replicas());
    const part = (limit: number | undefined) => (limit === undefined ? undefined : Math.max(1, Math.floor(limit / replicas)));
    return this.local.admit(
      tenantId,
      {
        maxConcurrency: part(limits.maxConcurrency),
        requestsPerMinute: part(limits.requestsPerMinute),
        tokensPerMinute: part(limits.tokensPerMinute),
      },
      inputTokens,
    );
  }
}

const limitNames = ["max_concurrency", "requests_per_minute", "tokens_per_minute"] as const;

const unlimited: TenantCharge = { chargeOutput: () => undefined, release: () => undefined, refund: () => undefined };

interface TenantCommands {
  infermeshTenantAdmit(...args: (string | number)[]): Promise<unknown>;
  infermeshTenantTake(...args: (string | number)[]): Promise<unknown>;
  infermeshTenantRefund(...args: (string | number)[]): Promise<unknown>;
  infermeshTenantRelease(...args: (string | number)[]): Promise<unknown>;
}

/** An idle allowance is full again within a minute; its key outlives that, then goes. */
const allowanceTtlMs = 120_000;

/** The allowance functions every script shares: the local MinuteBucket's arithmetic. */
const allowance = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function level(key, perMinute)
  local v = redis.call('HMGET', key, 'available', 'at')
  if not v[1] then return perMinute end
  return math.min(perMinute, tonumber(v[1]) + (now - tonumber(v[2])) * perMinute / 60000)
end
local function store(key, available)
  redis.call('HSET', key, 'available', available, 'at', now)
  redis.call('PEXPIRE', key, ${allowanceTtlMs})
end
`;

/**
 * KEYS: concurrency, requests, tokens, lease replicas. ARGV: replica, maxConcurrency,
 * requestsPerMinute, tokensPerMinute (-1 for none), input tokens.
 * Returns { 0, 0 } when charged, else { limit (1 concurrency, 2 requests, 3 tokens), retry after ms }.
 */
const admitScript = `${allowance}
local me, maxConc, rpm, tpm, input = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if maxConc >= 0 then
  local held, f = 0, redis.call('HGETALL', KEYS[1])
  for i = 1, #f, 2 do
    local expires = redis.call('ZSCORE', KEYS[4], f[i])
    if f[i] ~= me and (not expires or tonumber(expires) < now) then
      redis.call('HDEL', KEYS[1], f[i])
    else
      held = held + tonumber(f[i + 1])
    end
  end
  if held >= maxConc then return { 1, 1000 } end
end
local function wait(available, amount, perMinute)
  local needed = math.min(amount, perMinute)
  if available >= needed then return 0 end
  return math.ceil((needed - available) * 60000 / perMinute)
end
local requests, tokens
if rpm > 0 then
  requests = level(KEYS[2], rpm)
  local w = wait(requests, 1, rpm)
  if w > 0 then return { 2, w } end
end
if tpm > 0 then
  tokens = level(KEYS[3], tpm)
  local w = wait(tokens, input, tpm)
  if w > 0 then return { 3, w } end
end
if rpm > 0 then store(KEYS[2], requests - 1) end
if tpm > 0 then store(KEYS[3], tokens - input) end
if maxConc >= 0 then
  redis.call('HINCRBY', KEYS[1], me, 1)
  redis.call('PEXPIRE', KEYS[1], 86400000)
end
return { 0, 0 }
`;

/** KEYS: tokens. ARGV: tokensPerMinute, amount. Takes into debt. */
const takeScript = `${allowance}
local tpm, amount = tonumber(ARGV[1]), tonumber(ARGV[2])
if tpm > 0 then store(KEYS[1], level(KEYS[1], tpm) - amount) end
return 0
`;

/** KEYS: requests, tokens. ARGV: requestsPerMinute, tokensPerMinute (-1 for none), input tokens. */
const refundScript = `${allowance}
local rpm, tpm, input = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if rpm > 0 then store(KEYS[1], math.min(rpm, level(KEYS[1], rpm) + 1)) end
if tpm > 0 then store(KEYS[2], math.min(tpm, level(KEYS[2], tpm) + input)) end
return 0
`;

/** KEYS: concurrency. ARGV: replica, requests released. */
const releaseScript = `
if redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2])) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`;

import type { FastifyReply, FastifyRequest } from "fastify";
import type { ResolvedGeneration } from "../flow/request.js";
import { bypassRequested, type CacheOutcome, cacheKey, canonicalJson, isDeterministic } from "../response-cache/response-cache.js";
import type { HttpDeps } from "./deps.js";
import { traceFields } from "../../services/common/telemetry/tracing.js";

/** Body fields that change how an answer is delivered, not what it is. */
const deliveryFields = new Set(["stream", "stream_options", "user"]);

/**
 * The response-cache key of a whole-answer request, or undefined when the cache must
 * not be used: no cache configured, a key without cache rights, `Cache-Control:
 * no-cache`, or a request that samples (no seed, temperature not 0). Answers are
 * never shared between tenants.
 */
export function responseCacheKey(
  deps: HttpDeps,
  request: FastifyRequest,
  resolved: ResolvedGeneration,
  body: Record<string, unknown> & { temperature?: number | null; seed?: number | null },
): string | undefined {
  const cache = deps.cache();
  if (!cache || (request.identity && !request.identity.responseCache)) return undefined;
  const decided = (outcome: CacheOutcome) => {
    cache.count(outcome);
    deps.events("response_cache", { request_id: request.id, ...traceFields(request.trace?.span), outcome });
  };
  if (bypassRequested(request.headers["cache-control"])) {
    decided("bypass");
    return undefined;
  }
  if (!isDeterministic(body)) {
    decided("not_deterministic");
    return undefined;
  }
  const answerFields = Object.fromEntries(Object.entries(body).filter(([key]) => !deliveryFields.has(key)));
  const scope = [
    request.routeOptions.url,
    resolved.caller.tenantId,
    resolved.model,
    ...resolved.alternativeModels,
    resolved.values.sampling.maxTokens,
  ].join("|");
  return cacheKey(scope, canonicalJson(answerFields));
}

/**
 * Answers from the cache when it holds `key`: the stored body with a fresh id and
 * creation time. Returns whether it answered.
 */
export async function replyFromCache(
  deps: HttpDeps,
  key: string | undefined,
  reply: FastifyReply,
  fresh: { id: string; created: number },
): Promise<boolean> {
  const cache = deps.cache();
  if (key === undefined || !cache) return false;
  const cached = await cache.get(key);
  deps.events("response_cache", {
    request_id: reply.request.id,
    ...traceFields(reply.request.trace?.span),
    outcome: cached === undefined ? "miss" : "hit",
  });
  reply.header("x-infermesh-cache", cached === undefined ? "miss" : "hit");
  if (cached === undefined) return false;
  await reply.type("application/json; charset=utf-8").send({ ...JSON.parse(cached), ...fresh });
  return true;
}

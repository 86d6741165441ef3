import { setTimeout as sleep } from "node:timers/promises";

/** The fetch the readiness checks use; tests pass their own. */
export type Fetch = (url: string, init: { signal: AbortSignal }) => Promise<Response>;

/** How long one probe may take: a gateway that hangs is not ready. */
const probeTimeoutMs = 2_000;

/**
 * Polls the gateway's /readyz until it answers 200 (a model is served) and resolves
 * true, or resolves false once `signal` aborts. Anything else, refused connections and
 * 503s alike, is one more wait; `onStillWaiting` hears every `stillWaitingMs`.
 */
export async function waitUntilReady(options: {
  readonly baseUrl: string;
  readonly signal: AbortSignal;
  readonly onStillWaiting: () => void;
  readonly intervalMs?: number;
  readonly stillWaitingMs?: number;
  readonly fetch?: Fetch;
}): Promise<boolean> {
  const get = options.fetch ?? fetch;
  const intervalMs = options.intervalMs ?? 250;
  const stillWaitingEvery = Math.max(1, Math.round((options.stillWaitingMs ?? 10_000) / intervalMs));
  for (let attempt = 1; !options.signal.aborted; attempt += 1) {
    const signal = AbortSignal.any([options.signal, AbortSignal.timeout(probeTimeoutMs)]);
    const ready = await get(`${options.baseUrl}/readyz`, { signal }).then(
      async (response) => {
        await response.body?.cancel();
        return response.status === 200;
      },
      () => false,
    );
    if (ready) return true;
    if (attempt % stillWaitingEvery === 0) options.onStillWaiting();
    await sleep(intervalMs, undefined, { signal: options.signal }).catch(() => undefined);
  }
  return false;
}

/**
 * What the ready line says of the served models, from `GET /v1/models` without a key:
 * their ids when listing is open, else why they cannot be listed. Never throws, and
 * never names a key.
 */
export async function describeModels(baseUrl: string, get: Fetch = fetch): Promise<string> {
  let response: Response;
  try {
    response = await get(`${baseUrl}/v1/models`, { signal: AbortSignal.timeout(probeTimeoutMs) });
  } catch (error) {
    return `models: could not be listed (${error instanceof Error ? error.message : String(error)})`;
  }
  if (response.status === 401 || response.status === 403) {
    await response.body?.cancel();
    return "models: listing needs an API key (the gateway's auth is required)";
  }
  if (!response.ok) {
    await response.body?.cancel();
    return `models: could not be listed (HTTP ${response.status})`;
  }
  const body = (await response.json().catch(() => undefined)) as { data?: unknown } | undefined;
  const ids = Array.isArray(body?.data) ? body.data.map((model) => (model as { id?: unknown } | null)?.id) : undefined;
  if (!ids?.every((id) => typeof id === "string")) return "models: could not be listed (an answer without a model list)";
  return `models: ${ids.length > 0 ? ids.join(", ") : "none yet"}`;
}

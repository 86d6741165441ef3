/** Exponential backoff with full jitter, for reconnecting long-lived streams. */
export interface BackoffOptions {
  /** First delay. */
  readonly initialMs: number;
  /** Largest delay. */
  readonly maxMs: number;
  /** A connection that lived this long resets the delay to initialMs. */
  readonly resetAfterMs: number;
}

export const defaultBackoff: BackoffOptions = Object.freeze({ initialMs: 100, maxMs: 5_000, resetAfterMs: 10_000 });

/** Resolves after `ms`, or at once (without throwing) when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Runs `connect` until `signal` aborts, waiting a growing, jittered delay after each
 * failure or end. `connect` should resolve or throw when its stream ends.
 */
export async function keepConnected(
  connect: (signal: AbortSignal) => Promise<void>,
  signal: AbortSignal,
  onDisconnect: (error: unknown, retryInMs: number, failuresInARow: number) => void,
  options: BackoffOptions = defaultBackoff,
): Promise<void> {
  let ceilingMs = options.initialMs;
  let failuresInARow = 0;
  while (!signal.aborted) {
    const startedAt = Date.now();
    let failure: unknown;
    try {
      await connect(signal);
    } catch (error) {
      failure = error;
    }
    if (signal.aborted) return;
    if (Date.now() - startedAt >= options.resetAfterMs) {
      ceilingMs = options.initialMs;
      failuresInARow = 0;
    }
    failuresInARow += 1;
    const delayMs = Math.round(ceilingMs / 2 + (Math.random() * ceilingMs) / 2);
    onDisconnect(failure, delayMs, failuresInARow);
    await sleep(delayMs, signal);
    ceilingMs = Math.min(options.maxMs, ceilingMs * 2);
  }
}

/** A one-line description of a stream failure, for logs (no stack). */
export function describeFailure(error: unknown): string {
  if (error === undefined) return "the stream ended";
  return error instanceof Error ? error.message : String(error);
}

/**
 * Logs a lost stream: the first failure of a streak and every tenth at warn, the rest
 * at debug, so a peer that is still starting does not flood the log.
 */
export function logReconnect(
  logger: { warn(object: object, message: string): void; debug(object: object, message: string): void },
  message: string,
): (error: unknown, retryInMs: number, failuresInARow: number) => void {
  return (error, retryInMs, failuresInARow) => {
    const fields = { reason: describeFailure(error), retryInMs, failuresInARow };
    if (failuresInARow === 1 || failuresInARow % 10 === 0) logger.warn(fields, message);
    else logger.debug(fields, message);
  };
}

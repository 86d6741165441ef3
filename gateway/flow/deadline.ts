import { Status } from "nice-grpc";
import { ApiError } from "../errors.js";

/** A request's signal bounded by its deadline. */
export interface Deadline {
  readonly signal: AbortSignal;
  /** Turns the cancellation the deadline caused into DEADLINE_EXCEEDED; other errors pass. */
  failure(error: unknown): unknown;
  /** Stops the timer and the link to the caller's signal. */
  clear(): void;
}

/** `signal`, or the request's deadline, whichever comes first. */
export function withDeadline(signal: AbortSignal, timeoutMs: number): Deadline {
  const controller = new AbortController();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    controller.abort(new Error("deadline exceeded"));
  }, timeoutMs);
  const onAbort = () => controller.abort(signal.reason);
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return {
    signal: controller.signal,
    failure(error: unknown): unknown {
      return expired
        ? new ApiError(Status.DEADLINE_EXCEEDED, `The request took longer than its deadline of ${timeoutMs} ms.`, { code: "timeout" })
        : error;
    },
    clear() {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    },
  };
}

/** Runs `work` under the request's deadline; a deadline that fired is its failure. */
export async function underDeadline<T>(signal: AbortSignal, timeoutMs: number, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const deadline = withDeadline(signal, timeoutMs);
  try {
    return await work(deadline.signal);
  } catch (error) {
    throw deadline.failure(error);
  } finally {
    deadline.clear();
  }
}

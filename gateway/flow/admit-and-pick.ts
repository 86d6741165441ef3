import { Status } from "nice-grpc";
import type { PickResponse } from "../../gen/infermesh/router/v1/router_service.js";
import { ApiError } from "../errors.js";
import { type AdmissionSlot, acquireSlot } from "../mesh/admission-slot.js";
import { pickWorkers } from "../mesh/generation.js";
import type { FlowDeps } from "./deps.js";
import { acquireRequestOf, pickRequestOf, type Resolution, type RequestSize } from "./request.js";
import type { GenerationValues } from "../validation/generation.js";

/** A pick older than this when the slot is granted is asked for again: the fleet moved on. */
const freshPickMs = 50;

/** Fails with NOT_FOUND for a model no worker ever served, UNAVAILABLE for one that is away. */
export async function requireModel(deps: FlowDeps, request: Resolution, signal: AbortSignal): Promise<void> {
  const { model } = request;
  if (await deps.catalog.find(model, signal)) {
    request.observation?.served(model);
    return;
  }
  if (deps.catalog.servedBefore(model)) {
    throw new ApiError(Status.UNAVAILABLE, `No worker is serving \`${model}\` right now; retry shortly.`, {
      code: "model_unavailable",
      retryAfterMs: 1_000,
    });
  }
  throw new ApiError(Status.NOT_FOUND, `The model \`${model}\` does not exist or is not served right now.`, {
    param: "model",
    code: "model_not_found",
  });
}

/** A granted slot and the workers to try, in order. */
export interface Admitted {
  readonly slot: AdmissionSlot;
  readonly pick: PickResponse;
}

/**
 * Admission and the router's pick for one request, asked at once: a request granted
 * at once (the common case) then pays for one round trip, not two. A pick that went
 * stale in the queue is asked for again. The slot is released on every failure here.
 * `values` gives the router the prompt's prefix (generations only).
 */
export async function admitAndPick(
  deps: FlowDeps,
  request: Resolution,
  size: RequestSize,
  values: GenerationValues | undefined,
  signal: AbortSignal,
): Promise<Admitted> {
  const pickRequest = pickRequestOf(request, size, values);
  const call = { signal, trace: request.observation?.trace };
  const earlyPick = pickWorkers(deps.clients, pickRequest, call);
  earlyPick.catch(() => undefined);
  const slot = await acquireSlot(deps.clients, acquireRequestOf(request, size), call);
  try {
    const pick = slot.queuedMs > freshPickMs ? await pickWorkers(deps.clients, pickRequest, call) : await earlyPick;
    request.observation?.admitted(pick);
    return { slot, pick };
  } catch (error) {
    slot.release();
    throw error;
  }
}

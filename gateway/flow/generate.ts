import { generate, type GenerationEvent } from "../mesh/generation.js";
import { OutputReport } from "../mesh/output-report.js";
import { admitAndPick, requireModel } from "./admit-and-pick.js";
import { withDeadline } from "./deadline.js";
import type { FlowDeps } from "./deps.js";
import type { RequestObservation } from "../observability/request-observation.js";
import { generateRequestOf, type ResolvedGeneration, sizeOf } from "./request.js";
import { shareKey } from "./shared-generations.js";

/**
 * The events of a request's generation: its own, or, when identical deterministic
 * requests share generations, the one already running for an identical request.
 */
export function runGeneration(deps: FlowDeps, request: ResolvedGeneration, clientSignal: AbortSignal): AsyncGenerator<GenerationEvent> {
  const key = deps.shared && shareKey(request);
  const events =
    !deps.shared || key === undefined
      ? generateOnce(deps, request, clientSignal)
      : deps.shared.run(key, (signal) => generateOnce(deps, request, signal), clientSignal);
  return request.observation ? observed(events, request.observation) : events;
}

/** The events as the caller reads them, each noted by the request's observation (a failure too). */
async function* observed(events: AsyncGenerator<GenerationEvent>, observation: RequestObservation): AsyncGenerator<GenerationEvent> {
  try {
    for await (const event of events) {
      observation.event(event);
      yield event;
    }
  } catch (error) {
    observation.fail(error);
    throw error;
  }
}

/**
 * Drives one generation through the mesh: model check, admission, routing, the
 * worker. The admission slot is released on every path: when the generator finishes,
 * fails or is closed early (client disconnect).
 */
async function* generateOnce(deps: FlowDeps, request: ResolvedGeneration, clientSignal: AbortSignal): AsyncGenerator<GenerationEvent> {
  const deadline = withDeadline(clientSignal, deps.requestTimeoutMs);
  const signal = deadline.signal;
  try {
    await requireModel(deps, request, signal);
    const { slot, pick } = await admitAndPick(deps, request, sizeOf(request), request.values, signal);
    // Output tokens go to admission as they stream: the tenant's tokens per minute pay for them.
    const output = new OutputReport(slot);
    try {
      const onRetry = () => request.observation?.retried();
      const call = { signal, trace: request.observation?.trace };
      for await (const event of generate(deps.clients, generateRequestOf(request), pick, call, onRetry)) {
        if (event.$case === "delta") output.add(event.value.tokenCount);
        if (event.$case === "finished") {
          // Before the caller sees the end: its next request must find this one's output charged.
          output.finish(event.value.usage?.completionTokens);
        }
        yield event;
      }
    } finally {
      output.finish();
      slot.release();
    }
  } catch (error) {
    throw deadline.failure(error);
  } finally {
    deadline.clear();
  }
}

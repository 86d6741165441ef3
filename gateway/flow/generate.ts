import { trace } from "@opentelemetry/api";
import { generate, type GenerationEvent } from "../mesh/generation.js";
import { OutputReport } from "../mesh/output-report.js";
import { admitAndPick, requireModel } from "./admit-and-pick.js";
import { withDeadline } from "./deadline.js";
import type { FlowDeps } from "./deps.js";
import { generateRequestOf, type ResolvedGeneration, sizeOf } from "./request.js";
import { shareKey } from "./shared-generations.js";

/**
 * The events of a request's generation: its own, or, when identical deterministic
 * requests share generations, the one already running for an identical request.
 */
export function runGeneration(deps: FlowDeps, request: ResolvedGeneration, clientSignal: AbortSignal): AsyncGenerator<GenerationEvent> {
  const key = deps.shared && shareKey(request);
  if (!deps.shared || key === undefined) return generateOnce(deps, request, clientSignal);
  return deps.shared.run(key, (signal) => generateOnce(deps, request, signal), clientSignal);
}

/**
 * Drives one generation through the mesh: model check, admission, routing, the
 * worker. The admission slot is released on every path: when the generator finishes,
 * fails or is closed early (client disconnect).
 */
async function* generateOnce(deps: FlowDeps, request: ResolvedGeneration, clientSignal: AbortSignal): AsyncGenerator<GenerationEvent> {
  const arrivedAt = performance.now();
  const deadline = withDeadline(clientSignal, deps.requestTimeoutMs);
  const signal = deadline.signal;
  const span = trace.getActiveSpan();
  span?.setAttributes({
    "gen_ai.operation.name": request.operation,
    "gen_ai.request.model": request.model,
    "infermesh.request_id": request.requestId,
  });
  try {
    await requireModel(deps, request.model, signal);
    const { slot, pick } = await admitAndPick(deps, request, sizeOf(request), request.values, signal);
    // Output tokens go to admission as they stream: the tenant's tokens per minute pay for them.
    const output = new OutputReport(slot);
    try {
      let firstText = true;
      for await (const event of generate(deps.clients, generateRequestOf(request), pick, signal)) {
        if (event.$case === "delta") {
          output.add(event.value.tokenCount);
          if (firstText) {
            firstText = false;
            deps.metrics.timeToFirstTokenSeconds.observe((performance.now() - arrivedAt) / 1000);
          }
        }
        if (event.$case === "finished") {
          // Before the caller sees the end: its next request must find this one's output charged.
          output.finish(event.value.usage?.completionTokens);
          if (event.value.usage) {
            span?.setAttributes({
              "gen_ai.usage.input_tokens": event.value.usage.promptTokens,
              "gen_ai.usage.output_tokens": event.value.usage.completionTokens,
            });
          }
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

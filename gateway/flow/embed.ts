import { withWorker } from "../mesh/generation.js";
import { admitAndPick, requireModel } from "./admit-and-pick.js";
import { underDeadline } from "./deadline.js";
import type { FlowDeps } from "./deps.js";
import { embeddingSizeOf, type ResolvedEmbedding } from "./request.js";

/** One embedding per input and the tokens they took, from the worker that computed them. */
export interface EmbeddingResult {
  readonly vectors: readonly (readonly number[])[];
  readonly promptTokens: number;
}

/** Runs an embeddings request through admission and routing to a worker's Embed. */
export function runEmbedding(deps: FlowDeps, request: ResolvedEmbedding, clientSignal: AbortSignal): Promise<EmbeddingResult> {
  return underDeadline(clientSignal, deps.requestTimeoutMs, async (signal) => {
    await requireModel(deps, request, signal);
    const { slot, pick } = await admitAndPick(deps, request, embeddingSizeOf(request), undefined, signal);
    try {
      const response = await withWorker(deps.clients, pick, { signal, trace: request.observation?.trace }, (worker, call) =>
        worker.embed({ model: request.model, inputs: [...request.inputs] }, call),
      );
      request.observation?.embedded(response.promptTokens);
      return { vectors: response.embeddings.map((embedding) => embedding.values), promptTokens: response.promptTokens };
    } finally {
      slot.release();
    }
  });
}

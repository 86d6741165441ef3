import type { IndexedToolCall } from "../../gen/infermesh/worker/v1/worker_service.js";

/**
 * Fragments as OpenAI's stream sends them: a call's first chunk with its index, id,
 * type and name, later chunks with the index and more arguments. Consecutive fragments
 * of one call are joined into one entry.
 */
export function toolCallDeltas(fragments: readonly IndexedToolCall[]) {
  const deltas: { index: number; id?: string; type?: "function"; function: { name?: string; arguments: string } }[] = [];
  for (const { index, call } of fragments) {
    if (!call) continue;
    const last = deltas.at(-1);
    if (last && last.index === index && call.id === "") {
      last.function.arguments += call.arguments;
    } else if (call.id !== "") {
      deltas.push({ index, id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } });
    } else {
      deltas.push({ index, function: { arguments: call.arguments } });
    }
  }
  return deltas;
}

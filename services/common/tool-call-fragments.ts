import type { ToolCall } from "../../gen/infermesh/common/v1/common.js";
import type { IndexedToolCall } from "../../gen/infermesh/worker/v1/worker_service.js";

/**
 * Tool calls arrive from a worker as fragments while they are generated: the first
 * fragment of a call (at its index among the choice's calls) carries its id and name,
 * later ones with an empty id only append to its arguments. Joins one fragment into
 * the calls gathered so far.
 */
export function joinToolCall(calls: ToolCall[], fragment: IndexedToolCall): void {
  const part = fragment.call;
  if (!part) return;
  // Indexes come in order; one past the end starts the next call (never a hole).
  const index = Math.min(fragment.index, calls.length);
  const known = calls[index];
  if (known === undefined || part.id !== "") {
    calls[index] = { id: part.id, name: part.name, arguments: part.arguments };
    return;
  }
  known.arguments += part.arguments;
}

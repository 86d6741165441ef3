import type { Filter } from "../plugin.js";

/** Workers at least this healthy (Fleet.health; the seeds' 0.7), while any are. */
export function minHealthFilter(minHealth: number): Filter {
  return { name: "min-health", keeps: (_member, _model, health) => health >= minHealth };
}

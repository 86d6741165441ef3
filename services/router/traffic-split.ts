import type { SplitTarget, TrafficSplit } from "../../gen/infermesh/router/v1/router_service.js";

/**
 * Canary and traffic splits: per requested model, weights across model versions. A
 * session's version comes from a hash of the session id, so it is the same on every
 * router replica and after a restart, and the targets take consecutive slices of the
 * hash range in their given order, so as the weights ramp (10 % → 50 % → 100 %) a
 * session only ever moves one way. A request without a session draws at random.
 */
export class TrafficSplits {
  private readonly splits = new Map<string, { targets: readonly SplitTarget[]; total: number }>();

  constructor(private readonly random: () => number = Math.random) {}

  /** Sets or (with no targets) removes `split`; returns what is wrong with it instead, if anything. */
  set(split: TrafficSplit): string | undefined {
    const problem = problemOf(split);
    if (problem) return problem;
    if (split.targets.length === 0) this.splits.delete(split.model);
    else this.splits.set(split.model, { targets: split.targets.map((target) => ({ ...target })), total: sumOf(split.targets) });
    return undefined;
  }

  /** Replaces every split with `splits` (the shared store's); returns those refused, and why. */
  replaceAll(splits: readonly TrafficSplit[]): { model: string; problem: string }[] {
    const refused: { model: string; problem: string }[] = [];
    const valid = splits.filter((split) => {
      const problem = problemOf(split);
      if (problem) refused.push({ model: split.model, problem });
      return problem === undefined && split.targets.length > 0;
    });
    this.splits.clear();
    for (const split of valid) this.set(split);
    return refused;
  }

  list(): TrafficSplit[] {
    return [...this.splits.entries()].map(([model, { targets }]) => ({ model, targets: targets.map((target) => ({ ...target })) }));
  }

  /**
   * The models to try for a request for `model`: the session's version first, then the
   * others by weight (a version with no serving worker passes its share on). Undefined
   * when `model` has no split.
   */
  route(model: string, sessionId: string): string[] | undefined {
    const split = this.splits.get(model);
    if (!split) return undefined;
    const point = (sessionId === "" ? this.random() : sessionFraction(model, sessionId)) * split.total;
    let reached = 0;
    let chosen = split.targets.at(-1)!;
    for (const target of split.targets) {
      reached += target.weight;
      if (point < reached) {
        chosen = target;
        break;
      }
    }
    const others = split.targets.filter((target) => target !== chosen && target.weight > 0).sort((a, b) => b.weight - a.weight);
    return [chosen.model, ...others.map((target) => target.model)];
  }
}

function problemOf(split: TrafficSplit): string | undefined {
  if (split.model === "") return "split.model must be set";
  const seen = new Set<string>();
  for (const target of split.targets) {
    if (target.model === "") return "every target needs a model";
    if (seen.has(target.model)) return `target ${JSON.stringify(target.model)} is listed twice`;
    seen.add(target.model);
  }
  if (split.targets.length > 0 && sumOf(split.targets) === 0) return "at least one target needs a positive weight";
  return undefined;
}

const sumOf = (targets: readonly SplitTarget[]) => targets.reduce((sum, target) => sum + target.weight, 0);

/** A stable point in [0,1) for a session of a model (FNV-1a, 32 bits). */
function sessionFraction(model: string, sessionId: string): number {
  let hash = 0x811c9dc5;
  const key = `${model}\u0000${sessionId}`;
  for (let index = 0; index < key.length; index += 1) {
    hash ^= key.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) / 4_294_967_296;
}

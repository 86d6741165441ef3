import { randomUUID } from "node:crypto";
import { Counter, Gauge, type Registry } from "prom-client";
import {
  type Rollout,
  type RolloutEvent,
  RolloutState,
  type RolloutSpec,
  type TrafficSplit,
} from "../../../gen/infermesh/router/v1/router_service.js";
import { type DecisionEvents, noDecisionEvents } from "../../common/decision-events.js";
import type { Logger } from "../../common/logger.js";
import { judge } from "./judge.js";
import type { OutcomeWindows } from "./outcome-window.js";
import { type ResolvedSpec, resolveSpec, sameSpec, specMessage } from "./spec.js";
import type { DriverRole, RolloutStore } from "./store.js";

/** Events a rollout keeps: the newest. */
const eventsKept = 50;
/** A judgement that changes nothing is saved (for the other replicas' lists) at most this often. */
const judgementSaveMs = 5_000;

export interface RolloutControllerDeps {
  readonly store: RolloutStore;
  readonly windows: OutcomeWindows;
  /** Puts a split in force here and, in the shared mode, on every replica. */
  readonly applySplit: (split: TrafficSplit) => Promise<void>;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly events?: DecisionEvents;
  /** The wall clock in ms: rollouts' times outlive the process. */
  readonly now?: () => number;
  /** How often the driver judges: the latest a broken canary is noticed after its window has enough samples. */
  readonly tickMs?: number;
  /**
   * How long after start this replica leaves driving to others: until its workers have
   * registered and reported, it would judge on a partial fleet and no outcomes.
   */
  readonly warmupMs?: number;
}

/**
 * Canary rollouts: per model, a split from the baseline to the canary that moves by
 * itself. Every tick the driver judges each running rollout's canary against its
 * baseline over the window (generations since the step began, at most `windowMs`
 * back): a broken SLO sends the canary back to 0 % at once, with the reason recorded;
 * a step that has held `stepHoldMs` and passes moves to the next, and the last (100 %)
 * ends the rollout as succeeded. One replica drives (the store's lease); while Redis
 * is unreachable every replica only rolls back, on its own split, and never promotes.
 */
export class RolloutController {
  private rollouts = new Map<string, Rollout>();
  private role: DriverRole = "follower";
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> = Promise.resolve();
  private startedAt = Number.NEGATIVE_INFINITY;
  private readonly savedAt = new Map<string, number>();
  /** Rollouts this replica started or drove since it last became the driver: nothing to resume. */
  private readonly drivenHere = new Set<string>();
  private readonly now: () => number;
  private readonly events: DecisionEvents;
  private readonly transitions: Counter<"model" | "transition">;

  constructor(private readonly deps: RolloutControllerDeps) {
    this.now = deps.now ?? Date.now;
    this.events = deps.events ?? noDecisionEvents;
    const registers = [deps.registry];
    this.transitions = new Counter({
      name: "infermesh_router_rollout_transitions_total",
      help: "Rollout transitions this replica made: started, promoted, succeeded, rolled_back, stopped",
      labelNames: ["model", "transition"] as const,
      registers,
    });
    const rollouts = () => this.rollouts.values();
    new Gauge({
      name: "infermesh_router_rollout_canary_percent",
      help: "The canary's share of its model's traffic, per rollout",
      labelNames: ["model", "canary"] as const,
      registers,
      collect() {
        this.reset();
        for (const { spec, canaryPercent } of rollouts()) this.set({ model: spec!.model, canary: spec!.canary }, canaryPercent);
      },
    });
    new Gauge({
      name: "infermesh_router_rollout_state",
      help: "1 for each rollout's state (progressing, succeeded, rolled_back)",
      labelNames: ["model", "state"] as const,
      registers,
      collect() {
        this.reset();
        for (const { spec, state } of rollouts()) this.set({ model: spec!.model, state: stateName(state) }, 1);
      },
    });
    new Gauge({
      name: "infermesh_router_rollout_judged",
      help: "The last judgement's figures per rollout and version (canary, baseline): samples, error_ratio, ttft_p95_seconds, itl_p95_seconds",
      labelNames: ["model", "version", "figure"] as const,
      registers,
      collect() {
        this.reset();
        for (const { spec, lastJudgement } of rollouts()) {
          for (const version of ["canary", "baseline"] as const) {
            const figures = lastJudgement?.[version];
            if (!figures) continue;
            const labels = { model: spec!.model, version };
            this.set({ ...labels, figure: "samples" }, figures.samples);
            this.set({ ...labels, figure: "error_ratio" }, figures.errorRate);
            this.set({ ...labels, figure: "ttft_p95_seconds" }, figures.ttftP95Ms / 1000);
            this.set({ ...labels, figure: "itl_p95_seconds" }, figures.itlP95Ms / 1000);
          }
        }
      },
    });
    const role = () => this.role;
    new Gauge({
      name: "infermesh_router_rollout_driver",
      help: "1 when this replica drives the rollouts, 0 when another does or Redis cannot tell",
      registers,
      collect() {
        this.set(role() === "driver" ? 1 : 0);
      },
    });
  }

  /** Loads the stored rollouts and starts judging. */
  async start(): Promise<void> {
    this.startedAt = this.now();
    await this.reread();
    this.deps.store.onChange(() => void this.reread());
    this.timer = setInterval(() => {
      // One tick at a time; a failed one is logged, and the next runs anyway.
      this.ticking = this.ticking
        .then(() => this.tick())
        .catch((error: unknown) => this.deps.logger.error({ err: error }, "a rollout tick failed"));
    }, this.deps.tickMs ?? 1_000);
    this.timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.ticking;
    await this.deps.store.close();
  }

  list(): Rollout[] {
    return [...this.rollouts.values()].sort((a, b) => a.spec!.model.localeCompare(b.spec!.model));
  }

  /** Whether a running rollout drives `model`'s split: a person's split would fight it. */
  drives(model: string): boolean {
    return this.rollouts.get(model)?.state === RolloutState.ROLLOUT_STATE_PROGRESSING;
  }

  /**
   * Starts a rollout (a running one with the same spec is returned as it is), or says
   * what is wrong with the spec. `id` names it: the same on every replica asked at once.
   */
  async set(asked: RolloutSpec, id = ""): Promise<Rollout | { problem: string }> {
    const spec = resolveSpec(asked);
    if ("problem" in spec) return spec;
    if (id.length > 64) return { problem: "rollout_id is longer than 64 characters" };
    const running = this.rollouts.get(spec.model);
    if (running?.state === RolloutState.ROLLOUT_STATE_PROGRESSING && sameSpec(resolvedOf(running), spec)) return running;
    const now = this.now();
    const percent = spec.stepPercents[0]!;
    const rollout: Rollout = {
      id: id || randomUUID(),
      spec: specMessage(spec),
      state: RolloutState.ROLLOUT_STATE_PROGRESSING,
      step: 0,
      canaryPercent: percent,
      stepStartedUnixMs: now,
      startedUnixMs: now,
      reason: "",
      lastJudgement: undefined,
      baselineReference: undefined,
      events: [
        {
          atUnixMs: now,
          kind: "started",
          canaryPercent: percent,
          detail: `${spec.canary} against ${spec.baseline}, steps ${spec.stepPercents.join(" → ")} %`,
        },
      ],
    };
    await this.deps.store.replace(rollout);
    this.drivenHere.add(rollout.id);
    this.keep(rollout);
    await this.deps.applySplit(splitOf(rollout));
    this.record(rollout, "started");
    return rollout;
  }

  /** Stops and forgets `model`'s rollout: a running one goes back to the baseline. Undefined when there is none. */
  async delete(model: string): Promise<Rollout | undefined> {
    const rollout = this.rollouts.get(model);
    if (!rollout) return undefined;
    const running = rollout.state === RolloutState.ROLLOUT_STATE_PROGRESSING;
    const stopped = withEvent(
      { ...rollout, canaryPercent: running ? 0 : rollout.canaryPercent },
      this.now(),
      "stopped",
      "stopped by an admin",
    );
    await this.deps.store.remove(model);
    this.rollouts.delete(model);
    this.watch();
    if (running) await this.deps.applySplit(splitOf(stopped));
    this.record(stopped, "stopped");
    return stopped;
  }

  /** One look at every running rollout: roll back, promote, or wait. */
  async tick(): Promise<void> {
    if (this.now() - this.startedAt < (this.deps.warmupMs ?? 0)) return;
    const was = this.role;
    this.role = await this.deps.store.holdDriver();
    if (this.role !== "driver") this.drivenHere.clear();
    if (this.role === "follower") return;
    if (this.role === "driver" && was !== "driver") await this.takeOver();
    for (const rollout of this.list()) {
      if (rollout.state === RolloutState.ROLLOUT_STATE_PROGRESSING) await this.advance(rollout);
    }
  }

  /** This replica now drives: the stored rollouts are the truth, and their splits are put in force again. */
  private async takeOver(): Promise<void> {
    await this.reread();
    for (const rollout of this.list()) {
      if (rollout.state !== RolloutState.ROLLOUT_STATE_PROGRESSING || this.drivenHere.has(rollout.id)) continue;
      const resumed = withEvent(rollout, this.now(), "resumed", "this router took over driving it");
      if ((await this.save(resumed)) === "saved") await this.deps.applySplit(splitOf(resumed));
      this.deps.logger.info({ model: resumed.spec!.model, canary_percent: resumed.canaryPercent }, "rollout resumed");
    }
  }

  private async advance(rollout: Rollout): Promise<void> {
    const spec = resolvedOf(rollout);
    const now = this.now();
    const since = Math.max(now - spec.windowMs, rollout.stepStartedUnixMs);
    const canary = this.deps.windows.figures(spec.canary, since);
    const baselineNow = this.deps.windows.figures(spec.baseline, since);
    const reference = baselineNow.samples >= spec.minSamples ? baselineNow : rollout.baselineReference;
    const judgement = judge(spec, canary, reference);
    const judged: Rollout = {
      ...rollout,
      baselineReference: reference,
      lastJudgement: { atUnixMs: now, canary, baseline: reference, passed: judgement.passed, verdict: judgement.verdict },
    };
    if (judgement.judged && !judgement.passed) {
      await this.rollBack(judged, judgement.verdict);
    } else if (judgement.passed && now - rollout.stepStartedUnixMs >= spec.stepHoldMs && this.role === "driver") {
      await this.promote(judged, spec, now);
    } else if (now - (this.savedAt.get(rollout.id) ?? 0) >= judgementSaveMs) {
      await this.save(judged);
    } else {
      this.keep(judged);
    }
  }

  private async rollBack(rollout: Rollout, why: string): Promise<void> {
    const rolledBack = withEvent(
      { ...rollout, state: RolloutState.ROLLOUT_STATE_ROLLED_BACK, canaryPercent: 0, reason: why },
      this.now(),
      "rolled_back",
      why,
    );
    // Back out even when the store cannot be reached: a broken canary must stop now.
    if ((await this.save(rolledBack)) === "refused") return;
    await this.deps.applySplit(splitOf(rolledBack));
    this.record(rolledBack, "rolled_back", why);
  }

  private async promote(rollout: Rollout, spec: ResolvedSpec, now: number): Promise<void> {
    const next = rollout.step + 1;
    const promoted =
      next >= spec.stepPercents.length
        ? withEvent(
            { ...rollout, state: RolloutState.ROLLOUT_STATE_SUCCEEDED, reason: "held every step" },
            now,
            "succeeded",
            "held every step",
          )
        : withEvent(
            { ...rollout, step: next, canaryPercent: spec.stepPercents[next]!, stepStartedUnixMs: now },
            now,
            "promoted",
            `step ${rollout.step + 1} held ${Math.round((now - rollout.stepStartedUnixMs) / 1000)} s and passed (${rollout.lastJudgement?.canary?.samples ?? 0} canary generations)`,
          );
    if ((await this.save(promoted)) !== "saved") return;
    if (promoted.canaryPercent !== rollout.canaryPercent) await this.deps.applySplit(splitOf(promoted));
    this.record(promoted, promoted.state === RolloutState.ROLLOUT_STATE_SUCCEEDED ? "succeeded" : "promoted");
  }

  /**
   * Saves the driver's change. "refused": an operator replaced or removed the rollout
   * meanwhile (they are read again); "unreachable": kept here only.
   */
  private async save(rollout: Rollout): Promise<"saved" | "refused" | "unreachable"> {
    let saved: boolean;
    try {
      saved = await this.deps.store.update(rollout);
    } catch {
      this.keep(rollout);
      return "unreachable";
    }
    if (!saved) {
      await this.reread();
      return "refused";
    }
    this.savedAt.set(rollout.id, this.now());
    this.drivenHere.add(rollout.id);
    this.keep(rollout);
    return "saved";
  }

  private keep(rollout: Rollout): void {
    this.rollouts.set(rollout.spec!.model, rollout);
    this.watch();
  }

  /** Reads the stored rollouts; a rollback made here while the store was unreachable stands. */
  private async reread(): Promise<void> {
    let stored: Rollout[];
    try {
      stored = await this.deps.store.load();
    } catch {
      return; // Unreachable: what is here stays; SharedRedis says so.
    }
    const next = new Map<string, Rollout>();
    for (const rollout of stored) {
      if (!rollout.spec || "problem" in resolveSpec(rollout.spec)) continue;
      const here = this.rollouts.get(rollout.spec.model);
      const rolledBackHere =
        here?.id === rollout.id &&
        here.state === RolloutState.ROLLOUT_STATE_ROLLED_BACK &&
        rollout.state === RolloutState.ROLLOUT_STATE_PROGRESSING;
      next.set(rollout.spec.model, rolledBackHere ? here : rollout);
      if (rolledBackHere && this.role === "driver") void this.deps.store.update(here).catch(() => undefined);
    }
    this.rollouts = next;
    this.watch();
  }

  /** The outcome windows keep the versions under a rollout, for its window. */
  private watch(): void {
    const models = new Map<string, number>();
    for (const rollout of this.rollouts.values()) {
      if (rollout.state !== RolloutState.ROLLOUT_STATE_PROGRESSING) continue;
      const spec = resolvedOf(rollout);
      for (const model of [spec.baseline, spec.canary]) models.set(model, Math.max(models.get(model) ?? 0, spec.windowMs));
    }
    this.deps.windows.watch(models);
  }

  private record(rollout: Rollout, transition: string, why?: string): void {
    const { model, baseline, canary } = rollout.spec!;
    this.transitions.inc({ model, transition });
    const fields = {
      model,
      baseline,
      canary,
      rollout_id: rollout.id,
      canary_percent: rollout.canaryPercent,
      ...(why ? { reason: why } : {}),
    };
    this.events(`rollout.${transition}`, fields);
    if (transition === "rolled_back") this.deps.logger.warn(fields, "rollout rolled back: the canary broke an SLO");
    else this.deps.logger.info(fields, `rollout ${transition}`);
  }
}

/** The split a rollout puts in force: the baseline, then the canary (a session only ever moves towards the canary). */
export function splitOf(rollout: Rollout): TrafficSplit {
  const { model, baseline, canary } = rollout.spec!;
  return {
    model,
    targets: [
      { model: baseline, weight: 100 - rollout.canaryPercent },
      { model: canary, weight: rollout.canaryPercent },
    ],
  };
}

/** A stored spec is complete (it was resolved before it was saved). */
function resolvedOf(rollout: Rollout): ResolvedSpec {
  const spec = resolveSpec(rollout.spec!);
  if ("problem" in spec) throw new Error(`a stored rollout is invalid: ${spec.problem}`);
  return spec;
}

function withEvent(rollout: Rollout, atUnixMs: number, kind: string, detail: string): Rollout {
  const event: RolloutEvent = { atUnixMs, kind, canaryPercent: rollout.canaryPercent, detail };
  return { ...rollout, events: [...rollout.events, event].slice(-eventsKept) };
}

export function stateName(state: RolloutState): string {
  switch (state) {
    case RolloutState.ROLLOUT_STATE_PROGRESSING:
      return "progressing";
    case RolloutState.ROLLOUT_STATE_SUCCEEDED:
      return "succeeded";
    case RolloutState.ROLLOUT_STATE_ROLLED_BACK:
      return "rolled_back";
    default:
      return "unspecified";
  }
}

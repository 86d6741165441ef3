import type { GenerationOutcomes, VersionFigures } from "../../../gen/infermesh/router/v1/router_service.js";
import { percentile } from "../../common/percentile.js";

/** Latency samples kept at most per model: the oldest reports go first beyond it. */
const samplesPerModel = 100_000;

/** A second's picks in which a split chose the model: how many, and how many went elsewhere. */
interface PickSecond {
  readonly second: number;
  chosen: number;
  passedOver: number;
}

interface Report {
  readonly atMs: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly ttftMs: readonly number[];
  readonly itlMs: readonly number[];
}

/**
 * How the generations of the models under a rollout ended, from every worker's load
 * reports, kept for the longest window a rollout judges over. Only watched models are
 * kept: a fleet's other models cost nothing.
 */
export class OutcomeWindows {
  private readonly byModel = new Map<string, Kept>();
  private keepMs = 0;

  /** `now`: the wall clock in ms, as the rollouts' times are. */
  constructor(private readonly now: () => number = Date.now) {}

  /** The models to keep outcomes of, and for how long; the others' are dropped. */
  watch(models: ReadonlyMap<string, number>): void {
    for (const model of this.byModel.keys()) if (!models.has(model)) this.byModel.delete(model);
    for (const model of models.keys()) if (!this.byModel.has(model)) this.byModel.set(model, { reports: [], samples: 0, picks: [] });
    this.keepMs = Math.max(0, ...models.values());
  }

  /** One worker's report. */
  record(outcomes: readonly GenerationOutcomes[]): void {
    const atMs = this.now();
    for (const outcome of outcomes) {
      const kept = this.byModel.get(outcome.model);
      if (!kept || outcome.succeeded + outcome.failed === 0) continue;
      kept.reports.push({
        atMs,
        succeeded: outcome.succeeded,
        failed: outcome.failed,
        ttftMs: outcome.timeToFirstTokenMs,
        itlMs: outcome.interTokenLatencyMs,
      });
      kept.samples += outcome.timeToFirstTokenMs.length + outcome.interTokenLatencyMs.length;
      this.prune(kept, atMs);
    }
  }

  /** A pick in which a split chose `chosen` and the scheduler placed the request on `placed`. */
  notePick(chosen: string, placed: string): void {
    const kept = this.byModel.get(chosen);
    if (!kept) return;
    const second = Math.floor(this.now() / 1000);
    let last = kept.picks.at(-1);
    if (last?.second !== second) {
      last = { second, chosen: 0, passedOver: 0 };
      kept.picks.push(last);
      while (kept.picks.length > 0 && kept.picks[0]!.second * 1000 < this.now() - this.keepMs - 1000) kept.picks.shift();
    }
    last.chosen += 1;
    if (placed !== chosen) last.passedOver += 1;
  }

  /** The model's figures over the reports after `sinceMs`. */
  figures(model: string, sinceMs: number): VersionFigures {
    const kept = this.byModel.get(model);
    if (kept) this.prune(kept, this.now());
    let succeeded = 0;
    let failed = 0;
    const ttft: number[] = [];
    const itl: number[] = [];
    for (const report of kept?.reports ?? []) {
      if (report.atMs <= sinceMs) continue;
      succeeded += report.succeeded;
      failed += report.failed;
      ttft.push(...report.ttftMs);
      itl.push(...report.itlMs);
    }
    let splitPicks = 0;
    let passedOver = 0;
    for (const second of kept?.picks ?? []) {
      if (second.second * 1000 <= sinceMs) continue;
      splitPicks += second.chosen;
      passedOver += second.passedOver;
    }
    const samples = succeeded + failed;
    return {
      samples,
      failed,
      errorRate: samples === 0 ? 0 : failed / samples,
      ttftP95Ms: p95(ttft),
      itlP95Ms: p95(itl),
      splitPicks,
      passedOver,
    };
  }

  private prune(kept: Kept, nowMs: number): void {
    let drop = 0;
    let samples = kept.samples;
    while (drop < kept.reports.length) {
      const report = kept.reports[drop]!;
      if (report.atMs >= nowMs - this.keepMs && samples <= samplesPerModel) break;
      samples -= report.ttftMs.length + report.itlMs.length;
      drop += 1;
    }
    if (drop > 0) {
      kept.reports.splice(0, drop);
      kept.samples = samples;
    }
  }
}

interface Kept {
  reports: Report[];
  samples: number;
  picks: PickSecond[];
}

/** The 95th percentile; 0 (unknown, as VersionFigures has it) with no values. */
const p95 = (values: readonly number[]) => percentile(values, 95) ?? 0;

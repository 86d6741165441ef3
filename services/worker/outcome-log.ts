import type { GenerationOutcomes } from "../../gen/infermesh/router/v1/router_service.js";

/** Latency samples a report carries at most per model and figure: a uniform sample beyond. */
const samplesPerReport = 256;

/** How one generation ended, as a canary rollout judges a model version. */
export interface GenerationOutcome {
  readonly model: string;
  readonly failed: boolean;
  /** Time to first token in ms; absent for a failure or when no token came. */
  readonly timeToFirstTokenMs?: number;
  /** Mean gap between tokens in ms; absent with fewer than two tokens. */
  readonly interTokenLatencyMs?: number;
}

/**
 * The outcomes of the generations that ended, for the router's canary rollouts. Like
 * the arrivals, each router replica reads its own log: every replica must learn of
 * every outcome, whichever replica drives the rollout.
 */
export class OutcomeLog {
  private readonly readers = new Set<OutcomeReader>();

  constructor(private readonly random: () => number = Math.random) {}

  record(outcome: GenerationOutcome): void {
    for (const reader of this.readers) reader.record(outcome);
  }

  /** A log of its own, for one router's reports. */
  reader(): OutcomeReader {
    const reader = new OutcomeReader(this.random);
    this.readers.add(reader);
    return reader;
  }

  /** The router replica is gone: its log is no longer kept. */
  release(reader: OutcomeReader): void {
    this.readers.delete(reader);
  }
}

/** One router's outcomes since its last report, per model: counts exact, latencies sampled. */
export class OutcomeReader {
  private byModel = new Map<string, Tally>();

  constructor(private readonly random: () => number) {}

  record(outcome: GenerationOutcome): void {
    let tally = this.byModel.get(outcome.model);
    if (!tally) {
      // A router that does not read (it is down) must not grow this without bound.
      if (this.byModel.size >= 64) return;
      tally = { succeeded: 0, failed: 0, ttft: new Sample(this.random), itl: new Sample(this.random) };
      this.byModel.set(outcome.model, tally);
    }
    if (outcome.failed) {
      tally.failed += 1;
      return;
    }
    tally.succeeded += 1;
    if (outcome.timeToFirstTokenMs !== undefined) tally.ttft.add(outcome.timeToFirstTokenMs);
    if (outcome.interTokenLatencyMs !== undefined) tally.itl.add(outcome.interTokenLatencyMs);
  }

  /** The outcomes since the last call, per model. */
  take(): GenerationOutcomes[] {
    const outcomes = [...this.byModel].map(([model, tally]) => ({
      model,
      succeeded: tally.succeeded,
      failed: tally.failed,
      timeToFirstTokenMs: tally.ttft.values,
      interTokenLatencyMs: tally.itl.values,
    }));
    this.byModel = new Map();
    return outcomes;
  }
}

interface Tally {
  succeeded: number;
  failed: number;
  ttft: Sample;
  itl: Sample;
}

/** A uniform sample of at most `samplesPerReport` values (reservoir sampling). */
class Sample {
  readonly values: number[] = [];
  private seen = 0;

  constructor(private readonly random: () => number) {}

  add(value: number): void {
    this.seen += 1;
    if (this.values.length < samplesPerReport) this.values.push(value);
    else {
      const slot = Math.floor(this.random() * this.seen);
      if (slot < samplesPerReport) this.values[slot] = value;
    }
  }
}

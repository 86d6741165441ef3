import type { GateSpec } from "./slo.js";
import type { Sample } from "./load.js";
import { percentile as percentileOf } from "../../services/common/percentile.js";

/** One SLO's check in one phase: what was measured beside what it must be. */
export interface Check {
  readonly slo: "ttftP95Ms" | "e2eP95Ms" | "itlP95Ms" | "errorRate" | "qpsFloor";
  readonly phase: string;
  readonly measured: number | null;
  readonly threshold: number;
  /** "max": measured must not exceed it; "min": must reach it. */
  readonly bound: "max" | "min";
  readonly pass: boolean;
}

/** A phase's figures, and per level (step concurrency) for the charts. */
export interface PhaseFigures {
  readonly phase: string;
  readonly requests: number;
  readonly failed: number;
  readonly seconds: number;
  readonly qps: number;
  readonly ttftMs: Percentiles;
  readonly e2eMs: Percentiles;
  readonly itlMs: Percentiles;
}

export interface Percentiles {
  readonly p50: number | null;
  readonly p95: number | null;
  readonly p99: number | null;
}

export interface Verdict {
  readonly decision: "PROMOTE" | "HOLD";
  readonly checks: readonly Check[];
  readonly phases: readonly PhaseFigures[];
  /** The step phase per concurrency level: latency and throughput against concurrency. */
  readonly steps: readonly (PhaseFigures & { readonly concurrency: number })[];
}

/** The value at percentile `p` (0–100) of `values`, nearest rank; null when there are none. */
export const percentile = (values: readonly number[], p: number): number | null => percentileOf(values, p) ?? null;

const percentiles = (values: readonly number[]): Percentiles => ({
  p50: percentile(values, 50),
  p95: percentile(values, 95),
  p99: percentile(values, 99),
});

/** A set of samples' figures over `seconds`. */
export function figuresOf(phase: string, samples: readonly Sample[], seconds: number): PhaseFigures {
  const ok = samples.filter((sample) => sample.ok);
  return {
    phase,
    requests: samples.length,
    failed: samples.length - ok.length,
    seconds,
    qps: seconds > 0 ? ok.length / seconds : 0,
    ttftMs: percentiles(ok.flatMap((sample) => (sample.ttftMs === undefined ? [] : [sample.ttftMs]))),
    e2eMs: percentiles(ok.map((sample) => sample.e2eMs)),
    itlMs: percentiles(ok.flatMap((sample) => (sample.itlMs === undefined ? [] : [sample.itlMs]))),
  };
}

/**
 * Every SLO in every phase (the throughput floor in the soak, where load is sustained):
 * PROMOTE when all pass, HOLD when any fails. A phase that completed no request fails
 * its latency checks rather than passing them on no evidence.
 */
export function judge(spec: GateSpec, phases: readonly PhaseFigures[], steps: Verdict["steps"]): Verdict {
  const checks: Check[] = [];
  const max = (slo: Check["slo"], phase: string, measured: number | null, threshold: number) =>
    checks.push({ slo, phase, measured, threshold, bound: "max", pass: measured !== null && measured <= threshold });
  for (const figures of phases) {
    max("ttftP95Ms", figures.phase, figures.ttftMs.p95, spec.slo.ttftP95Ms);
    max("e2eP95Ms", figures.phase, figures.e2eMs.p95, spec.slo.e2eP95Ms);
    if (spec.slo.itlP95Ms !== undefined) max("itlP95Ms", figures.phase, figures.itlMs.p95, spec.slo.itlP95Ms);
    max("errorRate", figures.phase, figures.requests === 0 ? null : figures.failed / figures.requests, spec.slo.errorRate);
    if (figures.phase === "soak") {
      checks.push({
        slo: "qpsFloor",
        phase: "soak",
        measured: figures.qps,
        threshold: spec.slo.qpsFloor,
        bound: "min",
        pass: figures.qps >= spec.slo.qpsFloor,
      });
    }
  }
  return { decision: checks.every((check) => check.pass) ? "PROMOTE" : "HOLD", checks, phases, steps };
}

import type { RolloutSlo, RolloutSpec } from "../../../gen/infermesh/router/v1/router_service.js";

/** A rollout's spec with every default filled in: what the controller runs by. */
export interface ResolvedSpec {
  readonly model: string;
  readonly baseline: string;
  readonly canary: string;
  readonly stepPercents: readonly number[];
  readonly stepHoldMs: number;
  readonly windowMs: number;
  readonly minSamples: number;
  readonly slo: Required<Pick<RolloutSlo, "maxTtftRatio" | "maxItlRatio" | "maxErrorRateIncrease" | "latencySlackMs">> & {
    readonly [K in keyof Pick<RolloutSlo, "ttftP95Ms" | "itlP95Ms" | "errorRate">]?: number;
  };
}

/** The defaults: the seeds' 10 % → 50 % → 100 %, five minutes a step, judged over a minute. */
export const rolloutDefaults = {
  stepPercents: [10, 50, 100],
  stepHoldMs: 300_000,
  windowMs: 60_000,
  minSamples: 50,
  maxTtftRatio: 1.5,
  maxItlRatio: 1.5,
  maxErrorRateIncrease: 0.01,
  latencySlackMs: 50,
} as const;

/** What a spec may ask, at most: every input is bounded. */
export const rolloutLimits = {
  modelLength: 256,
  steps: 10,
  stepHoldMs: { min: 1_000, max: 86_400_000 },
  windowMs: { min: 1_000, max: 3_600_000 },
  minSamples: { min: 1, max: 100_000 },
  ratio: { min: 1, max: 100 },
  slackMs: 600_000,
} as const;

/** The spec with its defaults, or what is wrong with it (naming the field). */
export function resolveSpec(spec: RolloutSpec): ResolvedSpec | { problem: string } {
  const problem = problemOf(spec);
  if (problem) return { problem };
  const slo = spec.slo;
  return {
    model: spec.model,
    baseline: spec.baseline,
    canary: spec.canary,
    stepPercents: spec.stepPercents.length > 0 ? [...spec.stepPercents] : [...rolloutDefaults.stepPercents],
    stepHoldMs: spec.stepHoldMs ?? rolloutDefaults.stepHoldMs,
    windowMs: spec.windowMs ?? rolloutDefaults.windowMs,
    minSamples: spec.minSamples ?? rolloutDefaults.minSamples,
    slo: {
      maxTtftRatio: slo?.maxTtftRatio ?? rolloutDefaults.maxTtftRatio,
      maxItlRatio: slo?.maxItlRatio ?? rolloutDefaults.maxItlRatio,
      maxErrorRateIncrease: slo?.maxErrorRateIncrease ?? rolloutDefaults.maxErrorRateIncrease,
      latencySlackMs: slo?.latencySlackMs ?? rolloutDefaults.latencySlackMs,
      ...(slo?.ttftP95Ms === undefined ? {} : { ttftP95Ms: slo.ttftP95Ms }),
      ...(slo?.itlP95Ms === undefined ? {} : { itlP95Ms: slo.itlP95Ms }),
      ...(slo?.errorRate === undefined ? {} : { errorRate: slo.errorRate }),
    },
  };
}

/** The resolved spec as the message it came from, defaults written out (what the rollout shows). */
export function specMessage(spec: ResolvedSpec): RolloutSpec {
  return { ...spec, stepPercents: [...spec.stepPercents], slo: { ...spec.slo } };
}

/** Whether two resolved specs ask for the same rollout. */
export function sameSpec(a: ResolvedSpec, b: ResolvedSpec): boolean {
  return JSON.stringify(specMessage(a)) === JSON.stringify(specMessage(b));
}

function problemOf(spec: RolloutSpec): string | undefined {
  for (const field of ["model", "baseline", "canary"] as const) {
    if (spec[field] === "") return `spec.${field} must be set`;
    if (spec[field].length > rolloutLimits.modelLength) return `spec.${field} is longer than ${rolloutLimits.modelLength} characters`;
  }
  if (spec.canary === spec.baseline) return "spec.canary must differ from spec.baseline";
  const steps = spec.stepPercents;
  if (steps.length > rolloutLimits.steps) return `spec.step_percents: ${steps.length} steps, at most ${rolloutLimits.steps}`;
  for (let index = 0; index < steps.length; index += 1) {
    const percent = steps[index]!;
    if (percent < 1 || percent > 100) return `spec.step_percents[${index}] must be between 1 and 100`;
    if (index > 0 && percent <= steps[index - 1]!) return "spec.step_percents must ascend";
  }
  if (steps.length > 0 && steps.at(-1) !== 100) return "spec.step_percents must end at 100";
  const ranges: [string, number | undefined, { min: number; max: number }][] = [
    ["spec.step_hold_ms", spec.stepHoldMs, rolloutLimits.stepHoldMs],
    ["spec.window_ms", spec.windowMs, rolloutLimits.windowMs],
    ["spec.min_samples", spec.minSamples, rolloutLimits.minSamples],
    ["spec.slo.max_ttft_ratio", spec.slo?.maxTtftRatio, rolloutLimits.ratio],
    ["spec.slo.max_itl_ratio", spec.slo?.maxItlRatio, rolloutLimits.ratio],
    ["spec.slo.max_error_rate_increase", spec.slo?.maxErrorRateIncrease, { min: 0, max: 1 }],
    ["spec.slo.latency_slack_ms", spec.slo?.latencySlackMs, { min: 0, max: rolloutLimits.slackMs }],
    ["spec.slo.ttft_p95_ms", spec.slo?.ttftP95Ms, { min: 1, max: 3_600_000 }],
    ["spec.slo.itl_p95_ms", spec.slo?.itlP95Ms, { min: 1, max: 3_600_000 }],
    ["spec.slo.error_rate", spec.slo?.errorRate, { min: 0, max: 1 }],
  ];
  for (const [field, value, { min, max }] of ranges) {
    if (value !== undefined && !(value >= min && value <= max)) return `${field} must be between ${min} and ${max}`;
  }
  return undefined;
}

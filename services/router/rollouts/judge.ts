import type { VersionFigures } from "../../../gen/infermesh/router/v1/router_service.js";
import type { ResolvedSpec } from "./spec.js";

/** The share of its picks a canary may lose to other versions before it is judged unable to carry its share. */
const passedOverAtMost = 0.5;

/** One look at the canary: whether there was enough to judge, and whether it kept every SLO. */
export interface Judgement {
  /** The canary had at least minSamples generations in the window. */
  readonly judged: boolean;
  /** Judged and kept every SLO. */
  readonly passed: boolean;
  /** "passed", "too few samples (n of m)", or the SLO broken with its measured value and limit. */
  readonly verdict: string;
}

/**
 * Judges the canary's figures against the baseline's (undefined when the baseline had
 * too few samples and there is no earlier reference: then only the absolute limits and
 * the error rate against 0 count). The error rate is judged on every generation; the
 * latencies on the succeeded ones. A latency breaks the SLO only when it is above both
 * the baseline's times the ratio and the baseline's plus the slack, so a few
 * milliseconds on a fast model do not roll a canary back.
 */
export function judge(spec: ResolvedSpec, canary: VersionFigures, baseline: VersionFigures | undefined): Judgement {
  // The router keeps traffic off workers that fail (the health score) or are full: a
  // canary passed over for most of the share its split gives it would never gather
  // samples, and cannot carry its share anyway.
  const passedOver =
    canary.splitPicks >= spec.minSamples && canary.passedOver > canary.splitPicks * passedOverAtMost
      ? `passed over for ${canary.passedOver} of the ${canary.splitPicks} picks its split gave it (its workers are unhealthy, saturated or gone; ${canary.failed} of its ${canary.samples} generations failed)`
      : undefined;
  if (canary.samples < spec.minSamples) {
    if (passedOver) return { judged: true, passed: false, verdict: passedOver };
    return { judged: false, passed: false, verdict: `too few samples (${canary.samples} of ${spec.minSamples})` };
  }
  const { slo } = spec;
  const broken: string[] = passedOver ? [passedOver] : [];
  const baselineErrors = baseline?.errorRate ?? 0;
  if (canary.errorRate > baselineErrors + slo.maxErrorRateIncrease) {
    broken.push(
      `error rate ${percent(canary.errorRate)} > baseline ${percent(baselineErrors)} + ${percent(slo.maxErrorRateIncrease)} (${canary.failed} of ${canary.samples} failed)`,
    );
  }
  if (slo.errorRate !== undefined && canary.errorRate > slo.errorRate) {
    broken.push(`error rate ${percent(canary.errorRate)} > limit ${percent(slo.errorRate)}`);
  }
  const latencies = [
    ["TTFT p95", canary.ttftP95Ms, baseline?.ttftP95Ms, slo.maxTtftRatio, slo.ttftP95Ms],
    ["ITL p95", canary.itlP95Ms, baseline?.itlP95Ms, slo.maxItlRatio, slo.itlP95Ms],
  ] as const;
  for (const [name, measured, reference, ratio, limit] of latencies) {
    if (measured <= 0) continue; // Nothing measured (every generation failed, or one token each).
    if (reference !== undefined && reference > 0) {
      const allowed = Math.max(reference * ratio, reference + slo.latencySlackMs);
      if (measured > allowed) {
        broken.push(
          `${name} ${ms(measured)} > ${ms(allowed)} (baseline ${ms(reference)} × ${ratio}, and at least + ${ms(slo.latencySlackMs)})`,
        );
      }
    }
    if (limit !== undefined && measured > limit) broken.push(`${name} ${ms(measured)} > limit ${ms(limit)}`);
  }
  if (broken.length > 0) return { judged: true, passed: false, verdict: broken.join("; ") };
  return { judged: true, passed: true, verdict: "passed" };
}

const percent = (ratio: number) => `${(ratio * 100).toFixed(2)} %`;
const ms = (value: number) => `${Math.round(value)} ms`;

import { closedLoop, measureOne, modelContext, openLoop, Prompts, type Sample, type Target } from "./load.js";
import type { GateSpec } from "./slo.js";
import { figuresOf, judge, type Verdict } from "./verdict.js";

/** What the gate says while it runs: a line a second. */
export type Progress = (line: string) => void;

export interface GateRun {
  readonly verdict: Verdict;
  readonly samples: readonly Sample[];
}

/**
 * The release gate: STEP (a closed loop at each concurrency in turn), SPIKE (an open
 * loop at the spike's rate), SOAK (an open loop at the soak's rate, long), every
 * request streamed and timed; then each SLO judged in each phase.
 */
export async function runGate(target: Target, spec: GateSpec, progress: Progress = () => undefined): Promise<GateRun> {
  // Long documents sized to the model: at most 60 % of its context, less the longest answer.
  const context = await modelContext(target);
  const maxPromptTokens = context === undefined ? undefined : Math.max(64, Math.floor(context * 0.6) - 256);
  if (context !== undefined) progress(`the model's context is ${context} tokens: long documents of up to ${maxPromptTokens} tokens`);
  const originMs = performance.now();
  const prompts = new Prompts(spec.longContextShare, maxPromptTokens);
  const samples: Sample[] = [];
  const phases = [];
  const steps = [];
  const send = (phase: string, level: number) => () =>
    measureOne(target, prompts.next(), { phase, level, originMs, timeoutMs: spec.requestTimeoutMs });

  const watch = (phase: string, level: number, seconds: number) => {
    const from = samples.length;
    const startedAt = performance.now();
    const timer = setInterval(() => {
      const done = samples.slice(from);
      const failed = done.filter((sample) => !sample.ok).length;
      const ttft = figuresOf(phase, done, 1).ttftMs.p95;
      progress(
        `${phase} ${level}: ${Math.round((performance.now() - startedAt) / 1000)}/${seconds} s, ${done.length} done, ${failed} failed` +
          (ttft === null ? "" : `, p95 TTFT ${Math.round(ttft)} ms`),
      );
    }, 1_000);
    timer.unref();
    return { from, stop: () => clearInterval(timer) };
  };

  const { step, spike, soak } = spec.phases;
  for (const concurrency of step.concurrency) {
    const watching = watch("step", concurrency, step.secondsEach);
    await closedLoop(send("step", concurrency), concurrency, step.secondsEach, (sample) => samples.push(sample));
    watching.stop();
    steps.push({ ...figuresOf("step", samples.slice(watching.from), step.secondsEach), concurrency });
  }
  phases.push(figuresOf("step", samples, step.secondsEach * step.concurrency.length));

  for (const [phase, { qps, seconds }] of [
    ["spike", spike],
    ["soak", soak],
  ] as const) {
    const watching = watch(phase, qps, seconds);
    const refused = (): Sample => ({
      phase,
      level: qps,
      startMs: performance.now() - originMs,
      ok: false,
      error: `not sent: ${spec.maxInFlight} requests already in flight`,
      e2eMs: 0,
      longContext: false,
    });
    await openLoop(send(phase, qps), qps, seconds, spec.maxInFlight, (sample) => samples.push(sample), refused);
    watching.stop();
    phases.push(figuresOf(phase, samples.slice(watching.from), seconds));
  }
  return { verdict: judge(spec, phases, steps), samples };
}

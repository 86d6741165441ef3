import { randomUUID } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { Status } from "nice-grpc";
import { z } from "zod";
import { ApiError } from "../../errors.js";
import type { Rollout, VersionFigures } from "../../../gen/infermesh/router/v1/router_service.js";
import { stateName } from "../../../services/router/rollouts/controller.js";
import type { MeshClients } from "../../mesh/clients.js";
import { parseBody } from "../validation.js";

// The shape only; the bounds are the router's (services/router/rollouts/spec.ts), one
// place for every API, and its errors name the field.
const count = z
  .number()
  .int()
  .min(0)
  .max(2 ** 32 - 1);
const rolloutBody = z.strictObject({
  /** The model id that serves now. */
  baseline: z.string().min(1),
  /** The model id rolled out. */
  canary: z.string().min(1),
  step_percents: z.array(count).max(100).optional(),
  step_hold_ms: count.optional(),
  window_ms: count.optional(),
  min_samples: count.optional(),
  slo: z
    .strictObject({
      max_ttft_ratio: z.number().optional(),
      max_itl_ratio: z.number().optional(),
      max_error_rate_increase: z.number().optional(),
      latency_slack_ms: count.optional(),
      ttft_p95_ms: count.optional(),
      itl_p95_ms: count.optional(),
      error_rate: z.number().optional(),
    })
    .optional(),
});

/**
 * Canary rollouts, driven by the router (services/router/rollouts/): PUT
 * /admin/rollouts/{model} with `{"baseline":"gpt-oss-20b","canary":"gpt-oss-20b-ft"}`
 * (and optionally step_percents, step_hold_ms, window_ms, min_samples, slo) moves the
 * model's split 10 % → 50 % → 100 % by itself and rolls back on a broken SLO; GET
 * /admin/rollouts lists them with their last judgement and events; DELETE stops one.
 */
export function registerRolloutAdmin(app: FastifyInstance, clients: MeshClients): void {
  app.get("/admin/rollouts", async () => {
    const { rollouts } = await clients.router.listRollouts({});
    return { object: "list", data: rollouts.map(rolloutJson) };
  });

  app.get<{ Params: { "*": string } }>("/admin/rollouts/*", async (request) => {
    const model = request.params["*"];
    const { rollouts } = await clients.router.listRollouts({});
    const rollout = rollouts.find((candidate) => candidate.spec?.model === model);
    if (!rollout) throw new ApiError(Status.NOT_FOUND, `model "${model}" has no rollout`, { code: "not_found" });
    return rolloutJson(rollout);
  });

  app.put<{ Params: { "*": string } }>("/admin/rollouts/*", async (request) => {
    const body = parseBody(rolloutBody, request.body ?? {});
    const slo = body.slo ?? {};
    const { rollout } = await clients.router.setRollout({
      // Every router replica is asked: with one id they agree on the rollout they start.
      rolloutId: randomUUID(),
      spec: {
        model: request.params["*"],
        baseline: body.baseline,
        canary: body.canary,
        stepPercents: body.step_percents ?? [],
        stepHoldMs: body.step_hold_ms,
        windowMs: body.window_ms,
        minSamples: body.min_samples,
        slo: {
          maxTtftRatio: slo.max_ttft_ratio,
          maxItlRatio: slo.max_itl_ratio,
          maxErrorRateIncrease: slo.max_error_rate_increase,
          latencySlackMs: slo.latency_slack_ms,
          ttftP95Ms: slo.ttft_p95_ms,
          itlP95Ms: slo.itl_p95_ms,
          errorRate: slo.error_rate,
        },
      },
    });
    return rolloutJson(rollout!);
  });

  app.delete<{ Params: { "*": string } }>("/admin/rollouts/*", async (request) => {
    const { rollout } = await clients.router.deleteRollout({ model: request.params["*"] });
    return { ...rolloutJson(rollout!), deleted: true };
  });
}

/** A rollout as the admin API shows it: snake_case, times as ISO strings. */
export function rolloutJson(rollout: Rollout) {
  const spec = rollout.spec!;
  const slo = spec.slo ?? {};
  return {
    object: "rollout",
    id: rollout.id,
    model: spec.model,
    baseline: spec.baseline,
    canary: spec.canary,
    state: stateName(rollout.state),
    step: rollout.step,
    canary_percent: rollout.canaryPercent,
    step_percents: spec.stepPercents,
    step_hold_ms: spec.stepHoldMs,
    window_ms: spec.windowMs,
    min_samples: spec.minSamples,
    slo: {
      max_ttft_ratio: slo.maxTtftRatio,
      max_itl_ratio: slo.maxItlRatio,
      max_error_rate_increase: slo.maxErrorRateIncrease,
      latency_slack_ms: slo.latencySlackMs,
      ttft_p95_ms: slo.ttftP95Ms ?? null,
      itl_p95_ms: slo.itlP95Ms ?? null,
      error_rate: slo.errorRate ?? null,
    },
    started_at: iso(rollout.startedUnixMs),
    step_started_at: iso(rollout.stepStartedUnixMs),
    reason: rollout.reason || null,
    last_judgement: rollout.lastJudgement
      ? {
          at: iso(rollout.lastJudgement.atUnixMs),
          passed: rollout.lastJudgement.passed,
          verdict: rollout.lastJudgement.verdict,
          canary: figuresJson(rollout.lastJudgement.canary),
          baseline: figuresJson(rollout.lastJudgement.baseline),
        }
      : null,
    events: rollout.events.map((event) => ({
      at: iso(event.atUnixMs),
      kind: event.kind,
      canary_percent: event.canaryPercent,
      detail: event.detail,
    })),
  };
}

function figuresJson(figures: VersionFigures | undefined) {
  if (!figures) return null;
  return {
    samples: figures.samples,
    failed: figures.failed,
    error_rate: figures.errorRate,
    ttft_p95_ms: Math.round(figures.ttftP95Ms * 10) / 10,
    itl_p95_ms: Math.round(figures.itlP95Ms * 10) / 10,
  };
}

const iso = (unixMs: number) => new Date(unixMs).toISOString();

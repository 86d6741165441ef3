import { pushable, type Pushable } from "it-pushable";
import { ServerError, Status, type CallContext, type ServiceImplementation } from "nice-grpc";
import { Counter, Gauge, type Registry } from "prom-client";
import {
  RolloutSpec,
  type ConnectRequest,
  type ConnectResponse,
  type PickRequest,
  type RouterServiceDefinition,
  type TrafficSplit,
} from "../../gen/infermesh/router/v1/router_service.js";
import type { Logger } from "../common/logger.js";
import { type DecisionEvents, noDecisionEvents } from "../common/decision-events.js";
import type { Fleet, FleetMember } from "./fleet.js";
import type { PickQuery } from "./scheduling/plugin.js";
import type { Scheduler } from "./scheduling/scheduler.js";
import type { PrefixTable } from "./prefix-table.js";
import type { TrafficSplits } from "./traffic-split.js";
import type { RolloutController } from "./rollouts/controller.js";
import type { OutcomeWindows } from "./rollouts/outcome-window.js";
import { kvNeedTokens } from "../common/kv-need.js";
import { callSpan, traceFields } from "../common/telemetry/tracing.js";

export interface RouterServiceDeps {
  readonly fleet: Fleet;
  readonly scheduler: Scheduler;
  readonly prefixes: PrefixTable;
  readonly splits: TrafficSplits;
  /** The shared mode: saves a split just set, for the other replicas and a restart. */
  readonly saveSplit?: (split: TrafficSplit) => Promise<void>;
  /** Canary rollouts, which drive splits by themselves. */
  readonly rollouts: RolloutController;
  /** Where workers' generation outcomes go, for the rollouts to judge. */
  readonly outcomes: OutcomeWindows;
  readonly reportIntervalMs: number;
  readonly registry: Registry;
  readonly logger: Logger;
  /** Each pick: the worker, the reason, the score. */
  readonly events?: DecisionEvents;
  /** Aborts when the process shuts down, ending the workers' streams. */
  readonly lifetime: AbortSignal;
}

/** RouterService: the fleet from workers' Connect streams, and filter → score → pick. */
export function createRouterService(deps: RouterServiceDeps): ServiceImplementation<typeof RouterServiceDefinition> {
  const { fleet, scheduler, prefixes, splits, logger } = deps;
  const events = deps.events ?? noDecisionEvents;
  // Each connected worker's command channel, by the Connect stream that owns it.
  const commandsOf = new Map<number, Pushable<ConnectResponse>>();
  const picks = new Counter({
    name: "infermesh_router_picks_total",
    help: "Pick outcomes, and for picks the reason the first candidate won",
    labelNames: ["outcome", "reason"] as const,
    registers: [deps.registry],
  });
  const splitPicks = new Counter({
    name: "infermesh_router_split_picks_total",
    help: "Picks for a model with a traffic split, by the version that got the request",
    labelNames: ["model", "target"] as const,
    registers: [deps.registry],
  });
  const workersLost = new Counter({
    name: "infermesh_router_workers_lost_total",
    help: "Workers whose Connect stream broke without their leaving (a crash, a kill or a cut network)",
    registers: [deps.registry],
  });
  new Gauge({
    name: "infermesh_router_workers",
    help: "Connected workers",
    registers: [deps.registry],
    collect() {
      this.set(fleet.list().length);
    },
  });

  /** A rollout change its store (Redis or the state file) could not take is UNAVAILABLE, its cause logged. */
  const storing = async <T>(change: () => Promise<T>): Promise<T> => {
    try {
      return await change();
    } catch (error) {
      logger.warn({ err: error }, "a rollout change could not be saved");
      throw new ServerError(
        Status.UNAVAILABLE,
        "the rollout could not be saved (Redis, or the state file, cannot be written); retry shortly",
      );
    }
  };

  return {
    async pick(request: PickRequest, context: CallContext) {
      if (request.model === "") throw new ServerError(Status.INVALID_ARGUMENT, "model must be set");
      const versions = splits.route(request.model, request.sessionId);
      const query: PickQuery = {
        requestId: request.requestId,
        models: [...(versions ?? [request.model]), ...request.alternativeModels],
        estimatedInputTokens: request.estimatedInputTokens,
        kvNeedTokens: kvNeedTokens(request.estimatedInputTokens, request.maxTokens, request.choices),
        sessionId: request.sessionId,
        prefixHashes: request.prefixBlockHashes,
        excludedWorkerIds: new Set(request.excludeWorkerIds),
      };
      const { placements, reason } = scheduler.pick(query);
      if (placements.length === 0) {
        const known = query.models.some((model) => fleet.hasEverServed(model));
        picks.inc({ outcome: known ? "no_worker" : "unknown_model", reason: "" });
        throw known
          ? new ServerError(Status.UNAVAILABLE, `no worker is serving model "${request.model}" right now`)
          : new ServerError(Status.NOT_FOUND, `model "${request.model}" is not served by any worker`);
      }
      const chosen = placements[0]!;
      scheduler.commit(query, chosen);
      picks.inc({ outcome: "picked", reason });
      if (versions) {
        splitPicks.inc({ model: request.model, target: chosen.model });
        // A version this router has no worker of (it just started, or the version is gone) is not "passed over".
        if (fleet.serving(versions[0]!).length > 0) deps.outcomes.notePick(versions[0]!, chosen.model);
      }
      const span = callSpan(context);
      events("route.pick", {
        request_id: request.requestId,
        ...traceFields(span),
        model: chosen.model,
        worker_id: chosen.member.registration.workerId,
        reason,
        candidates: placements.length,
        score: Math.round(chosen.score * 1000) / 1000,
      });
      if (span?.isRecording()) {
        span.setAttributes({
          "infermesh.router.worker_id": chosen.member.registration.workerId,
          "infermesh.router.model": chosen.model,
          "infermesh.router.reason": reason,
          "infermesh.router.candidates": placements.length,
          "infermesh.router.score": chosen.score,
        });
        for (const [name, score] of Object.entries(chosen.scores)) span.setAttribute(`infermesh.router.score.${name}`, score);
      }
      return {
        candidates: placements.map(({ member, model, score, scores }) => ({
          workerId: member.registration.workerId,
          address: member.registration.address,
          score,
          model,
          scores,
        })),
        reason,
      };
    },

    async *connect(requests: AsyncIterable<ConnectRequest>, context: CallContext): AsyncIterable<ConnectResponse> {
      const iterator = requests[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done) return;
      if (first.value.event?.$case !== "register") {
        throw new ServerError(Status.INVALID_ARGUMENT, "the first Connect message must be register");
      }
      const registration = first.value.event.value;
      if (registration.workerId === "" || registration.address === "") {
        throw new ServerError(Status.INVALID_ARGUMENT, "register.worker_id and register.address must be set");
      }
      const member: FleetMember = fleet.join(registration);
      logger.info(
        { worker_id: registration.workerId, address: registration.address, models: registration.models.map((model) => model.id) },
        "worker joined",
      );
      const outgoing = pushable<ConnectResponse>({ objectMode: true });
      outgoing.push({ event: { $case: "registered", value: { reportIntervalMs: deps.reportIntervalMs } } });
      commandsOf.set(member.connectionId, outgoing);
      const signal = AbortSignal.any([context.signal, deps.lifetime]);
      const onAbort = () => outgoing.end();
      signal.addEventListener("abort", onAbort, { once: true });
      // Reads the worker's reports until its stream ends; the end closes our side too. A
      // worker that leaves says so first; one whose stream just ends was lost.
      let left = false;
      void (async () => {
        for (;;) {
          const next = await iterator.next();
          if (next.done) break;
          const event = next.value.event;
          if (event?.$case === "leave") left = true;
          else if (event?.$case === "loadReport") {
            fleet.report(member, event.value);
            if (event.value.outcomes.length > 0) deps.outcomes.record(event.value.outcomes);
          } else if (event?.$case === "kvEvents") {
            const { storedBlockHashes: stored, evictedBlockHashes: evicted, cleared } = event.value;
            prefixes.apply(registration.workerId, { stored, evicted, cleared });
          } else if (event?.$case === "modelsChanged") {
            fleet.setModels(member, event.value.models);
            prefixes.forget(registration.workerId);
            logger.info(
              { worker_id: registration.workerId, models: event.value.models.map((model) => model.id) },
              "worker's models changed",
            );
          }
        }
      })().then(
        () => outgoing.end(),
        (error: unknown) => outgoing.end(error instanceof Error ? error : new Error(String(error))),
      );
      try {
        yield* outgoing;
      } finally {
        signal.removeEventListener("abort", onAbort);
        commandsOf.delete(member.connectionId);
        if (fleet.leave(registration.workerId, member.connectionId)) {
          prefixes.forget(registration.workerId);
          if (left || deps.lifetime.aborted) {
            logger.info({ worker_id: registration.workerId }, "worker left");
          } else {
            workersLost.inc();
            logger.warn(
              { worker_id: registration.workerId },
              "worker lost: its stream broke without its leaving (crashed, killed or cut off)",
            );
          }
        }
      }
    },

    async listWorkers() {
      return { workers: fleet.list() };
    },

    async setTrafficSplit(request) {
      const split = request.split ?? { model: "", targets: [] };
      if (deps.rollouts.drives(split.model)) {
        throw new ServerError(
          Status.FAILED_PRECONDITION,
          `a rollout drives the split of "${split.model}"; delete the rollout first (DELETE /admin/rollouts/${split.model})`,
        );
      }
      const problem = splits.set(split);
      if (problem) throw new ServerError(Status.INVALID_ARGUMENT, problem);
      await deps.saveSplit?.(split);
      logger.info({ model: split.model, targets: split.targets }, split.targets.length > 0 ? "traffic split set" : "traffic split removed");
      return { splits: splits.list() };
    },

    async listTrafficSplits() {
      return { splits: splits.list() };
    },

    async setRollout(request) {
      const rollout = await storing(() => deps.rollouts.set(request.spec ?? RolloutSpec.create(), request.rolloutId));
      if ("problem" in rollout) throw new ServerError(Status.INVALID_ARGUMENT, rollout.problem);
      return { rollout };
    },

    async listRollouts() {
      return { rollouts: deps.rollouts.list() };
    },

    async deleteRollout(request) {
      const rollout = await storing(() => deps.rollouts.delete(request.model));
      if (!rollout) throw new ServerError(Status.NOT_FOUND, `model "${request.model}" has no rollout`);
      return { rollout };
    },

    async drainWorker(request) {
      const member = fleet.member(request.workerId);
      const commands = member && commandsOf.get(member.connectionId);
      if (!member || !commands) throw new ServerError(Status.NOT_FOUND, `no worker ${JSON.stringify(request.workerId)} is connected`);
      const reason = request.reason || "drained by an admin";
      if (!member.draining) {
        member.draining = true;
        commands.push({ event: { $case: "drain", value: { reason } } });
        logger.info({ worker_id: request.workerId, reason, running: member.load.runningRequests }, "worker draining");
      }
      return { worker: fleet.status(member) };
    },
  };
}

import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { GetStatsResponse } from "../../gen/infermesh/admission/v1/admission_service.js";
import type { MemoryGate } from "./memory-gate.js";
import type { Outcome } from "./outcomes.js";
import { classNames, perClass, priorityClassOf, type ClassName } from "../common/priority-classes.js";
import type { Scheduler } from "./scheduler.js";

/**
 * What admission reports about itself, per priority class: Prometheus metrics and the
 * GetStats answer, from one set of counts.
 */
export class AdmissionStats {
  private readonly granted = perClass(() => 0);
  private readonly rejected = perClass(() => 0);
  private readonly outcomes: Counter<"priority_class" | "outcome">;
  private readonly queueWait: Histogram<"priority_class">;
  private readonly rejectionTime: Histogram<"priority_class" | "outcome">;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly memory: MemoryGate,
    registry: Registry,
  ) {
    const labelNames = ["priority_class"] as const;
    this.outcomes = new Counter({
      name: "infermesh_admission_outcomes_total",
      help: "Acquire outcomes",
      labelNames: ["priority_class", "outcome"] as const,
      registers: [registry],
    });
    this.queueWait = new Histogram({
      name: "infermesh_admission_queue_wait_seconds",
      help: "Time from arrival to the grant",
      labelNames,
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    });
    this.rejectionTime = new Histogram({
      name: "infermesh_admission_rejection_seconds",
      help: "Time from arrival to the rejection: early shedding decides at arrival, a queue timeout after waiting",
      labelNames: ["priority_class", "outcome"] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5, 15, 30, 60],
      registers: [registry],
    });
    new Gauge({
      name: "infermesh_admission_in_flight",
      help: "Slots granted and not yet released",
      labelNames,
      registers: [registry],
      collect() {
        for (const className of classNames) this.set({ priority_class: className }, scheduler.inFlightOf(className));
      },
    });
    new Gauge({
      name: "infermesh_admission_capacity",
      help: "Slots this replica grants at once: maxConcurrency, or its lease of it in the shared mode",
      registers: [registry],
      collect() {
        this.set(scheduler.capacity);
      },
    });
    new Gauge({
      name: "infermesh_admission_queued",
      help: "Requests waiting for a slot",
      labelNames,
      registers: [registry],
      collect() {
        for (const className of classNames) this.set({ priority_class: className }, scheduler.queuedOf(className));
      },
    });
    new Gauge({
      name: "infermesh_admission_memory_gate_active",
      help: "1 while memory-guard's KV snapshot gates grants; 0 before one came or once it is older than pressureStaleMs",
      registers: [registry],
      collect() {
        this.set(memory.active ? 1 : 0);
      },
    });
    new Gauge({
      name: "infermesh_admission_memory_free_tokens",
      help: "Free KV tokens of the fleet's devices below CRITICAL in memory-guard's last snapshot, less what was granted since",
      registers: [registry],
      collect() {
        this.set(memory.state().freeTokens);
      },
    });
    for (const className of classNames) {
      this.queueWait.zero({ priority_class: className });
      this.outcomes.inc({ priority_class: className, outcome: "granted" }, 0);
    }
  }

  /** Counts one Acquire's outcome; `elapsedMs` is how long it took from arrival (a grant's queue wait, a rejection's delay). */
  record(className: ClassName, outcome: Outcome, elapsedMs = 0): void {
    this.outcomes.inc({ priority_class: className, outcome });
    if (outcome === "granted") {
      this.granted[className] += 1;
      this.queueWait.observe({ priority_class: className }, elapsedMs / 1000);
    } else if (outcome !== "cancelled") {
      this.rejected[className] += 1;
      this.rejectionTime.observe({ priority_class: className, outcome }, elapsedMs / 1000);
    }
  }

  snapshot(): GetStatsResponse {
    const { scheduler } = this;
    const gate = this.memory.state();
    const classes = classNames.map((className) => ({
      priorityClass: priorityClassOf(className),
      inFlight: scheduler.inFlightOf(className),
      queued: scheduler.queuedOf(className),
      grantedTotal: this.granted[className],
      rejectedTotal: this.rejected[className],
      oldestQueuedAgeMs: Math.round(scheduler.oldestQueuedAgeMs(className)),
    }));
    const sum = (field: "inFlight" | "queued" | "grantedTotal" | "rejectedTotal") =>
      classes.reduce((total, entry) => total + entry[field], 0);
    return {
      inFlight: sum("inFlight"),
      queued: sum("queued"),
      capacity: scheduler.capacity,
      grantedTotal: sum("grantedTotal"),
      rejectedTotal: sum("rejectedTotal"),
      classes,
      meanHoldMs: Math.round(scheduler.meanHoldMs),
      memoryGate: { active: gate.active, fleetFreeTokens: gate.freeTokens, fleetTotalTokens: gate.totalTokens, maxLevel: gate.maxLevel },
    };
  }
}

import { createHash } from "node:crypto";
import { Counter, Gauge, type Registry } from "prom-client";
import type { GenerationEvent } from "../mesh/generation.js";
import type { ResolvedGeneration } from "./request.js";

/**
 * The key two generations share by: same tenant, same resolved model (and
 * alternatives), same values byte for byte. Only a deterministic request (temperature 0
 * or a seed) has one: its answer does not depend on chance, so one generation serves
 * every identical request that arrives while it runs.
 */
export function shareKey(request: ResolvedGeneration): string | undefined {
  const { sampling } = request.values;
  if (!request.shareable || (sampling.temperature !== 0 && sampling.seed === undefined)) return undefined;
  return createHash("sha256")
    .update(JSON.stringify([request.caller.tenantId, request.operation, request.model, request.alternativeModels, request.values]))
    .digest("base64url");
}

/** One generation and the callers reading it. */
class Shared {
  /** Every event so far: a caller that attaches late reads them first. */
  readonly events: GenerationEvent[] = [];
  ended = false;
  failure: unknown;
  readers = 0;
  /** Aborts the generation once its last reader has left. */
  readonly controller = new AbortController();
  private wake: (() => void)[] = [];

  notify(): void {
    const waiting = this.wake;
    this.wake = [];
    for (const resolve of waiting) resolve();
  }

  /** Resolves at the next event, the end, or `signal` aborting. */
  next(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.wake.push(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}

/**
 * Identical deterministic requests in flight share one generation (opt-in: the
 * gateway's `dedupeRequests` and the key's): the first runs it, later ones attach and
 * read its events from the start. The generation stops only when every reader has
 * left; each reader's own disconnect detaches just that reader.
 */
export class SharedGenerations {
  private readonly running = new Map<string, Shared>();
  private readonly requests: Counter<"outcome">;

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: "infermesh_gateway_dedupe_requests_total",
      help: "Deterministic requests that could share a generation: led (ran it) or attached (read one already running)",
      labelNames: ["outcome"] as const,
      registers: [registry],
    });
    const running = this.running;
    new Gauge({
      name: "infermesh_gateway_dedupe_shared_generations",
      help: "Generations running that identical requests may attach to",
      registers: [registry],
      collect() {
        this.set(running.size);
      },
    });
  }

  /** The events of the generation `key` names: a running one's, or a new one `start` begins. */
  async *run(
    key: string,
    start: (signal: AbortSignal) => AsyncGenerator<GenerationEvent>,
    signal: AbortSignal,
  ): AsyncGenerator<GenerationEvent> {
    let shared = this.running.get(key);
    if (shared) {
      this.requests.inc({ outcome: "attached" });
    } else {
      this.requests.inc({ outcome: "led" });
      shared = new Shared();
      this.running.set(key, shared);
      void this.pump(key, shared, start(shared.controller.signal));
    }
    shared.readers += 1;
    try {
      for (let read = 0; ; ) {
        while (read < shared.events.length) yield shared.events[read++]!;
        if (shared.ended) {
          if (shared.failure !== undefined) throw shared.failure;
          return;
        }
        if (signal.aborted) throw signal.reason;
        await shared.next(signal);
      }
    } finally {
      shared.readers -= 1;
      if (shared.readers === 0 && !shared.ended) {
        // Nobody attaches to a generation being stopped: the next identical request runs anew.
        if (this.running.get(key) === shared) this.running.delete(key);
        shared.controller.abort(new Error("every reader left"));
      }
    }
  }

  private async pump(key: string, shared: Shared, events: AsyncGenerator<GenerationEvent>): Promise<void> {
    try {
      for await (const event of events) {
        shared.events.push(event);
        shared.notify();
      }
    } catch (error) {
      shared.failure = error;
    } finally {
      shared.ended = true;
      // No one attaches to a generation that has ended: the next identical request runs anew.
      if (this.running.get(key) === shared) this.running.delete(key);
      shared.notify();
    }
  }
}

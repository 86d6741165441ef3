import type { Clock } from "../common/clock.js";
import { Throttle } from "../common/throttle.js";
import { FairQueue } from "./fair-queue.js";
import type { Rejection } from "./outcomes.js";
import { classNames, perClass, urgencyOf, type ClassName, type PerClass } from "../common/priority-classes.js";

/** What a request asks of the scheduler. */
export interface SlotRequest {
  readonly tenantId: string;
  readonly className: ClassName;
  /** KV cells the request can grow to: its input estimate plus its output bound. */
  readonly kvNeedTokens: number;
  readonly queueTimeoutMs: number;
}

/** A granted slot; release it when the work ends (idempotent). */
export interface Slot {
  readonly id: string;
  readonly queuedMs: number;
  release(): void;
}

/** The scheduler's own rejections (rate limits are decided before it). */
export type SchedulerRejection = Exclude<Rejection, "rate_limited">;

/** How a request for a slot ended. */
export type SlotOutcome = { kind: "granted"; slot: Slot } | { kind: "rejected"; rejection: SchedulerRejection; retryAfterMs: number };

/** A waiting request's place, as the Queued event reports it. */
export interface QueuePlace {
  readonly position: number;
  readonly estimatedWaitMs: number;
}

/** What memory-aware admission tells the scheduler (services/admission/memory-gate.ts). */
export interface KvGate {
  /** Whether a request that can grow to `needTokens` KV cells may start now. */
  admits(needTokens: number, batch: boolean): boolean;
  /** Counts a grant against the free KV until the next snapshot; the result un-counts it at release. */
  reserve(needTokens: number): () => void;
  /** Batch requests are refused and shed (the fleet is at WARN or above). */
  readonly shedsBatch: boolean;
  /** Calls `listener` whenever a decision above may have changed. */
  onChange(listener: () => void): void;
}

export interface SchedulerOptions {
  /** Slots granted at once. */
  readonly capacity: number;
  /** Waiters of all classes together. */
  readonly maxQueue: number;
  readonly maxQueuePerClass: PerClass<number>;
  /** Least time between two Queued updates of one request. */
  readonly queuedUpdateMs: number;
  readonly clock: Clock;
  /** Memory-aware admission; without it only the concurrency cap gates. */
  readonly memory?: KvGate;
  /**
   * Slots that only `interactive` may take while interactive requests are arriving
   * (one in the last `interactiveWindowMs`): a burst of standard and batch work then
   * leaves them free, so a person's request starts at once instead of waiting for the
   * next release. With no interactive traffic every slot serves the other classes.
   */
  readonly interactiveHeadroom?: number;
  readonly interactiveWindowMs?: number;
  /**
   * Slots interactive requests may take beyond `capacity`. When a surge of other work
   * has filled the fleet within a few seconds, those requests all hold their slots for
   * about one hold time and few are released meanwhile; a steady interactive stream then
   * outruns the releases, and the headroom alone runs dry. Overdrawing the cap by a
   * little keeps a person from waiting out that drought (the memory gate still applies).
   */
  readonly interactiveBurst?: number;
  /**
   * A request joins the queue only while its estimated wait is within this share of its
   * queue timeout (1 when not given); past it, it is refused at arrival. The rest of the
   * timeout is the margin for the estimate's error (a burst of more urgent arrivals,
   * holds longer than the mean), so that a request once queued is seldom rejected later.
   */
  readonly admitWithinShare?: number;
  /**
   * Called when a request must queue: with shared admission (shared/fleet-lease.ts) the
   * replica then asks for a larger lease at once.
   */
  readonly onShort?: () => void;
}

interface Waiter {
  readonly tenantId: string;
  readonly enqueuedAtMs: number;
  readonly request: SlotRequest;
  updates: Throttle;
  lastPosition: number | undefined;
  settle(outcome: SlotOutcome): void;
}

/** The longest Retry-After an estimate gives: past it the estimate says little. */
const maxRetryAfterMs = 60_000;

/** The window over which more urgent classes' arrival rates are measured. */
const arrivalWindowMs = 10_000;
/** Releases the mean hold must promise over a span before the releases seen in it are believed instead. */
const minReleasesObserved = 8;
/** The short window a cautious estimate also looks at, to see a surge as it starts (within a second, not ten). */
const surgeWindowMs = 1_000;
/** Arrival times kept per class at most (a rate above 10,000 per 10 s reads as 10,000). */
const maxArrivalsKept = 10_000;

/** Mean hold time assumed for wait estimates until a slot was released. */
const assumedHoldMs = 1_000;

/** The scheduler's settings that a reload changes. */
export type ReconfigurableSchedulerSettings = Pick<
  SchedulerOptions,
  | "capacity"
  | "maxQueue"
  | "maxQueuePerClass"
  | "queuedUpdateMs"
  | "interactiveHeadroom"
  | "interactiveWindowMs"
  | "interactiveBurst"
  | "admitWithinShare"
>;

/**
 * Grants up to `capacity` slots. A freed slot goes to the most urgent class with a
 * waiter (strict priority); inside a class tenants take turns (FairQueue). Queues are
 * bounded per class and in all; a more urgent arrival at a full queue takes the place
 * of the waiter served last in the least urgent class below it. A request whose
 * estimated wait already exceeds its share of its queue timeout (`admitWithinShare`) is
 * refused at arrival rather than left to time out. The next request in that order
 * waits while memory-aware admission says its KV does not fit, and nothing behind it
 * passes it: a large request is not starved by a stream of small ones. Every decision
 * is taken synchronously.
 */
export class Scheduler {
  private readonly queues = perClass(() => new FairQueue<Waiter>());
  private readonly inFlight = perClass(() => 0);
  private totalInFlight = 0;
  private nextSlotId = 1;
  private meanHold = assumedHoldMs;
  private holdsMeasured = 0;
  /** Mean hold of the slots granted while the fleet was full (moving average); see `queueHoldMs`. */
  private loadedHold = assumedHoldMs;
  private loadedHoldsMeasured = 0;
  /**
   * The weight of one release in `loadedHold`: the average runs over about half a hold
   * time's releases (capacity / 2 of them), and never fewer than 10. A shed decision
   * is taken again at every position update, so a mean that jumps with each unusually
   * long hold would shed waiters that were about to be granted. In a replayed spike on
   * 192 slots (scheduler-spike.test.ts), a weight of 0.1 did that to up to 0.8 % of a
   * run's rejections; 0.03 and this one, to none in 16 runs.
   */
  private readonly loadedHoldWeight: number;
  private closed = false;
  /** Slots granted at once: `capacity`, or the replica's lease of the fleet's cap. */
  private granting: number;
  /** The slots wait estimates assume: as `granting`, or the replica's fair share while its lease is short of it. */
  private estimating: number;
  /** The interactive headroom and burst now (they scale with the lease). */
  private headroom: number;
  private burst: number;
  private lastInteractiveAtMs = Number.NEGATIVE_INFINITY;
  /** When each class's recent requests arrived, oldest first. */
  private readonly arrivals = perClass((): number[] => []);
  /** Since when every slot but the interactive headroom has been taken; undefined while one is free. */
  private fullSinceMs: number | undefined;
  /** When slots were released while full, oldest first (the last `arrivalWindowMs`). */
  private readonly releasesWhileFull: number[] = [];

  constructor(private options: SchedulerOptions) {
    this.loadedHoldWeight = Math.min(0.1, 2 / options.capacity);
    this.granting = this.estimating = options.capacity;
    this.headroom = options.interactiveHeadroom ?? 0;
    this.burst = options.interactiveBurst ?? 0;
    options.memory?.onChange(() => this.reexamine());
  }

  /** Slots granted at once now. */
  get capacity(): number {
    return this.granting;
  }

  /**
   * Changes the slots granted at once (a shared replica's lease); the interactive
   * headroom and burst keep their share of it. Slots held beyond a smaller lease stay
   * until released; nothing new is granted until the count is under it.
   */
  setCapacity(granting: number, estimating = granting): void {
    const { capacity, interactiveHeadroom = 0, interactiveBurst = 0 } = this.options;
    this.granting = granting;
    this.estimating = Math.max(1, estimating);
    this.headroom = granting <= 1 ? 0 : Math.min(granting - 1, Math.ceil((interactiveHeadroom * granting) / capacity));
    this.burst = Math.ceil((interactiveBurst * granting) / capacity);
    this.noteFullness();
    this.dispatch();
  }

  /**
   * New limits (a reload): the cap (unless a shared replica's lease sets it), queue
   * bounds, the interactive headroom and burst, the admission share. Nothing granted or
   * queued is dropped: slots held beyond a smaller cap stay until released, and waiters
   * beyond a smaller queue bound keep their place; a larger cap grants waiters at once.
   */
  reconfigure(settings: ReconfigurableSchedulerSettings, leased: boolean): void {
    this.options = { ...this.options, ...settings };
    if (leased) this.setCapacity(this.granting, this.estimating);
    else this.setCapacity(settings.capacity);
  }

  /** What this scheduler runs and queues, per class, and its slots in use: what a shared replica reports. */
  demand(): { inUse: number; perClass: PerClass<number> } {
    return {
      inUse: this.totalInFlight,
      perClass: perClass((className) => this.inFlight[className] + this.queues[className].size),
    };
  }

  /** Mean time a slot is held (moving average over releases). */
  get meanHoldMs(): number {
    return this.meanHold;
  }

  /**
   * The hold that wait estimates assume: that of the slots granted while the fleet was
   * full once one was measured, the mean over all holds until then. Nobody waits unless
   * the fleet is full, and a full fleet runs slower than a light one (bigger batches,
   * longer steps). The mean over all holds remembers the quick holds of a calm spell,
   * and at the start of a surge would promise releases much faster than they come.
   */
  get queueHoldMs(): number {
    return this.loadedHoldsMeasured > 0 ? this.loadedHold : this.meanHold;
  }

  inFlightOf(className: ClassName): number {
    return this.inFlight[className];
  }

  queuedOf(className: ClassName): number {
    return this.queues[className].size;
  }

  /** How long the class's longest waiter has waited; 0 when none waits. */
  oldestQueuedAgeMs(className: ClassName): number {
    const oldest = this.queues[className].oldestEnqueuedAtMs();
    return oldest === undefined ? 0 : this.options.clock.now() - oldest;
  }

  /**
   * Decides at once: a grant, a rejection, or a place in the queue (reported through
   * `onQueued` at once and whenever the position changes, throttled). Settles with the
   * outcome; rejects with the abort reason if `signal` aborts while queued.
   */
  request(request: SlotRequest, signal: AbortSignal, onQueued: (place: QueuePlace) => void): Promise<SlotOutcome> {
    if (this.closed) return rejected("shutting_down", 1_000);
    if (signal.aborted) return Promise.reject(signal.reason);
    const { className } = request;
    const now = this.options.clock.now();
    if (className === "interactive") this.lastInteractiveAtMs = now;
    this.arrivals[className].push(now);
    if (this.arrivals[className].length > maxArrivalsKept) this.arrivals[className].shift();
    if (className === "batch" && this.options.memory?.shedsBatch) return rejected("shed_memory", this.memoryRetryMs());
    const ahead = this.aheadOfArrival(request);
    if (ahead === 0 && this.totalInFlight < this.slotsFor(className) && this.memoryAdmits(request)) {
      return Promise.resolve({ kind: "granted", slot: this.grant(request, this.options.clock.now()) });
    }
    if (this.queues[className].size >= this.options.maxQueuePerClass[className]) {
      return rejected("queue_full", this.estimateWaitMs(this.totalQueued));
    }
    const estimatedWaitMs = this.estimateWaitMs(ahead, className, "cautious");
    // Only once a hold time was measured: the assumed one could refuse a whole burst.
    const admissibleWaitMs = request.queueTimeoutMs * (this.options.admitWithinShare ?? 1);
    if (this.holdsMeasured > 0 && estimatedWaitMs > admissibleWaitMs) {
      return rejected("shed_early", Math.min(maxRetryAfterMs, estimatedWaitMs - admissibleWaitMs));
    }
    if (this.totalQueued >= this.options.maxQueue && !this.shedForUrgent(className)) {
      return rejected("queue_full", this.estimateWaitMs(this.totalQueued));
    }
    return this.enqueue(request, signal, onQueued);
  }

  /** Rejects everything queued and every later request. Granted slots stay until released. */
  close(): void {
    this.closed = true;
    for (const className of classNames) {
      for (const waiter of [...this.queues[className]])
        waiter.settle({ kind: "rejected", rejection: "shutting_down", retryAfterMs: 1_000 });
    }
  }

  private get totalQueued(): number {
    return classNames.reduce((sum, className) => sum + this.queues[className].size, 0);
  }

  private enqueue(request: SlotRequest, signal: AbortSignal, onQueued: (place: QueuePlace) => void): Promise<SlotOutcome> {
    const { clock } = this.options;
    const queue = this.queues[request.className];
    return new Promise<SlotOutcome>((resolve, reject) => {
      let settled = false;
      const leave = () => {
        queue.remove(waiter);
        timer.cancel();
        waiter.updates.cancel();
        signal.removeEventListener("abort", onAbort);
      };
      const waiter: Waiter = {
        tenantId: request.tenantId,
        enqueuedAtMs: clock.now(),
        request,
        lastPosition: undefined,
        updates: new Throttle(
          () => {
            const position = this.positionOf(waiter);
            const estimatedWaitMs = this.estimateWaitMs(position, request.className);
            const leftMs = request.queueTimeoutMs - (clock.now() - waiter.enqueuedAtMs);
            if (this.holdsMeasured > 0 && estimatedWaitMs > leftMs) {
              // More urgent arrivals pushed it back past its deadline: say so now rather
              // than when the timer fires (after the queue has settled, not inside its loop).
              queueMicrotask(() => {
                if (settled) return;
                waiter.settle({
                  kind: "rejected",
                  rejection: "shed_early",
                  retryAfterMs: Math.min(maxRetryAfterMs, estimatedWaitMs - leftMs),
                });
                this.afterLeaving(request.className);
              });
              return;
            }
            if (position === waiter.lastPosition) return;
            waiter.lastPosition = position;
            onQueued({ position, estimatedWaitMs });
          },
          this.options.queuedUpdateMs,
          clock,
        ),
        settle: (outcome) => {
          if (settled) return;
          settled = true;
          leave();
          resolve(outcome);
        },
      };
      const onAbort = () => {
        settled = true;
        leave();
        reject(signal.reason);
        this.afterLeaving(request.className);
      };
      const timer = clock.setTimer(() => {
        waiter.settle({ kind: "rejected", rejection: "queue_timeout", retryAfterMs: this.estimateWaitMs(this.totalQueued) });
        this.afterLeaving(request.className);
      }, request.queueTimeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });
      queue.push(waiter);
      this.options.onShort?.();
      waiter.updates.flush();
      this.positionsChanged(urgencyOf(request.className));
    });
  }

  /** Requests served before one arriving now: every waiter of more urgent classes, and its class's turns ahead. */
  private aheadOfArrival(request: SlotRequest): number {
    return this.waitersMoreUrgentThan(request.className) + this.queues[request.className].positionOfNext(request.tenantId);
  }

  private positionOf(waiter: Waiter): number {
    return this.waitersMoreUrgentThan(waiter.request.className) + this.queues[waiter.request.className].positionOf(waiter);
  }

  private waitersMoreUrgentThan(className: ClassName): number {
    let waiters = 0;
    for (const other of classNames) {
      if (other === className) return waiters;
      waiters += this.queues[other].size;
    }
    return waiters;
  }

  /**
   * Slots free up at about `capacity / queueHoldMs` per millisecond, so the request with
   * `ahead` waiters before it is granted at the (ahead + 1)-th release, or later while
   * more slots are taken than its class may fill (the interactive headroom and burst):
   * the releases that bring the fleet back under its limit come first. Requests of more
   * urgent classes arriving meanwhile take releases first too: a class gets the release
   * rate less their arrival rate (over the last `arrivalWindowMs`). When they take it
   * all, the wait has no bound.
   *
   * A `cautious` estimate (the one that decides whether an arrival may queue) takes the
   * urgent classes' rate over the last `surgeWindowMs` (1 s) where that is higher and,
   * for batch (the class shed first), the release rate seen while the fleet was full
   * where that is lower (`cautiousReleasesPerMs`). At the start of a surge the long
   * windows still remember the calm before it, and a request let in on that memory
   * would be shed later, after waiting. The estimate that sheds a waiter stays the plain
   * one, so the decision to reject is taken at arrival where it can be.
   */
  private estimateWaitMs(ahead: number, className: ClassName = "interactive", mode: "plain" | "cautious" = "plain"): number {
    // Batch, the class to shed first, is also judged on the releases seen; the others on the full fleet's hold alone.
    const releasesPerMs =
      mode === "cautious" && className === "batch" ? this.cautiousReleasesPerMs() : this.estimating / Math.max(1, this.queueHoldMs);
    let urgentPerMs = 0;
    for (const other of classNames) {
      if (other === className) break;
      urgentPerMs +=
        mode === "cautious" ? Math.max(this.arrivalsPerMs(other), this.arrivalsPerMs(other, surgeWindowMs)) : this.arrivalsPerMs(other);
    }
    const perMs = releasesPerMs - urgentPerMs;
    const releases = ahead + Math.max(1, this.totalInFlight - this.slotsFor(className) + 1);
    return perMs <= releasesPerMs / 100 ? Number.MAX_SAFE_INTEGER : Math.round(releases / perMs);
  }

  /**
   * The release rate a cautious estimate assumes: `capacity / queueHoldMs`, or the rate
   * slots were actually released at while the fleet has been full where that is lower
   * (over a span of the last `arrivalWindowMs` in which the mean promises at least
   * `minReleasesObserved` releases). When load jumps, the mean hold still remembers the
   * short holds of the lighter load before, and the releases it promises do not come
   * for a hold time or more.
   */
  private cautiousReleasesPerMs(): number {
    const modelled = this.estimating / Math.max(1, this.queueHoldMs);
    if (this.fullSinceMs === undefined) return modelled;
    const now = this.options.clock.now();
    const since = Math.max(this.fullSinceMs, now - arrivalWindowMs);
    // Only a span long enough to expect several releases says anything.
    if (now - since < 1_000 || modelled * (now - since) < minReleasesObserved) return modelled;
    const times = this.releasesWhileFull;
    while (times.length > 0 && times[0]! < since) times.shift();
    return Math.min(modelled, times.length / (now - since));
  }

  /** Notes whether the fleet is full now (every slot but the interactive headroom taken). */
  private noteFullness(): void {
    const full = this.totalInFlight >= this.granting - this.headroom;
    if (full && this.fullSinceMs === undefined) {
      this.fullSinceMs = this.options.clock.now();
      this.releasesWhileFull.length = 0;
    } else if (!full) {
      this.fullSinceMs = undefined;
    }
  }

  /** Arrivals of a class per millisecond over the last `windowMs` (at most `arrivalWindowMs`). */
  private arrivalsPerMs(className: ClassName, windowMs = arrivalWindowMs): number {
    const times = this.arrivals[className];
    const now = this.options.clock.now();
    while (times.length > 0 && times[0]! < now - arrivalWindowMs) times.shift();
    if (windowMs >= arrivalWindowMs) return times.length / arrivalWindowMs;
    // Newest last: count back from the end.
    let count = 0;
    for (let index = times.length - 1; index >= 0 && times[index]! >= now - windowMs; index -= 1) count += 1;
    return count / windowMs;
  }

  /** Slots a class may fill: all of them and the burst for interactive; all but the headroom for the others while interactive requests come. */
  private slotsFor(className: ClassName): number {
    if (className === "interactive") return this.granting + this.burst;
    const headroom = this.headroom;
    if (headroom === 0) return this.granting;
    const recent = this.options.clock.now() - this.lastInteractiveAtMs <= (this.options.interactiveWindowMs ?? 30_000);
    return recent ? this.granting - headroom : this.granting;
  }

  /** Memory pressure eases as running requests end: about one hold time. */
  private memoryRetryMs(): number {
    return Math.max(1_000, Math.round(this.meanHold));
  }

  private memoryAdmits(request: SlotRequest): boolean {
    return this.options.memory?.admits(request.kvNeedTokens, request.className === "batch") ?? true;
  }

  /** Makes room in the full queue for an arrival of `className`; false when only as or more urgent waiters are queued. */
  private shedForUrgent(className: ClassName): boolean {
    for (const victimClass of [...classNames].reverse()) {
      if (urgencyOf(victimClass) <= urgencyOf(className)) return false;
      const victim = this.queues[victimClass].lastServed();
      if (!victim) continue;
      victim.settle({
        kind: "rejected",
        rejection: "shed_for_urgent",
        retryAfterMs: this.estimateWaitMs(this.positionOf(victim), victimClass),
      });
      this.positionsChanged(urgencyOf(victimClass));
      return true;
    }
    return false;
  }

  private grant(request: SlotRequest, enqueuedAtMs: number): Slot {
    const { clock } = this.options;
    this.inFlight[request.className] += 1;
    this.totalInFlight += 1;
    this.noteFullness();
    const grantedWhileFull = this.fullSinceMs !== undefined;
    const unreserve = this.options.memory?.reserve(request.kvNeedTokens);
    const grantedAtMs = clock.now();
    let released = false;
    return {
      id: `slot-${this.nextSlotId++}`,
      queuedMs: Math.round(grantedAtMs - enqueuedAtMs),
      release: () => {
        if (released) return;
        released = true;
        this.inFlight[request.className] -= 1;
        this.totalInFlight -= 1;
        unreserve?.();
        const heldMs = clock.now() - grantedAtMs;
        this.meanHold = this.holdsMeasured === 0 ? heldMs : 0.9 * this.meanHold + 0.1 * heldMs;
        this.holdsMeasured += 1;
        if (grantedWhileFull) {
          this.loadedHold =
            this.loadedHoldsMeasured === 0 ? heldMs : (1 - this.loadedHoldWeight) * this.loadedHold + this.loadedHoldWeight * heldMs;
          this.loadedHoldsMeasured += 1;
        }
        if (this.fullSinceMs !== undefined) {
          this.releasesWhileFull.push(clock.now());
          if (this.releasesWhileFull.length > maxArrivalsKept) this.releasesWhileFull.shift();
        }
        this.dispatch();
        this.noteFullness();
      },
    };
  }

  /** Grants free slots in order (most urgent class, then the tenant whose turn it is) while memory allows. */
  private dispatch(): void {
    let changedFrom: number | undefined;
    for (;;) {
      const className = classNames.find((candidate) => this.queues[candidate].size > 0);
      if (className === undefined) break;
      // Strict priority: when the most urgent waiter may not take a slot, no one behind it may.
      if (this.totalInFlight >= this.slotsFor(className)) break;
      const next = this.queues[className].peek()!;
      if (!this.memoryAdmits(next.request)) break;
      this.queues[className].take();
      next.settle({ kind: "granted", slot: this.grant(next.request, next.enqueuedAtMs) });
      changedFrom = Math.min(changedFrom ?? Infinity, urgencyOf(className));
    }
    if (changedFrom !== undefined) this.positionsChanged(changedFrom);
  }

  /** Memory's view changed: shed batch if it must go, then grant what now fits. */
  private reexamine(): void {
    if (this.options.memory?.shedsBatch) {
      const retryAfterMs = this.memoryRetryMs();
      for (const waiter of [...this.queues.batch]) waiter.settle({ kind: "rejected", rejection: "shed_memory", retryAfterMs });
    }
    this.dispatch();
  }

  /** A waiter left without a grant: those behind it moved up, and it may have been the one memory held back. */
  private afterLeaving(className: ClassName): void {
    this.positionsChanged(urgencyOf(className));
    this.dispatch();
  }

  /** Positions in classes from `fromUrgency` down may have changed: each waiter's throttle sends a changed one. */
  private positionsChanged(fromUrgency: number): void {
    for (const className of classNames.slice(fromUrgency)) {
      for (const waiter of this.queues[className]) waiter.updates.trigger();
    }
  }
}

const rejected = (rejection: SchedulerRejection, retryAfterMs: number): Promise<SlotOutcome> =>
  Promise.resolve({ kind: "rejected", rejection, retryAfterMs });

import type { FleetMember } from "./fleet.js";
import { outstandingOf, requestsOf } from "./member-load.js";

/**
 * The fleet's members by load, per model, kept up to date as load reports and picks
 * change it, so that a pick in a large fleet finds the least loaded workers without
 * looking at every one (see ScoringPicker). Load is outstanding requests per sequence
 * (running, waiting and picked but not yet reported, over the worker's sequences), in
 * buckets: 64 below saturation (1/64 of the sequences each), 64 above it up to 99×.
 * Moving a member between buckets is O(1): a swap with its bucket's last member.
 */
export class LoadIndex {
  /** Buckets per model; those from `saturatedFrom` on hold saturated workers. */
  static readonly buckets = 128;
  static readonly saturatedFrom = 64;
  private readonly models = new Map<string, ModelLoad>();

  /** Places `member` (again) under each model it serves, by its load now. */
  update(member: FleetMember): void {
    const bucket = bucketOf(member);
    const requests = requestsOf(member);
    for (const served of member.registration.models) this.modelLoad(served.id).place(member, bucket, requests);
  }

  /** Takes `member` out from under `models` (by default, those it serves). */
  remove(member: FleetMember, models: readonly { readonly id: string }[] = member.registration.models): void {
    for (const served of models) this.models.get(served.id)?.remove(member);
  }

  /**
   * Visits `model`'s members from bucket `from` up to (not including) `to`, least
   * loaded first; within a bucket from a random place, so that picks among equally
   * loaded workers spread over all of them. Stops when `visit` returns false.
   */
  walk(model: string, from: number, to: number, random: () => number, visit: (member: FleetMember) => boolean): void {
    const load = this.models.get(model);
    if (load === undefined) return;
    for (let bucket = from; bucket < to; bucket += 1) {
      const members = load.buckets[bucket]!;
      const count = members.length;
      if (count === 0) continue;
      const start = Math.floor(random() * count);
      for (let step = 0; step < count; step += 1) if (!visit(members[(start + step) % count]!)) return;
    }
  }

  /** The mean outstanding requests of `model`'s members. */
  meanRequests(model: string): { total: number; members: number } {
    const load = this.models.get(model);
    return load ? { total: load.requests, members: load.size } : { total: 0, members: 0 };
  }

  private modelLoad(model: string): ModelLoad {
    let load = this.models.get(model);
    if (load === undefined) {
      load = new ModelLoad();
      this.models.set(model, load);
    }
    return load;
  }
}

/** One model's members in their load buckets, with where each one is (by its fleet index). */
class ModelLoad {
  readonly buckets: FleetMember[][] = Array.from({ length: LoadIndex.buckets }, () => []);
  /** Each member's bucket (-1: not here) and place in it, and the requests it was last counted with. */
  private bucketAt = new Int32Array(0);
  private positionAt = new Int32Array(0);
  private requestsAt = new Float64Array(0);
  /** Sum of the members' outstanding requests, and how many members there are. */
  requests = 0;
  size = 0;

  place(member: FleetMember, bucket: number, requests: number): void {
    const { index } = member;
    this.reserve(index);
    const current = this.bucketAt[index]!;
    if (current === -1) this.size += 1;
    else this.requests -= this.requestsAt[index]!;
    this.requests += requests;
    this.requestsAt[index] = requests;
    if (current === bucket) return;
    if (current !== -1) this.unlink(index, current);
    const members = this.buckets[bucket]!;
    this.bucketAt[index] = bucket;
    this.positionAt[index] = members.length;
    members.push(member);
  }

  remove(member: FleetMember): void {
    const { index } = member;
    const current = index < this.bucketAt.length ? this.bucketAt[index]! : -1;
    if (current === -1) return;
    this.unlink(index, current);
    this.bucketAt[index] = -1;
    this.size -= 1;
    this.requests -= this.requestsAt[index]!;
  }

  /** Takes fleet index `index` out of `bucket`: its bucket's last member takes its place. */
  private unlink(index: number, bucket: number): void {
    const members = this.buckets[bucket]!;
    const position = this.positionAt[index]!;
    const last = members.pop()!;
    if (position < members.length) {
      members[position] = last;
      this.positionAt[last.index] = position;
    }
  }

  private reserve(index: number): void {
    if (index < this.bucketAt.length) return;
    const length = Math.max(64, (index + 1) * 2);
    const bucketAt = new Int32Array(length).fill(-1);
    bucketAt.set(this.bucketAt);
    this.bucketAt = bucketAt;
    const positionAt = new Int32Array(length);
    positionAt.set(this.positionAt);
    this.positionAt = positionAt;
    const requestsAt = new Float64Array(length);
    requestsAt.set(this.requestsAt);
    this.requestsAt = requestsAt;
  }
}

/** The bucket of a member's outstanding requests per sequence. */
function bucketOf(member: FleetMember): number {
  const outstanding = outstandingOf(member);
  if (outstanding < 1) return Math.floor(outstanding * LoadIndex.saturatedFrom);
  const above = LoadIndex.buckets - LoadIndex.saturatedFrom;
  return LoadIndex.saturatedFrom + Math.min(above - 1, Math.floor(((Math.min(outstanding, 99) - 1) / 98) * above));
}

import assert from "node:assert/strict";
import test from "node:test";
import { FairQueue } from "./fair-queue.js";

interface Entry {
  readonly tenantId: string;
  readonly enqueuedAtMs: number;
  readonly name: string;
}

function fill(arrivals: string): { queue: FairQueue<Entry>; entries: Entry[] } {
  const queue = new FairQueue<Entry>();
  const entries = [...arrivals].map((tenantId, index) => ({ tenantId, enqueuedAtMs: index, name: `${tenantId}${index}` }));
  for (const entry of entries) queue.push(entry);
  return { queue, entries };
}

const drain = (queue: FairQueue<Entry>) => {
  const served: string[] = [];
  for (let entry = queue.take(); entry; entry = queue.take()) served.push(entry.tenantId);
  return served.join("");
};

test("tenants take turns, one request each, in the order they first arrived", () => {
  assert.equal(drain(fill("aaabbc").queue), "abcaba");
  assert.equal(drain(fill("aaaaaaaaaaaaaaaaaaab").queue).slice(0, 2), "ab", "one waiter of b goes second behind twenty of a");
});

test("a tenant that runs dry and comes back takes the last turn", () => {
  const { queue } = fill("ab");
  assert.equal(queue.take()!.tenantId, "a");
  queue.push({ tenantId: "a", enqueuedAtMs: 5, name: "a5" });
  queue.push({ tenantId: "c", enqueuedAtMs: 6, name: "c6" });
  assert.equal(drain(queue), "bac");
});

test("positions say exactly how many are served first when nothing else arrives", () => {
  for (const arrivals of ["aaabbc", "abcabcaaa", "cbaaaaab", "a", "abababzzzzzzzy"]) {
    const { queue, entries } = fill(arrivals);
    queue.take(); // the ring has turned once
    const expected = new Map(entries.map((entry) => [entry, queue.positionOf(entry)]));
    for (let served = 0, entry = queue.take(); entry; served += 1, entry = queue.take()) {
      assert.equal(expected.get(entry), served, `${arrivals}: ${entry.name}`);
    }
  }
});

test("a new arrival's position is where it would stand, and the last served is the newest of the longest line", () => {
  const { queue } = fill("aaabbc");
  assert.equal(queue.positionOfNext("d"), 3, "a new tenant waits one turn of each tenant");
  assert.equal(queue.positionOfNext("b"), 6, "b's third: a, b, c, a, b, a, then it");
  assert.equal(queue.lastServed()!.name, "a2");
  const { queue: even } = fill("abab");
  assert.equal(even.lastServed()!.name, "b3", "among equal lines, the latest turn");
});

test("removing an entry keeps the others' turns; size and oldest follow", () => {
  const { queue, entries } = fill("aabc");
  assert.equal(queue.remove(entries[0]!), true);
  assert.equal(queue.remove(entries[0]!), false);
  assert.equal(queue.size, 3);
  assert.equal(queue.oldestEnqueuedAtMs(), 1);
  assert.equal(drain(queue), "abc");
  assert.equal(queue.oldestEnqueuedAtMs(), undefined);
});

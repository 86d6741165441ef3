import assert from "node:assert/strict";
import test from "node:test";
import { pino } from "pino";
import { waitFor } from "../../test/support/harness.js";
import { forEachReplica, resolveReplicas } from "./replica-discovery.js";

const quiet = pino({ level: "silent" });

test("dns:/// entries are every address the name resolves to; other entries are themselves", async () => {
  // The machine's own resolver: localhost is 127.0.0.1 (and ::1 where IPv6 is on).
  const { addresses } = await resolveReplicas(["dns:///localhost:50052", "10.0.0.9:50052"]);
  assert.ok(addresses.includes("127.0.0.1:50052"), addresses.join(","));
  assert.ok(addresses.includes("10.0.0.9:50052"));
  assert.ok(addresses.every((address) => address === "10.0.0.9:50052" || /^(127\.0\.0\.1|\[::1\]):50052$/.test(address)));
});

test("a name that stops resolving keeps its last replicas; one that never resolved has none", async () => {
  const previous = new Map([["dns:///router-headless:50052", ["10.1.0.1:50052"]]]);
  const failing = () => Promise.reject(new Error("ENOTFOUND"));
  const { addresses } = await resolveReplicas(["dns:///router-headless:50052", "dns:///other:1"], failing, previous);
  assert.deepEqual(addresses, ["10.1.0.1:50052"]);
});

test("one loop per replica: a replica that joins is started, one that leaves is stopped", async () => {
  // A headless Service whose pods change (the name server's answer is the test's to set).
  let pods = ["10.1.0.1", "10.1.0.2"];
  const running = new Map<string, AbortSignal>();
  const lifetime = new AbortController();
  forEachReplica(["dns:///router-headless:50052"], (address, signal) => running.set(address, signal), {
    signal: lifetime.signal,
    logger: quiet,
    everyMs: 10,
    resolve: async () => pods,
  });
  await waitFor("both pods", () => running.size === 2);
  const first = running.get("10.1.0.1:50052")!;
  pods = ["10.1.0.2", "10.1.0.3"];
  await waitFor("the new pod", () => running.has("10.1.0.3:50052"));
  await waitFor("the gone pod stopped", () => first.aborted);
  assert.equal(running.get("10.1.0.2:50052")!.aborted, false, "a pod still there keeps its stream");
  lifetime.abort();
  assert.ok([...running.values()].every((signal) => signal.aborted));
});

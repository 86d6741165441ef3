import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { SharedRedis } from "../common/redis.js";
import { redisForTests } from "../../test/support/redis.js";
import { waitFor } from "../../test/support/harness.js";
import { SharedSplits } from "./shared-splits.js";
import { TrafficSplits } from "./traffic-split.js";

// Real Redis (Debian's redis-server).
const redis = redisForTests();

const quiet = pino({ level: "silent" });

/** A router replica's splits, kept in step through the test's Redis. */
function replica() {
  const connection = new SharedRedis(redis().url, quiet, new Registry(), { what: "traffic splits", fallback: "kept" });
  const splits = new TrafficSplits();
  const shared = new SharedSplits(connection, splits, quiet);
  shared.start();
  return {
    splits,
    shared,
    connection,
    close: async () => {
      shared.close();
      await connection.close();
    },
  };
}

test("a split set on one router replica reaches the others, and a replica started later has it", async () => {
  const a = replica();
  const b = replica();
  try {
    await waitFor("both replicas connected", () => a.connection.isUp && b.connection.isUp);
    const split = {
      model: "gpt-oss-20b",
      targets: [
        { model: "gpt-oss-20b-v1", weight: 90 },
        { model: "gpt-oss-20b-v2", weight: 10 },
      ],
    };
    assert.equal(a.splits.set(split), undefined);
    await a.shared.save(split);
    await waitFor("B to route by the split", () => b.splits.route("gpt-oss-20b", "session-1") !== undefined, 5_000);
    assert.deepEqual(b.splits.list(), [split]);

    // A restart: a new replica reads every split at start.
    const c = replica();
    try {
      await waitFor("the restarted replica to have the split", () => c.splits.list().length === 1, 5_000);
      assert.deepEqual(c.splits.list(), [split]);
      // Removed on one replica: removed on every one.
      const removal = { model: "gpt-oss-20b", targets: [] };
      b.splits.set(removal);
      await b.shared.save(removal);
      await waitFor("A and C to drop it", () => a.splits.list().length === 0 && c.splits.list().length === 0, 5_000);
    } finally {
      await c.close();
    }
  } finally {
    await a.close();
    await b.close();
  }
});

import test from "node:test";
import assert from "node:assert/strict";
import { keepConnected, logReconnect } from "./backoff.js";

const options = { initialMs: 5, maxMs: 40, resetAfterMs: 10_000 };

test("keepConnected retries after failures with growing, capped delays until aborted", async () => {
  const controller = new AbortController();
  const seen: { error: unknown; retryInMs: number; failuresInARow: number }[] = [];
  let connects = 0;
  await keepConnected(
    async () => {
      connects += 1;
      throw new Error(`refused #${connects}`);
    },
    controller.signal,
    (error, retryInMs, failuresInARow) => {
      seen.push({ error, retryInMs, failuresInARow });
      if (failuresInARow === 6) controller.abort();
    },
    options,
  );
  assert.equal(connects, 6);
  assert.deepEqual(
    seen.map((entry) => [(entry.error as Error).message, entry.failuresInARow]),
    [1, 2, 3, 4, 5, 6].map((n) => [`refused #${n}`, n]),
  );
  // Full jitter: each delay lies in [ceiling/2, ceiling]; the ceiling doubles up to maxMs.
  const ceilings = [5, 10, 20, 40, 40, 40];
  seen.forEach(({ retryInMs }, index) => {
    const ceiling = ceilings[index]!;
    assert.ok(retryInMs >= ceiling / 2 && retryInMs <= ceiling, `delay ${index + 1} was ${retryInMs}, ceiling ${ceiling}`);
  });
});

test("keepConnected returns when the signal aborts during a connection, without reporting it", async () => {
  const controller = new AbortController();
  const disconnects: number[] = [];
  let connects = 0;
  const done = keepConnected(
    (signal) => {
      connects += 1;
      if (connects === 1) return Promise.resolve(); // a stream that ended
      return new Promise<void>((_resolve, reject) => signal.addEventListener("abort", () => reject(new Error("aborted"))));
    },
    controller.signal,
    (_error, _retryInMs, failures) => disconnects.push(failures),
    options,
  );
  while (connects < 2) await new Promise((resolve) => setTimeout(resolve, 1));
  controller.abort();
  await done;
  assert.equal(connects, 2);
  assert.deepEqual(disconnects, [1]);
});

test("keepConnected does not connect when the signal is already aborted", async () => {
  let connects = 0;
  await keepConnected(
    async () => void connects++,
    AbortSignal.abort(),
    () => assert.fail("no disconnect expected"),
    options,
  );
  assert.equal(connects, 0);
});

test("a connection that lived resetAfterMs resets the streak and the delay", async () => {
  const controller = new AbortController();
  const seen: [number, number][] = [];
  await keepConnected(
    async () => {},
    controller.signal,
    (_error, retryInMs, failuresInARow) => {
      seen.push([retryInMs, failuresInARow]);
      if (seen.length === 3) controller.abort();
    },
    { ...options, resetAfterMs: 0 },
  );
  for (const [retryInMs, failuresInARow] of seen) {
    assert.equal(failuresInARow, 1);
    assert.ok(retryInMs <= options.initialMs);
  }
});

test("logReconnect warns on the 1st and every 10th failure, debug otherwise", () => {
  const calls: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  const logger = {
    warn: (fields: object, message: string) => calls.push({ level: "warn", fields: fields as Record<string, unknown>, message }),
    debug: (fields: object, message: string) => calls.push({ level: "debug", fields: fields as Record<string, unknown>, message }),
  };
  const onDisconnect = logReconnect(logger, "router stream lost");
  for (let failures = 1; failures <= 20; failures++) onDisconnect(new Error("connection refused"), 50, failures);

  const warned = calls.flatMap((call, index) => (call.level === "warn" ? [index + 1] : []));
  assert.deepEqual(warned, [1, 10, 20]);
  assert.equal(calls.filter((call) => call.level === "debug").length, 17);
  assert.deepEqual(calls[0], {
    level: "warn",
    fields: { reason: "connection refused", retryInMs: 50, failuresInARow: 1 },
    message: "router stream lost",
  });

  onDisconnect(undefined, 5, 1);
  assert.equal(calls.at(-1)?.fields.reason, "the stream ended");
});

import test from "node:test";
import assert from "node:assert/strict";
import { pushable } from "it-pushable";
import type { CallContext } from "nice-grpc";
import { Registry } from "prom-client";
import type { KvReport, ReportRequest, ReportResponse } from "../../gen/infermesh/memory/v1/memory_service.js";
import { createLogger } from "../common/logger.js";
import { KvLedger } from "./kv-ledger.js";
import { createMemoryGuardService } from "./memory-guard-service.js";

function setup() {
  const registry = new Registry();
  const lifetime = new AbortController();
  const service = createMemoryGuardService({
    ledger: new KvLedger({ warnRatio: 0.85, criticalRatio: 0.95 }),
    registry,
    logger: createLogger("memory-guard", "fatal"),
    lifetime: lifetime.signal,
  });
  const reports = pushable<ReportRequest>({ objectMode: true });
  const call = new AbortController();
  const commands = service.report!(reports, { signal: call.signal } as CallContext)[
    Symbol.asyncIterator
  ]() as AsyncIterator<ReportResponse>;
  const send = (report: Partial<KvReport>) =>
    reports.push({
      event: {
        $case: "kvReport",
        value: {
          workerId: "w0",
          device: "cuda:0",
          kvUsedTokens: 0,
          kvTotalTokens: 10_000,
          idleSequences: 0,
          kvReservedTokens: 0,
          idleSessions: [],
          residentSessions: 0,
          ...report,
        },
      },
    });
  return { send, commands, registry, stop: () => (call.abort(), lifetime.abort()) };
}

const session = (sessionId: string, kvTokens: number, idleMs: number) => ({ sessionId, kvTokens, idleMs });

test("under warn, memory-guard asks the worker to evict its least recently used idle sessions, just enough of them", async () => {
  const { send, commands, registry, stop } = setup();
  send({ kvUsedTokens: 5_000, residentSessions: 3, idleSessions: [session("old", 400, 9_000), session("mid", 400, 5_000)] });
  assert.deepEqual((await commands.next()).value, { event: { $case: "pressureChanged", value: { level: 1 } } });
  // 9,000 of 10,000 in use: the worker learns it is at warn, and only then lists its idle sessions.
  send({ kvUsedTokens: 9_000, residentSessions: 4 });
  assert.deepEqual((await commands.next()).value, { event: { $case: "pressureChanged", value: { level: 2 } } });
  // 8,499 is the most NORMAL allows, so 501 must go: two sessions of 400.
  send({
    kvUsedTokens: 9_000,
    residentSessions: 4,
    idleSessions: [session("old", 400, 9_000), session("mid", 400, 5_000), session("new", 400, 10)],
  });
  assert.deepEqual((await commands.next()).value, { event: { $case: "evictSessions", value: { sessionIds: ["old", "mid"] } } });
  const metrics = await registry.metrics();
  assert.match(metrics, /infermesh_memory_session_evictions_total\{worker_id="w0"\} 2/);
  assert.match(metrics, /infermesh_memory_resident_sessions\{worker_id="w0",device="cuda:0"\} 4/);
  stop();
});

test("an engine that cannot name sessions gets the idle-sequence eviction instead", async () => {
  const { send, commands, stop } = setup();
  send({ kvUsedTokens: 9_000, idleSequences: 2 });
  assert.equal((await commands.next()).value.event.$case, "pressureChanged");
  assert.deepEqual((await commands.next()).value, { event: { $case: "evictIdle", value: { targetFreeTokens: 501 } } });
  stop();
});

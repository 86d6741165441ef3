import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { Redis } from "ioredis";
import { freePorts, waitFor } from "./harness.js";

/** A real redis-server (Debian's package), on a free port, keeping nothing on disk. */
export interface TestRedis {
  readonly url: string;
  readonly port: number;
  /** Stops it at once (SIGKILL): what a crash looks like to its clients. */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const redisServer = "/usr/bin/redis-server";

/** Starts redis-server for a test; fails with what to install when it is missing (`.ci/run` installs it). */
export async function startRedis(): Promise<TestRedis> {
  if (spawnSync(redisServer, ["--version"]).status !== 0) {
    throw new Error("redis-server is not installed: apt-get install redis-server (.ci/run does)");
  }
  const [port] = await freePorts(1);
  const directory = mkdtempSync(join(tmpdir(), "infermesh-redis-"));
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(redisServer, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory], {
      stdio: "ignore",
    });
    const answers = async () => {
      const client = new Redis({ port: port!, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      client.on("error", () => undefined);
      try {
        await client.connect();
        return await client.ping();
      } catch {
        return undefined;
      } finally {
        client.disconnect();
      }
    };
    await waitFor("redis-server to answer", answers, 10_000);
  };
  const kill = async () => {
    if (!child || child.exitCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGKILL");
    await exited;
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port: port!,
    kill,
    restart: start,
    stop: async () => {
      await kill();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

/** A redis-server for one test file: started before its tests, stopped after them. */
export function redisForTests(): () => TestRedis {
  let redis: TestRedis | undefined;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });
  return () => redis!;
}

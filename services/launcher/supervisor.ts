import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

/** One process the supervisor keeps running. */
export interface ChildSpec {
  /** Short name used as the log prefix, e.g. "router" or "worker-0". */
  readonly name: string;
  /** Node script to run (compiled JavaScript). */
  readonly script: string;
  readonly args: readonly string[];
  /** Extra environment on top of the supervisor's own. */
  readonly env: Readonly<Record<string, string>>;
}

export interface SupervisorOptions {
  /** Node flags put before the script, e.g. the telemetry --import. */
  readonly nodeArgs: readonly string[];
  /** Receives every output line of every child. */
  readonly onLine: (child: string, line: string, stream: "stdout" | "stderr") => void;
  /** Receives the supervisor's own events (start, exit, restart). */
  readonly onEvent: (message: string) => void;
  readonly restartInitialMs?: number;
  readonly restartMaxMs?: number;
  /** A child that ran this long before crashing restarts after the initial delay again. */
  readonly stableAfterMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL. */
  readonly stopGraceMs?: number;
}

interface Running {
  readonly spec: ChildSpec;
  process: ChildProcess | undefined;
  startedAtMs: number;
  restartDelayMs: number;
  restartTimer: NodeJS.Timeout | undefined;
  exited: Promise<void>;
}

/**
 * Runs child processes, prefixes their output, restarts one that exits unexpectedly
 * with exponential backoff, and stops them all on request.
 */
export class Supervisor {
  private readonly children = new Map<string, Running>();
  private stopping = false;

  constructor(private readonly options: SupervisorOptions) {}

  start(specs: readonly ChildSpec[]): void {
    for (const spec of specs) {
      const running: Running = {
        spec,
        process: undefined,
        startedAtMs: 0,
        restartDelayMs: this.options.restartInitialMs ?? 500,
        restartTimer: undefined,
        exited: Promise.resolve(),
      };
      this.children.set(spec.name, running);
      this.launch(running);
    }
  }

  /** The pid of a running child, for tests and tooling. */
  pid(name: string): number | undefined {
    return this.children.get(name)?.process?.pid;
  }

  /** Sends `signal` to the running children whose name `which` accepts; returns their names. */
  signal(signal: NodeJS.Signals, which: (name: string) => boolean): string[] {
    const sent: string[] = [];
    for (const [name, running] of this.children) {
      if (which(name) && running.process?.pid !== undefined && running.process.kill(signal)) sent.push(name);
    }
    return sent;
  }

  /** Stops every child: SIGTERM in reverse start order, SIGKILL after the grace period. */
  async stop(): Promise<void> {
    this.stopping = true;
    const all = [...this.children.values()].reverse();
    for (const running of all) clearTimeout(running.restartTimer);
    for (const running of all) running.process?.kill("SIGTERM");
    const grace = setTimeout(() => {
      for (const running of all) {
        if (running.process && running.process.exitCode === null && running.process.signalCode === null) {
          this.options.onEvent(`${running.spec.name} did not stop in time; killing it`);
          running.process.kill("SIGKILL");
        }
      }
    }, this.options.stopGraceMs ?? 15_000);
    await Promise.all(all.map((running) => running.exited));
    clearTimeout(grace);
  }

  private launch(running: Running): void {
    const { spec } = running;
    const child = spawn(process.execPath, [...this.options.nodeArgs, spec.script, ...spec.args], {
      env: { ...process.env, ...spec.env },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      // Own process group: a terminal's Ctrl-C reaches only the supervisor, which then
      // stops each child once, in order. The IPC channel stops children if it dies.
      detached: true,
    });
    running.process = child;
    running.startedAtMs = performance.now();
    this.options.onEvent(`started ${spec.name} (pid ${child.pid})`);
    for (const stream of ["stdout", "stderr"] as const) {
      createInterface({ input: child[stream]!, crlfDelay: Infinity }).on("line", (line) => this.options.onLine(spec.name, line, stream));
    }
    running.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        resolve();
        if (this.stopping) return;
        const ranMs = performance.now() - running.startedAtMs;
        if (ranMs >= (this.options.stableAfterMs ?? 30_000)) running.restartDelayMs = this.options.restartInitialMs ?? 500;
        const delayMs = running.restartDelayMs;
        running.restartDelayMs = Math.min(this.options.restartMaxMs ?? 30_000, delayMs * 2);
        this.options.onEvent(`${spec.name} exited (${signal ?? `code ${code}`}); restarting in ${delayMs} ms`);
        running.restartTimer = setTimeout(() => this.launch(running), delayMs);
      });
    });
  }
}

import { statSync } from "node:fs";
import { Counter, Gauge, type Registry } from "prom-client";
import type { Logger } from "./logger.js";

/** What a reload did. */
export interface ReloadOutcome {
  /** "applied": some settings changed live; "unchanged": nothing that changes live changed; "rejected": the new config is invalid and the running one stays. */
  readonly outcome: "applied" | "unchanged" | "rejected";
  /** The settings put in force. */
  readonly applied: readonly string[];
  /** Settings that changed in the sources but take a restart; their running values stay. */
  readonly needRestart: readonly string[];
  /** Why a rejected config was rejected. */
  readonly error?: string;
}

/** What started a reload: a metrics label. */
export type ReloadTrigger = "sighup" | "file";

export interface LiveConfigOptions<Config extends object> {
  /** The service, for log lines. */
  readonly service: string;
  /** The config the process started with. */
  readonly initial: Config;
  /** Reads every source again (the file, the environment, the flags) and validates: throws on an invalid config. */
  readonly load: () => Config;
  /** The settings that change without a restart; a change to any other is reported, not applied. */
  readonly reloadable: readonly (keyof Config & string)[];
  /**
   * Puts `next` in force: only `changed` (reloadable settings) differ from the running
   * config. It must not drop a stream or a slot; it should not throw (validation is
   * `load`'s), and if it does, the running config stays.
   */
  readonly apply: (next: Config, changed: readonly (keyof Config & string)[]) => void;
  /** The config file to watch for changes; none: only SIGHUP reloads. */
  readonly file: string | undefined;
  readonly logger: Logger;
  readonly registry: Registry;
}

/** Wait this long after a change of the file before reading it: an editor or a ConfigMap update writes in steps. */
const settleMs = 200;
/** How often the file's status is polled: a stat follows a ConfigMap's symlink swap, which fs.watch misses. */
const pollMs = 1_000;

/**
 * A process's configuration that reloads without a restart: on SIGHUP and when its
 * config file changes, every source is read and validated again; an invalid config
 * keeps the running one (a log line that names the setting, and a metric), settings
 * that cannot change live are named and keep their running values, and the rest are
 * put in force together. `current` is the config in force, with its version.
 */
export class LiveConfig<Config extends object> {
  private running: Config;
  private runningVersion = 1;
  private loaded = new Date();
  private poller: NodeJS.Timeout | undefined;
  private settle: NodeJS.Timeout | undefined;
  private readonly reloads: Counter<"outcome" | "trigger">;
  private readonly failing: Gauge;
  private readonly onHangup = () => this.reload("sighup");

  constructor(private readonly options: LiveConfigOptions<Config>) {
    this.running = options.initial;
    this.reloads = new Counter({
      name: "infermesh_config_reloads_total",
      help: "Configuration reloads by outcome (applied, unchanged, rejected) and trigger (sighup, file)",
      labelNames: ["outcome", "trigger"] as const,
      registers: [options.registry],
    });
    this.failing = new Gauge({
      name: "infermesh_config_reload_failing",
      help: "1 while the last reload was rejected: the sources hold a config that is not running",
      registers: [options.registry],
    });
    const version = () => this.runningVersion;
    new Gauge({
      name: "infermesh_config_version",
      help: "The running configuration's version: 1 at start, one more for each reload that changed it",
      registers: [options.registry],
      collect() {
        this.set(version());
      },
    });
  }

  /** The config in force. */
  get current(): Config {
    return this.running;
  }

  get version(): number {
    return this.runningVersion;
  }

  /** When the config in force was loaded. */
  get loadedAt(): Date {
    return this.loaded;
  }

  /** Starts reloading on SIGHUP and on changes of the file. */
  watch(): void {
    process.on("SIGHUP", this.onHangup);
    const file = this.options.file;
    if (!file) return;
    let seen = fileState(file);
    this.poller = setInterval(() => {
      const now = fileState(file);
      if (now === seen) return;
      seen = now;
      clearTimeout(this.settle);
      this.settle = setTimeout(() => this.reload("file"), settleMs);
    }, pollMs);
    this.poller.unref();
  }

  close(): void {
    process.off("SIGHUP", this.onHangup);
    clearTimeout(this.settle);
    clearInterval(this.poller);
  }

  /** Reads the sources again and puts what changed live in force. */
  reload(trigger: ReloadTrigger): ReloadOutcome {
    const { logger, service } = this.options;
    let next: Config;
    try {
      next = this.options.load();
    } catch (error) {
      return this.reject(trigger, error);
    }
    const changed = (Object.keys(next) as (keyof Config & string)[]).filter(
      (key) => JSON.stringify(next[key]) !== JSON.stringify(this.running[key]),
    );
    const reloadable = new Set<string>(this.options.reloadable);
    const live = changed.filter((key) => reloadable.has(key));
    const needRestart = changed.filter((key) => !reloadable.has(key));
    if (needRestart.length > 0) {
      logger.warn(
        { service, settings: needRestart, trigger },
        `${needRestart.join(", ")} changed, but take a restart to change: the running values stay until then`,
      );
    }
    if (live.length === 0) {
      this.failing.set(0);
      this.reloads.inc({ outcome: "unchanged", trigger });
      return { outcome: "unchanged", applied: [], needRestart };
    }
    const effective = Object.freeze({ ...this.running, ...Object.fromEntries(live.map((key) => [key, next[key]])) }) as Config;
    try {
      this.options.apply(effective, live);
    } catch (error) {
      return this.reject(trigger, error);
    }
    this.running = effective;
    this.runningVersion += 1;
    this.loaded = new Date();
    this.failing.set(0);
    this.reloads.inc({ outcome: "applied", trigger });
    logger.info({ service, version: this.runningVersion, settings: live, trigger }, `configuration reloaded: ${live.join(", ")}`);
    return { outcome: "applied", applied: live, needRestart };
  }

  private reject(trigger: ReloadTrigger, error: unknown): ReloadOutcome {
    const message = error instanceof Error ? error.message : String(error);
    this.failing.set(1);
    this.reloads.inc({ outcome: "rejected", trigger });
    this.options.logger.error(
      { service: this.options.service, trigger, version: this.runningVersion },
      `configuration reload rejected, version ${this.runningVersion} keeps running: ${message}`,
    );
    return { outcome: "rejected", applied: [], needRestart: [], error: message };
  }
}

/** What tells a changed file: its inode (a ConfigMap swaps the file), size and modification time; "" while it cannot be read. */
function fileState(file: string): string {
  try {
    const stat = statSync(file);
    return `${stat.ino}:${stat.size}:${stat.mtimeMs}`;
  } catch {
    return "";
  }
}

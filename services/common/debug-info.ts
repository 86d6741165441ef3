import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ServiceImplementation } from "nice-grpc";
import type { Registry } from "prom-client";
import type { DebugServiceDefinition, GetDebugInfoResponse, RecentError } from "../../gen/infermesh/debug/v1/debug_service.js";
import { scrape } from "./metrics.js";
import { repoRoot } from "./paths.js";
import { LiveConfig } from "./live-config.js";

/** Most error lines a process keeps for bug reports. */
const keptErrors = 50;

/** The process's most recent error log lines (the logger records them), oldest first. */
const recentErrors: RecentError[] = [];

/** Records one error log line; called by the logger for every line at error level or above. */
export function recordError(line: {
  readonly msg?: unknown;
  readonly err?: unknown;
  readonly trace_id?: unknown;
  readonly request_id?: unknown;
}): void {
  const error = line.err as { message?: unknown } | undefined;
  const message = [line.msg, error?.message].filter((part) => typeof part === "string" && part !== "").join(": ");
  recentErrors.push({
    timeUnixMs: Date.now(),
    // A message, never a stack: a bug report is read by people, and may be shared.
    message: message.slice(0, 1_000),
    traceId: typeof line.trace_id === "string" ? line.trace_id : "",
    requestId: typeof line.request_id === "string" ? line.request_id : "",
  });
  if (recentErrors.length > keptErrors) recentErrors.shift();
}

/** Setting names whose values are secrets: keys, tokens, passwords. */
const secretName = /key|secret|token|password|credential|authorization/i;

/**
 * A configuration fit for a bug report: every value under a name that holds a secret
 * (API keys and their hashes, an upstream's key) is "[redacted]", and so is a URL's
 * user and password (a Redis URL's); the rest is kept, so
 * the report shows what the service ran with.
 */
export function redact(value: unknown, name = ""): unknown {
  if (value !== null && typeof value === "object") {
    if (Array.isArray(value)) return value.map((item) => redact(item, name));
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, redact(item, key)]));
  }
  if (secretName.test(name) && value !== undefined && value !== "" && typeof value !== "boolean" && typeof value !== "number")
    return "[redacted]";
  // A URL's user and password (redis://:password@host): the rest of it helps a bug report.
  if (typeof value === "string") return value.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/i, "$1[redacted]@");
  return value;
}

/** When this process started: its config's load time until a reload. */
const processStarted = new Date();

let version: string | undefined;
/** infermesh's version, from package.json. */
export function infermeshVersion(): string {
  version ??= (JSON.parse(readFileSync(join(repoRoot(), "package.json"), "utf8")) as { version: string }).version;
  return version;
}

/** What a service puts into a bug report. */
export interface DebugSource {
  readonly service: string;
  /** The config it started with, or the live one (reloaded on SIGHUP and file changes). */
  /** Its config, or the LiveConfig that holds it (then the running config and its version). */
  readonly config: unknown;
  readonly registry: Registry;
  /** Facts only this service knows (a worker's engine and builds). */
  readonly details?: () => unknown;
}

/** This process's part of a bug report. */
export async function debugInfo(source: DebugSource): Promise<GetDebugInfoResponse> {
  const live = source.config instanceof LiveConfig ? source.config : undefined;
  return {
    service: source.service,
    version: infermeshVersion(),
    nodeVersion: process.version,
    configJson: JSON.stringify(redact(live ? live.current : source.config)),
    configVersion: live?.version ?? 1,
    configLoadedUnixMs: (live?.loadedAt ?? processStarted).getTime(),
    metricsText: (await scrape(source.registry, undefined)).text,
    recentErrors: [...recentErrors],
    detailsJson: JSON.stringify(source.details?.() ?? {}),
    uptimeSeconds: process.uptime(),
  };
}

export const createDebugService = (source: DebugSource): ServiceImplementation<typeof DebugServiceDefinition> => ({
  getDebugInfo: () => debugInfo(source),
});

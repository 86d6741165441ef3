import type { Logger } from "./logger.js";
import { shutdownTelemetry } from "./telemetry/register.js";

/**
 * Runs `shutdown` once on SIGTERM or SIGINT, then flushes telemetry and exits; a second
 * signal exits at once. `shutdown` should report NOT_SERVING, drain and close servers.
 */
export function exitOnSignals(logger: Logger, shutdown: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal; exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    shutdown()
      .catch((error: unknown) => logger.error({ err: error }, "shutdown failed"))
      .then(shutdownTelemetry)
      .finally(() => {
        logger.info("stopped");
        logger.flush();
        process.exit(0);
      });
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  // Under the local supervisor an IPC channel ties the child to it: if the supervisor
  // dies without stopping us, shut down rather than linger as an orphan.
  if (process.send) process.once("disconnect", () => onSignal("SIGHUP"));
}

/** Logs a startup failure plainly and exits non-zero. */
export function exitOnStartupFailure(logger: Logger | undefined, error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  if (logger) logger.fatal({ err: error }, `failed to start: ${message}`);
  else process.stderr.write(`failed to start: ${message}\n`);
  process.exit(1);
}

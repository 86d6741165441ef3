import { trace } from "@opentelemetry/api";
import { pino, type Logger } from "pino";
import { recordError } from "./debug-info.js";
import { traceFields } from "./telemetry/tracing.js";

export type { Logger } from "pino";

/**
 * One JSON object per line on stdout. A line written in a trace context's synchronous
 * run (context.with) carries its trace and span ids; code that logs for a request
 * across awaits passes them itself (telemetry/tracing.ts's traceFields), as the
 * decision events do.
 */
export function createLogger(service: string, level: string): Logger {
  return pino({
    level,
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    hooks: {
      // Error lines are also kept for bug reports (GET /debug/bundle), without their stacks.
      logMethod(args, method, level) {
        if (level >= 50) {
          const [first, second] = args as unknown[];
          const fields = typeof first === "object" && first !== null ? (first as Record<string, unknown>) : {};
          const msg = typeof first === "string" ? first : typeof second === "string" ? second : undefined;
          const spanContext = trace.getActiveSpan()?.spanContext();
          recordError({ ...fields, msg, trace_id: fields.trace_id ?? spanContext?.traceId });
        }
        method.apply(this, args);
      },
    },
    mixin: () => traceFields(trace.getActiveSpan()),
  });
}

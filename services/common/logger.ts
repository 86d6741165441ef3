import { trace } from "@opentelemetry/api";
import { pino, type Logger } from "pino";
import { recordError } from "./debug-info.js";

export type { Logger } from "pino";

/** One JSON object per line on stdout, with the active trace and span ids. */
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
    mixin() {
      const spanContext = trace.getActiveSpan()?.spanContext();
      return spanContext ? { trace_id: spanContext.traceId, span_id: spanContext.spanId } : {};
    },
  });
}

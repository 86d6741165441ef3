import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

/**
 * What a release must meet, and the load it is tried under: the seeds' release gate.
 * Defaults are the seeds' figures (p95 TTFT ≤ 7 s, p95 end to end ≤ 20 s, errors under
 * 0.5 %, at least 2 requests a second sustained; STEP 1 → 2 → 4 → 8 → 16 concurrent,
 * SPIKE 5 requests a second for 60 s, SOAK 2 a second for 30 minutes).
 */
export const sloSchema = z
  .object({
    slo: z
      .object({
        /** 95th percentile of the time to the first token. */
        ttftP95Ms: z.number().positive().default(7_000),
        /** 95th percentile of a whole request, first byte sent to last received. */
        e2eP95Ms: z.number().positive().default(20_000),
        /** 95th percentile of a request's mean time between tokens; none when absent. */
        itlP95Ms: z.number().positive().optional(),
        /** Share of requests that failed (an error status, an error event, a broken or timed-out stream). */
        errorRate: z.number().min(0).max(1).default(0.005),
        /** Requests completed a second, at least, through the soak. */
        qpsFloor: z.number().min(0).default(2),
      })
      .strict()
      .prefault({}),
    phases: z
      .object({
        step: z
          .object({
            concurrency: z.array(z.number().int().min(1).max(4_096)).min(1).default([1, 2, 4, 8, 16]),
            secondsEach: z.number().positive().default(60),
          })
          .strict()
          .prefault({}),
        spike: z
          .object({ qps: z.number().positive().max(10_000).default(5), seconds: z.number().positive().default(60) })
          .strict()
          .prefault({}),
        soak: z
          .object({ qps: z.number().positive().max(10_000).default(2), seconds: z.number().positive().default(1_800) })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /** Share of requests that carry a long document (a few thousand tokens) rather than a short chat. */
    longContextShare: z.number().min(0).max(1).default(0.2),
    /** A request that takes longer than this fails. */
    requestTimeoutMs: z.number().positive().default(60_000),
    /** Open-loop phases (spike, soak) stop sending new requests at this many in flight, and count the ones not sent as failed. */
    maxInFlight: z.number().int().min(1).max(65_536).default(512),
  })
  .strict();

export type GateSpec = z.infer<typeof sloSchema>;

/** About a minute in all: 5 s per step, a 10 s spike, a 20 s soak. */
export const quickPhases: GateSpec["phases"] = {
  step: { concurrency: [1, 2, 4, 8, 16], secondsEach: 5 },
  spike: { qps: 5, seconds: 10 },
  soak: { qps: 2, seconds: 20 },
};

/** The spec from a YAML or JSON file (none: the defaults); `quick` replaces the phases with the quick profile. */
export function loadSpec(file: string | undefined, quick: boolean): GateSpec {
  const raw = file === undefined ? {} : parseYaml(readFileSync(file, "utf8"));
  const parsed = sloSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    throw new Error(`${file}: ${parsed.error.issues.map((issue) => `${issue.path.join(".") || "(top)"}: ${issue.message}`).join("; ")}`);
  }
  return quick ? { ...parsed.data, phases: quickPhases } : parsed.data;
}

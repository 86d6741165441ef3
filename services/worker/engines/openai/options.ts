import { z } from "zod";
import { integer } from "../../../common/config.js";

/** Whether requests carry their class as the upstream's `priority`, and which values it serves first. */
export const priorityOrders = ["off", "lower-first", "higher-first"] as const;
export type PriorityOrder = (typeof priorityOrders)[number];

/** Which engine server sits behind the base URL; "auto" tells by its metric names. */
export const upstreamFlavors = ["auto", "vllm", "sglang", "trtllm", "llamacpp"] as const;
export type UpstreamFlavor = (typeof upstreamFlavors)[number];

const modelIdList = z
  .union([
    z.array(z.string().min(1)),
    z.string().transform((text) =>
      text
        .split(",")
        .map((id) => id.trim())
        .filter((id) => id !== ""),
    ),
  ])
  .default([]);

const httpUrl = z.url({ protocol: /^https?$/, error: "expected an http(s) URL" }).transform((text) => text.replace(/\/+$/, ""));

/** Options of the `openai` engine: an OpenAI-compatible engine server the worker forwards to. */
export const openAiEngineOptionsSchema = z.object({
  /** Root URL of the upstream server, without /v1 (e.g. http://127.0.0.1:8000). */
  baseUrl: httpUrl,
  /** Sent as "Authorization: Bearer …"; never logged. Empty sends none. */
  apiKey: z.string().default(""),
  /** Model ids to serve; empty discovers them from the upstream's GET /v1/models at start. */
  modelIds: modelIdList,
  /** Prometheus endpoint; empty tries {baseUrl}/metrics, then {baseUrl}/prometheus/metrics (trtllm-serve). */
  metricsUrl: z.union([httpUrl, z.literal("")]).default(""),
  /** Engine behind the URL; decides metric names and which extra request fields are safe to send. */
  flavor: z.enum(upstreamFlavors).default("auto"),
  /** How often /metrics is read, in milliseconds. */
  pollIntervalMs: integer(50, 600_000).default(1_000),
  /** Limit for connecting and receiving response headers, and for whole non-streamed calls. */
  requestTimeoutMs: integer(100, 3_600_000).default(30_000),
  /** Context window reported when the upstream does not list max_model_len. */
  contextTokens: integer(1, 16_777_216).default(8_192),
  /**
   * Whether each request carries its priority class as the upstream's `priority` field,
   * and which way the upstream orders it: vLLM run with `--scheduling-policy priority`
   * serves lower values first ("lower-first"); SGLang run with
   * `--enable-priority-scheduling` serves higher values first ("higher-first") unless
   * also run with `--schedule-low-priority-values-first`. vLLM without priority scheduling
   * refuses a non-zero priority, so it is off unless set.
   */
  priorityOrder: z.enum(priorityOrders).default("off"),
  /** Sequences the upstream decodes at once, reported to the router. */
  maxSequences: integer(1, 65_536).default(256),
});

/** Options as written in configuration (defaults not yet applied). */
export type OpenAiEngineOptionsInput = z.input<typeof openAiEngineOptionsSchema>;
/** Validated options with defaults applied. */
export type OpenAiEngineOptions = z.output<typeof openAiEngineOptionsSchema>;

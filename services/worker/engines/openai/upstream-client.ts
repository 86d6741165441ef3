import { EngineError } from "../engine.js";

/** How to reach the upstream server. */
export interface UpstreamClientOptions {
  readonly baseUrl: string;
  readonly apiKey: string;
  readonly requestTimeoutMs: number;
}

/** A failed upstream HTTP call, before it is classified. */
export interface UpstreamHttpFailure {
  readonly status: number;
  readonly message: string;
}

/**
 * HTTP to the upstream: authorization, time limits, and the one place where transport
 * failures and HTTP error statuses become EngineErrors. Messages carry the upstream's
 * own error text with credentials removed, never the request URL or headers.
 */
export class UpstreamClient {
  constructor(private readonly options: UpstreamClientOptions) {}

  /** POSTs JSON (or GETs when `body` is undefined) and returns the parsed JSON answer; the time limit covers the whole call. */
  async json(path: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    return this.call(this.url(path), body, signal, async (response) => {
      if (!response.ok) throw await this.errorOf(response);
      const text = await response.text();
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw new EngineError("internal", `the upstream answered ${path} with something that is not JSON`);
      }
    });
  }

  /** GETs a text resource (the Prometheus endpoint); HTTP errors are returned, not thrown. */
  async text(url: string, signal?: AbortSignal): Promise<{ status: number; contentType: string; text: string }> {
    return this.call(url, undefined, signal, async (response) => ({
      status: response.status,
      contentType: response.headers.get("content-type") ?? "",
      text: await response.text(),
    }));
  }

  /** POSTs a streaming request; the time limit covers the wait for response headers only. */
  async stream(path: string, body: unknown, signal: AbortSignal): Promise<Response> {
    return this.call(
      this.url(path),
      body,
      signal,
      async (response) => {
        if (!response.ok) throw await this.errorOf(response);
        if (response.body === null) throw new EngineError("internal", "the upstream answered a streamed request without a body");
        return response;
      },
      true,
    );
  }

  /** Classifies a non-2xx response, reading the OpenAI error body (or FastAPI's `detail`). */
  async errorOf(response: Response): Promise<EngineError> {
    let text = "";
    try {
      text = await response.text();
    } catch {
      // The body is only for the message; the status decides the kind.
    }
    return httpError({ status: response.status, message: this.redact(errorMessageOf(text) || response.statusText || "no message") });
  }

  /** Removes the API key and bearer tokens from text bound for a caller or a log. */
  redact(text: string): string {
    let clean = text.replace(/Bearer\s+[^\s"',]+/gi, "Bearer [redacted]");
    if (this.options.apiKey.length >= 4) clean = clean.split(this.options.apiKey).join("[redacted]");
    return clean.length > 500 ? `${clean.slice(0, 500)}…` : clean;
  }

  url(path: string): string {
    return `${this.options.baseUrl}${path}`;
  }

  private async call<T>(
    url: string,
    body: unknown,
    signal: AbortSignal | undefined,
    read: (response: Response) => Promise<T>,
    streaming = false,
  ): Promise<T> {
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new Error("upstream request timed out"));
    }, this.options.requestTimeoutMs);
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) onAbort();
    try {
      const headers: Record<string, string> = { accept: "application/json, text/event-stream, text/plain" };
      if (body !== undefined) headers["content-type"] = "application/json";
      if (this.options.apiKey !== "") headers.authorization = `Bearer ${this.options.apiKey}`;
      const response = await fetch(url, {
        method: body === undefined ? "GET" : "POST",
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
      });
      return await read(response);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (error instanceof EngineError) throw error;
      if (timedOut) throw new EngineError("unavailable", `the upstream did not answer within ${this.options.requestTimeoutMs} ms`);
      throw transportError(error);
    } finally {
      clearTimeout(timer);
      // A stream's body keeps following the caller's signal until the caller aborts it.
      if (!streaming) signal?.removeEventListener("abort", onAbort);
    }
  }
}

/** HTTP status → EngineError kind: the one table for upstream answers. */
export function httpError(failure: UpstreamHttpFailure): EngineError {
  const message = `upstream answered ${failure.status}: ${failure.message}`;
  const status = failure.status;
  if (status === 400 || status === 413 || status === 422) return new EngineError("invalid_argument", message);
  if (status === 401) return new EngineError("unauthenticated", message);
  if (status === 403) return new EngineError("permission_denied", message);
  if (status === 404) return new EngineError("not_found", message);
  if (status === 408) return new EngineError("deadline_exceeded", message);
  if (status === 429) return new EngineError("resource_exhausted", message);
  if (status === 405 || status === 501) return new EngineError("unimplemented", message);
  if (status === 502 || status === 503 || status === 504) return new EngineError("unavailable", message);
  if (status >= 500) return new EngineError("internal", message);
  return new EngineError("invalid_argument", message);
}

/** The message in an error body: OpenAI's `error.message`, vLLM's flat `message`, FastAPI's `detail`. */
export function errorMessageOf(text: string): string {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return text.trim().replace(/\s+/g, " ");
  }
  if (typeof body !== "object" || body === null) return String(body);
  const record = body as Record<string, unknown>;
  const error = record.error;
  if (typeof error === "string") return error;
  if (typeof error === "object" && error !== null && typeof (error as Record<string, unknown>).message === "string") {
    return (error as Record<string, string>).message!;
  }
  if (typeof record.message === "string") return record.message;
  if (typeof record.detail === "string") return record.detail;
  if (Array.isArray(record.detail)) {
    return record.detail
      .map((item) =>
        typeof item === "object" && item !== null && "msg" in item ? String((item as { msg: unknown }).msg) : JSON.stringify(item),
      )
      .join("; ");
  }
  return text.trim();
}

/** A connection that could not be made or broke: the upstream is down or unreachable. */
export function transportError(error: unknown): EngineError {
  const cause = (error as { cause?: { code?: unknown } } | undefined)?.cause;
  const code = typeof cause?.code === "string" ? cause.code : (error as { code?: unknown } | undefined)?.code;
  const detail = typeof code === "string" ? code : error instanceof Error ? error.message : String(error);
  return new EngineError("unavailable", `the upstream engine server is unreachable (${detail})`);
}

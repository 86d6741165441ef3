import type { FastifyReply } from "fastify";
import { openAiErrorBody, toApiError } from "../errors.js";

/**
 * A server-sent-events response in OpenAI's framing: `data: <json>\n\n` per event,
 * `data: [DONE]\n\n` at the end. Writes never wait; `coalescing` merges what would be
 * sent while the client reads slower than the gateway writes.
 */
export class SseStream {
  private readonly out: FastifyReply["raw"];

  constructor(reply: FastifyReply, headers: Record<string, string>) {
    reply.hijack();
    this.out = reply.raw;
    this.out.writeHead(200, {
      // Headers hooks set on the reply (CORS, x-request-id) are kept.
      ...(reply.getHeaders() as Record<string, string>),
      ...headers,
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
  }

  /** The client went away (or the stream was ended). */
  get closed(): boolean {
    return this.out.destroyed || this.out.writableEnded;
  }

  /** The socket's buffer is full: the client reads slower than tokens come. */
  get backedUp(): boolean {
    return this.out.writableNeedDrain;
  }

  /**
   * Returns a function that schedules `flush` once: after the current I/O phase, so that
   * deltas arriving together (one socket read of a worker stream holds many) go out as
   * one chunk, and while the client is backed up, on `drain`. A lone delta waits at
   * most one event-loop turn.
   */
  coalescing(flush: () => void): () => void {
    this.out.on("drain", flush);
    let scheduled = false;
    return () => {
      if (scheduled) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        if (!this.backedUp) flush();
      });
    };
  }

  /** Sends one event whose JSON is already serialised. */
  send(json: string): void {
    if (!this.closed) this.out.write(`data: ${json}\n\n`);
  }

  /** Sends one named event (`event: <type>`), as the Responses API streams. */
  sendEvent(type: string, json: string): void {
    if (!this.closed) this.out.write(`event: ${type}\ndata: ${json}\n\n`);
  }

  /** Sends the terminal error event of a stream that had started. */
  sendError(error: unknown): void {
    this.send(JSON.stringify(openAiErrorBody(toApiError(error))));
  }

  done(): void {
    if (!this.closed) this.out.end("data: [DONE]\n\n");
  }

  end(): void {
    if (!this.closed) this.out.end();
  }
}

/** What every chunk of one streamed completion shares. */
export interface StreamIds {
  readonly id: string;
  readonly created: number;
  readonly fingerprint: string;
}

/**
 * The JSON of a stream's chunks: the shared fields are serialised once (and again only
 * when the serving model becomes known); each chunk adds one choice, or the usage.
 */
export class ChunkEnvelope {
  private head = "";
  private readonly tail: string;

  constructor(
    private readonly ids: StreamIds,
    private readonly object: "chat.completion.chunk" | "text_completion",
    model: string,
    includeUsage: boolean,
  ) {
    this.tail = includeUsage ? `,"usage":null}` : "}";
    this.setModel(model);
  }

  setModel(model: string): void {
    const { id, created, fingerprint } = this.ids;
    this.head = `{"id":"${id}","object":"${this.object}","created":${created},"model":${JSON.stringify(model)},"system_fingerprint":"${fingerprint}",`;
  }

  /** A chunk of one choice. */
  choice(choice: object): string {
    return `${this.head}"choices":[${JSON.stringify(choice)}]${this.tail}`;
  }

  /** The final usage chunk: no choices. */
  usage(usage: object): string {
    return `${this.head}"choices":[],"usage":${JSON.stringify(usage)}}`;
  }
}

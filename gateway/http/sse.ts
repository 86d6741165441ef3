import type { FastifyReply } from "fastify";
import { Status } from "nice-grpc";
import { ApiError, openAiErrorBody, toApiError } from "../errors.js";
import type { GenerationEvent } from "../mesh/generation.js";

/**
 * A server-sent-events response in OpenAI's framing: `data: <json>\n\n` per event,
 * `data: [DONE]\n\n` at the end. Writes never wait; `backedUp` says when the client
 * reads slower than the gateway writes, so the caller can merge what it would send
 * next and flush it on `onDrain`.
 */
export class SseStream {
  private readonly out: FastifyReply["raw"];

  constructor(reply: FastifyReply, headers: Record<string, string>) {
    reply.hijack();
    this.out = reply.raw;
    this.out.writeHead(200, {
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

  onDrain(listener: () => void): void {
    this.out.on("drain", listener);
  }

  /** Sends one event whose JSON is already serialised. */
  send(json: string): void {
    if (!this.closed) this.out.write(`data: ${json}\n\n`);
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

/** The worker's terminal error event as an ApiError. */
export const streamErrorOf = (event: Extract<GenerationEvent, { $case: "error" }>) =>
  new ApiError(event.value.statusCode as Status, event.value.message);

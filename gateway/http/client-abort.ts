import type { FastifyReply } from "fastify";

/**
 * A signal that aborts when the client goes away before the response is complete:
 * a closed socket cancels admission, routing and the worker's decoding.
 */
export function clientAbort(reply: FastifyReply): AbortController {
  const abort = new AbortController();
  reply.raw.on("close", () => {
    if (!reply.raw.writableFinished) abort.abort(new Error("client disconnected"));
  });
  return abort;
}

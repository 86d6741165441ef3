import type { FastifyReply } from "fastify";
import { httpStatusOf, openAiErrorBody, type ApiError } from "../errors.js";

/** Sends an OpenAI-shaped error with its HTTP status (and Retry-After where it applies). */
export function sendError(reply: FastifyReply, error: ApiError, httpStatus?: number): FastifyReply {
  const status = httpStatus ?? httpStatusOf(error.status);
  if (status === 429 || status === 503 || status === 504) {
    // Every overload, outage and timeout answer says when to come back; 1 s unless admission knows better.
    reply.header("retry-after", String(Math.max(1, Math.ceil((error.details.retryAfterMs ?? 1_000) / 1000))));
  }
  return reply.code(status).send(openAiErrorBody(error));
}

import type { FastifyReply } from "fastify";
import { httpStatusOf, openAiErrorBody, type ApiError } from "../errors.js";

/** Sends an OpenAI-shaped error with its HTTP status (and Retry-After where it applies). */
export function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  const status = httpStatusOf(error.status);
  if (error.details.retryAfterMs !== undefined && (status === 429 || status === 503)) {
    reply.header("retry-after", String(Math.max(1, Math.ceil(error.details.retryAfterMs / 1000))));
  }
  return reply.code(status).send(openAiErrorBody(error));
}

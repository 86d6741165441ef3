import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { runEmbedding } from "../../flow/embed.js";
import { resolveEmbedding } from "../../flow/resolve.js";
import { clientAbort } from "../client-abort.js";
import { askedOf, type HttpDeps } from "../deps.js";
import { parseBody } from "../validation.js";
import { embeddingBody } from "./schema.js";

/** A vector as OpenAI's base64 encoding: little-endian float32s. */
const base64Of = (values: readonly number[]) => {
  const buffer = Buffer.alloc(values.length * 4);
  for (const [index, value] of values.entries()) buffer.writeFloatLE(value, index * 4);
  return buffer.toString("base64");
};

/** POST /v1/embeddings (and /api/v1/…): one vector per input, in order. */
export function registerEmbeddings(app: FastifyInstance, deps: HttpDeps): void {
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const body = parseBody(embeddingBody, request.body);
    const inputs = typeof body.input === "string" ? [body.input] : body.input;
    const resolved = await resolveEmbedding(deps.access, request.identity, askedOf(request, body.model, body.user), inputs);
    const result = await runEmbedding(deps.flow, resolved, clientAbort(reply).signal);
    const base64 = body.encoding_format === "base64";
    return reply.send({
      object: "list",
      data: result.vectors.map((vector, index) => ({ object: "embedding", index, embedding: base64 ? base64Of(vector) : vector })),
      model: resolved.model,
      usage: { prompt_tokens: result.promptTokens, total_tokens: result.promptTokens },
    });
  };
  app.post("/v1/embeddings", handler);
  app.post("/api/v1/embeddings", handler);
}

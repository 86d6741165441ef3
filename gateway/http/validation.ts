import { Status } from "nice-grpc";
import type { z } from "zod";
import { ApiError } from "../errors.js";

/** Parses a request body with `schema`; the first problem becomes a 400 naming the field. */
export function parseBody<Schema extends z.ZodType>(schema: Schema, body: unknown): z.infer<Schema> {
  if (body === undefined || body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new ApiError(Status.INVALID_ARGUMENT, "the request body must be a JSON object");
  }
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const param = issue.path.reduce<string>(
    (path, key) => (typeof key === "number" ? `${path}[${key}]` : path === "" ? String(key) : `${path}.${String(key)}`),
    "",
  );
  const message = param === "" ? issue.message : `Invalid value for '${param}': ${issue.message}`;
  throw new ApiError(Status.INVALID_ARGUMENT, message, { param: param || undefined, code: "invalid_value" });
}

import { Ajv } from "ajv";

/** Largest JSON Schema text a request may carry (a tool's parameters, a response_format). */
export const maxSchemaBytes = 64 * 1024;

/** Deepest nesting of objects and arrays in such a schema. */
export const maxSchemaDepth = 32;

const ajv = new Ajv({ strict: false, validateSchema: true });

/**
 * Parses a JSON Schema a request carries and checks it before any work starts: its size,
 * its nesting (checked on the text, without recursion, so no depth can overflow a
 * stack), and that it is a valid JSON Schema (ajv, against the draft-07 meta-schema),
 * which is what an engine needs to turn it into a grammar. Returns the problem, if any.
 */
export function checkJsonSchema(text: string): string | undefined {
  const bytes = Buffer.byteLength(text);
  if (bytes > maxSchemaBytes) return `the schema is ${bytes} bytes; at most ${maxSchemaBytes}`;
  const depth = nestingDepth(text);
  if (depth > maxSchemaDepth) return `the schema nests ${depth} levels deep; at most ${maxSchemaDepth}`;
  let schema: unknown;
  try {
    schema = JSON.parse(text);
  } catch {
    return "the schema is not valid JSON";
  }
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
    if (typeof schema === "boolean") return undefined;
    return "a schema must be a JSON object";
  }
  // Validated against draft-07's meta-schema whatever $schema names (2020-12's keywords
  // that draft-07 lacks are allowed there as unknown keywords).
  const { $schema: _ignored, ...body } = schema as Record<string, unknown>;
  if (!ajv.validateSchema(body)) {
    const first = ajv.errors?.[0];
    const where = first?.instancePath ? ` at ${first.instancePath}` : "";
    return `not a valid JSON Schema${where}: ${first?.message ?? "invalid"}`;
  }
  return undefined;
}

/**
 * The deepest nesting of [ and { in a JSON text, ignoring those inside strings: one
 * pass, no recursion, so it is safe on any input before JSON.parse or a validator
 * recurses into it.
 */
export function nestingDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (inString) {
      if (code === 92 /* \ */) index += 1;
      else if (code === 34 /* " */) inString = false;
    } else if (code === 34) {
      inString = true;
    } else if (code === 123 /* { */ || code === 91 /* [ */) {
      depth += 1;
      if (depth > deepest) deepest = depth;
    } else if (code === 125 || code === 93) {
      depth -= 1;
    }
  }
  return deepest;
}

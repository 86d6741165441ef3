import type { TokenLogprob, ToolCall, TopLogprob } from "../../../../gen/infermesh/common/v1/common.js";
import { EngineError } from "../engine.js";
import type { Random } from "../../../common/random.js";
import { charsPerToken, countTokens, wordPieces } from "./synthetic-text.js";

/** What a generation answers with, after any reasoning. */
export type AnswerShape =
  /** Word pieces; the answer ends on its own after `naturalTokens` unless max_tokens comes first. */
  | { readonly kind: "text"; readonly naturalTokens: number }
  /** A fixed JSON text, written 4 characters a token. */
  | { readonly kind: "json"; readonly text: string }
  /** Tool calls, handed over whole with the last of their tokens. */
  | { readonly kind: "tools"; readonly calls: readonly ToolCall[] };

/** One generated token. */
export interface SyntheticToken {
  readonly channel: "reasoning" | "answer" | "tool";
  /** Its text; empty for tool-call tokens, whose text is the calls themselves. */
  readonly text: string;
  /** Set on answer tokens when log probabilities were asked for. */
  readonly logprob: TokenLogprob | undefined;
  /** Set on the last tool-call token. */
  readonly toolCalls: readonly ToolCall[] | undefined;
}

/**
 * Writes one generation's tokens, one per call, from a seeded generator: reasoning
 * first, then the answer. It knows nothing of max_tokens or stop strings.
 */
export class OutputWriter {
  private written = 0;
  private readonly answerTokens: number;

  constructor(
    private readonly random: Random,
    private readonly reasoningTokens: number,
    private readonly answer: AnswerShape,
    /** Alternatives per answer token, or undefined for no log probabilities. */
    private readonly topLogprobs: number | undefined,
  ) {
    this.answerTokens =
      answer.kind === "text"
        ? answer.naturalTokens
        : answer.kind === "json"
          ? countTokens(answer.text)
          : answer.calls.reduce((sum, call) => sum + countTokens(call.name) + countTokens(call.arguments), 0);
  }

  /** Tokens the generation has when nothing cuts it short. */
  get naturalLength(): number {
    return this.reasoningTokens + this.answerTokens;
  }

  /** Whether every token has been written. */
  get done(): boolean {
    return this.written >= this.naturalLength;
  }

  /** The answer is tool calls. */
  get callsTools(): boolean {
    return this.answer.kind === "tools";
  }

  next(): SyntheticToken {
    const index = this.written;
    this.written += 1;
    if (index < this.reasoningTokens) {
      return { channel: "reasoning", text: this.piece(), logprob: undefined, toolCalls: undefined };
    }
    const answerIndex = index - this.reasoningTokens;
    switch (this.answer.kind) {
      case "text":
        return this.answerToken(this.piece());
      case "json": {
        const start = answerIndex * charsPerToken;
        return this.answerToken(this.answer.text.slice(start, start + charsPerToken));
      }
      case "tools": {
        const last = this.written === this.naturalLength;
        return { channel: "tool", text: "", logprob: undefined, toolCalls: last ? this.answer.calls : undefined };
      }
    }
  }

  private answerToken(text: string): SyntheticToken {
    return {
      channel: "answer",
      text,
      logprob: this.topLogprobs === undefined ? undefined : this.logprobOf(text, this.topLogprobs),
      toolCalls: undefined,
    };
  }

  private piece(): string {
    return wordPieces[this.random.below(wordPieces.length)]!;
  }

  /**
   * A well-formed synthetic distribution: the chosen token is the most likely one (p in
   * [0.5, 0.95]); alternatives share what is left, best first, so probabilities sum to at most 1.
   */
  private logprobOf(token: string, alternatives: number): TokenLogprob {
    const chosen = 0.5 + this.random.next() * 0.45;
    const top: TopLogprob[] = [];
    if (alternatives > 0) top.push({ token, logprob: Math.log(chosen), bytes: Buffer.from(token) });
    const others: number[] = [];
    let left = 1 - chosen;
    for (let index = 1; index < alternatives; index += 1) {
      const share = left * (0.3 + this.random.next() * 0.4);
      others.push(share);
      left -= share;
    }
    others.sort((a, b) => b - a);
    const used = new Set([token]);
    for (const probability of others) {
      let piece = this.piece();
      while (used.has(piece)) piece = wordPieces[(wordPieces.indexOf(piece) + 1) % wordPieces.length]!;
      used.add(piece);
      top.push({ token: piece, logprob: Math.log(probability), bytes: Buffer.from(piece) });
    }
    return { token, logprob: Math.log(chosen), bytes: Buffer.from(token), topLogprobs: top };
  }
}

/** Any JSON object the sim answers a json_object request with: a few words in a field. */
export function jsonObjectAnswer(random: Random, words: number): string {
  let text = "";
  for (let index = 0; index < words; index += 1) text += wordPieces[random.below(wordPieces.length)]!;
  return JSON.stringify({ sim: "synthetic", text: text.trim() });
}

/** Parses a JSON Schema text; EngineError "invalid_argument" naming `what` when it is not JSON. */
export function parseSchema(text: string, what: string): unknown {
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new EngineError("invalid_argument", `${what} is not valid JSON`);
  }
}

type Schema = Record<string, unknown>;

/**
 * A value satisfying the common parts of a JSON Schema: the required properties of
 * objects (all listed ones when none are marked required), enum/const, types, bounds,
 * minItems/minLength, first branch of anyOf/oneOf, allOf merged, local $refs.
 */
export function placeholderFor(schema: unknown, root: unknown = schema, depth = 0): unknown {
  if (typeof schema !== "object" || schema === null || depth > 16) return null;
  const node = schema as Schema;
  if (typeof node.$ref === "string") return placeholderFor(resolveRef(root, node.$ref), root, depth + 1);
  if ("const" in node) return node.const;
  if (Array.isArray(node.enum) && node.enum.length > 0) return node.enum[0];
  for (const key of ["anyOf", "oneOf"] as const) {
    const branches = node[key];
    if (Array.isArray(branches) && branches.length > 0) {
      const firstNonNull = branches.find((branch) => (branch as Schema | null)?.type !== "null") ?? branches[0];
      return placeholderFor(firstNonNull, root, depth + 1);
    }
  }
  if (Array.isArray(node.allOf)) {
    const merged: Record<string, unknown> = {};
    for (const part of node.allOf) Object.assign(merged, placeholderFor(part, root, depth + 1) ?? {});
    return merged;
  }
  const types = Array.isArray(node.type) ? node.type : [node.type];
  const type =
    types.find((candidate) => candidate !== "null") ?? types[0] ?? (node.properties ? "object" : node.items ? "array" : undefined);
  switch (type) {
    case "object": {
      const properties = (typeof node.properties === "object" && node.properties !== null ? node.properties : {}) as Schema;
      const names = Array.isArray(node.required)
        ? (node.required as unknown[]).filter((name): name is string => typeof name === "string")
        : Object.keys(properties);
      const value: Record<string, unknown> = {};
      for (const name of names) value[name] = placeholderFor(properties[name] ?? {}, root, depth + 1);
      return value;
    }
    case "array": {
      const count = Math.max(typeof node.minItems === "number" ? node.minItems : 0, 1);
      const bounded = typeof node.maxItems === "number" ? Math.min(count, node.maxItems) : count;
      return Array.from({ length: bounded }, () => placeholderFor(node.items ?? {}, root, depth + 1));
    }
    case "string": {
      if (node.format === "date-time") return "2025-01-01T00:00:00Z";
      if (node.format === "date") return "2025-01-01";
      if (node.format === "email") return "sim@example.com";
      if (node.format === "uri") return "https://example.com/sim";
      const minLength = typeof node.minLength === "number" ? node.minLength : 0;
      const text = "sim".padEnd(minLength, "x");
      return typeof node.maxLength === "number" ? text.slice(0, node.maxLength) : text;
    }
    case "integer":
    case "number":
      return numberWithin(node, type === "integer");
    case "boolean":
      return true;
    case "null":
      return null;
    default:
      return "sim";
  }
}

function numberWithin(node: Schema, integer: boolean): number {
  const step = integer ? 1 : 0.5;
  let value = 0;
  if (typeof node.minimum === "number") value = Math.max(value, node.minimum);
  if (typeof node.exclusiveMinimum === "number") value = Math.max(value, node.exclusiveMinimum + step);
  if (typeof node.maximum === "number") value = Math.min(value, node.maximum);
  if (typeof node.exclusiveMaximum === "number") value = Math.min(value, node.exclusiveMaximum - step);
  return integer ? Math.ceil(value) : value;
}

function resolveRef(root: unknown, ref: string): unknown {
  if (!ref.startsWith("#")) return {};
  let node: unknown = root;
  for (const part of ref
    .slice(1)
    .split("/")
    .filter((segment) => segment !== "")) {
    if (typeof node !== "object" || node === null) return {};
    node = (node as Schema)[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return node ?? {};
}

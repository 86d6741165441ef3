import { createFileRegistry, fromBinary, ScalarType, type DescMessage, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { ServerError, Status, type ServerMiddleware } from "nice-grpc";
import type { DescriptorIndex } from "./reflection.js";

/**
 * A request whose bytes the generated decoder refused (a 64-bit integer above 2^53, a
 * malformed message). It stands in for the message so that `refuseUndecodable`
 * answers INVALID_ARGUMENT naming the field; grpc-js itself would answer INTERNAL.
 */
export class UndecodableRequest {
  constructor(readonly reason: string) {}
}

interface MessageFns {
  decode(input: Uint8Array): unknown;
}

interface TsProtoDefinition {
  readonly fullName: string;
  readonly methods: Readonly<Record<string, { readonly name: string; readonly requestType: MessageFns }>>;
}

/** The same service definition, with request decoding that never throws (see UndecodableRequest). */
export function guardDecoding<Definition extends TsProtoDefinition>(definition: Definition, contracts: DescriptorIndex): Definition {
  let registry: FileRegistry | undefined;
  const methods: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(definition.methods)) {
    const decode = (input: Uint8Array) => {
      try {
        return method.requestType.decode(input);
      } catch (error) {
        registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, contracts.descriptorSet));
        const input_ = registry.getService(definition.fullName)?.methods.find((candidate) => candidate.name === method.name)?.input;
        return new UndecodableRequest(explain(input_, input, error));
      }
    };
    methods[key] = { ...method, requestType: { ...method.requestType, decode } };
  }
  return { ...definition, methods } as Definition;
}

/** Why `bytes` could not be decoded as `type`, naming the field where it can be found. */
function explain(type: DescMessage | undefined, bytes: Uint8Array, error: unknown): string {
  const cause = error instanceof Error ? error.message : String(error);
  if (!type) return `the request could not be decoded (${cause})`;
  let message: Record<string, unknown>;
  try {
    message = fromBinary(type, bytes) as unknown as Record<string, unknown>;
  } catch (parseError) {
    return `the request is not a valid ${type.typeName} (${parseError instanceof Error ? parseError.message : parseError})`;
  }
  const path = oversizedInteger(type, message, "");
  if (path) return `${path}: 64-bit integers must be below 2^53 (9007199254740992)`;
  return `the request is not a valid ${type.typeName} (${cause})`;
}

const is64Bit = (scalar: ScalarType) =>
  scalar === ScalarType.INT64 ||
  scalar === ScalarType.UINT64 ||
  scalar === ScalarType.SINT64 ||
  scalar === ScalarType.FIXED64 ||
  scalar === ScalarType.SFIXED64;

const tooBig = (value: unknown) =>
  typeof value === "bigint" && (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER));

/** The first field (proto names, e.g. "load.kv_used_tokens" or "prefix_block_hashes[3]") holding a 64-bit value past 2^53. */
function oversizedInteger(type: DescMessage, message: Record<string, unknown>, prefix: string): string | undefined {
  for (const field of type.fields) {
    let value = message[field.localName];
    if (field.oneof) {
      const chosen = message[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
      if (chosen?.case !== field.localName) continue;
      value = chosen.value;
    }
    const name = `${prefix}${field.name}`;
    if (field.fieldKind === "scalar" && is64Bit(field.scalar) && tooBig(value)) return name;
    if (field.fieldKind === "list" && field.listKind === "scalar" && is64Bit(field.scalar)) {
      const index = (value as unknown[]).findIndex(tooBig);
      if (index >= 0) return `${name}[${index}]`;
    }
    if (field.fieldKind === "message" && value) {
      const inner = oversizedInteger(field.message, value as Record<string, unknown>, `${name}.`);
      if (inner) return inner;
    }
    if (field.fieldKind === "list" && field.listKind === "message") {
      for (const [index, item] of (value as Record<string, unknown>[]).entries()) {
        const inner = oversizedInteger(field.message, item, `${name}[${index}].`);
        if (inner) return inner;
      }
    }
  }
  return undefined;
}

/** Refuses a request `guardDecoding` could not decode with INVALID_ARGUMENT and the reason. */
export function refuseUndecodable(): ServerMiddleware {
  return async function* refuseUndecodableMiddleware(call, context) {
    if (!call.requestStream) {
      if (call.request instanceof UndecodableRequest) throw new ServerError(Status.INVALID_ARGUMENT, call.request.reason);
      return yield* call.next(call.request, context);
    }
    const requests = call.request as AsyncIterable<unknown>;
    async function* checked() {
      for await (const request of requests) {
        if (request instanceof UndecodableRequest) throw new ServerError(Status.INVALID_ARGUMENT, request.reason);
        yield request;
      }
    }
    return yield* call.next(checked() as typeof call.request, context);
  };
}

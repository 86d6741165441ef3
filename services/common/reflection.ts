import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { FileDescriptorProtoSchema, type DescriptorProto, type EnumDescriptorProto } from "@bufbuild/protobuf/wkt";
import type { Server, ServiceImplementation } from "nice-grpc";
import {
  ServerReflectionDefinition as ReflectionV1Definition,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../../gen/grpc/reflection/v1/reflection.js";
import { ServerReflectionDefinition as ReflectionV1AlphaDefinition } from "../../gen/grpc/reflection/v1alpha/reflection.js";
import { repoRoot } from "./paths.js";

/** gRPC status NOT_FOUND, as reflection's ErrorResponse carries it. */
const notFound = 5;

/**
 * The compiled contracts as buf built them (`npm run proto` writes
 * gen/descriptors.binpb): every file's FileDescriptorProto bytes exactly as buf (and
 * protoc) serialize them, with comments, and where each symbol is defined.
 */
export class DescriptorIndex {
  private readonly files = new Map<string, { readonly bytes: Uint8Array; readonly dependencies: readonly string[] }>();
  private readonly symbols = new Map<string, string>();
  /** Every service in the contracts, fully qualified. */
  readonly services: string[] = [];

  constructor(
    /** The FileDescriptorSet's bytes. */
    readonly descriptorSet: Uint8Array,
  ) {
    // A FileDescriptorSet is field 1 (file) repeated: keep each file's bytes untouched.
    const reader = new BinaryReader(descriptorSet);
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (field !== 1 || wireType !== WireType.LengthDelimited) {
        reader.skip(wireType);
        continue;
      }
      const bytes = reader.bytes();
      const file = fromBinary(FileDescriptorProtoSchema, bytes);
      this.files.set(file.name, { bytes, dependencies: file.dependency });
      const define = (name: string) => this.symbols.set(file.package === "" ? name : `${file.package}.${name}`, file.name);
      const defineTypes = (scope: string, messages: readonly DescriptorProto[], enums: readonly EnumDescriptorProto[]) => {
        for (const enumType of enums) define(`${scope}${enumType.name}`);
        for (const message of messages) {
          define(`${scope}${message.name}`);
          for (const messageField of message.field) define(`${scope}${message.name}.${messageField.name}`);
          defineTypes(`${scope}${message.name}.`, message.nestedType, message.enumType);
        }
      };
      defineTypes("", file.messageType, file.enumType);
      for (const service of file.service) {
        define(service.name);
        this.services.push(file.package === "" ? service.name : `${file.package}.${service.name}`);
        for (const method of service.method) define(`${service.name}.${method.name}`);
      }
    }
  }

  /** Loads gen/descriptors.binpb. */
  static compiled(): DescriptorIndex {
    return new DescriptorIndex(readFileSync(join(repoRoot(), "gen", "descriptors.binpb")));
  }

  /** The file that defines `symbol` (a service, method, message, field or enum), if any. */
  fileDefining(symbol: string): string | undefined {
    return this.symbols.get(symbol.replace(/^\./, ""));
  }

  /** A file's bytes followed by those of every file it imports, transitively; undefined for an unknown file. */
  withDependencies(fileName: string): Uint8Array[] | undefined {
    if (!this.files.has(fileName)) return undefined;
    const order: Uint8Array[] = [];
    const seen = new Set<string>();
    const visit = (name: string) => {
      const file = this.files.get(name);
      if (!file || seen.has(name)) return;
      seen.add(name);
      order.push(file.bytes);
      for (const dependency of file.dependencies) visit(dependency);
    };
    visit(fileName);
    return order;
  }
}

/**
 * gRPC server reflection (v1 and v1alpha, which grpcurl, grpcio and older clients
 * speak) over the compiled contracts, listing grpc.health.v1.Health and `serviceNames`.
 */
export function addReflection(server: Server, serviceNames: readonly string[], index = DescriptorIndex.compiled()): void {
  const listed = ["grpc.health.v1.Health", ...serviceNames];
  for (const name of listed) {
    if (!index.services.includes(name)) throw new Error(`reflection: ${name} is not in gen/descriptors.binpb; run npm run proto`);
  }
  const answer = (request: ServerReflectionRequest): ServerReflectionResponse["messageResponse"] => {
    const files = (fileName: string | undefined, what: string): ServerReflectionResponse["messageResponse"] => {
      const descriptors = fileName === undefined ? undefined : index.withDependencies(fileName);
      if (!descriptors) return { $case: "errorResponse", value: { errorCode: notFound, errorMessage: `${what} not found` } };
      return { $case: "fileDescriptorResponse", value: { fileDescriptorProto: descriptors.map((bytes) => Buffer.from(bytes)) } };
    };
    const asked = request.messageRequest;
    switch (asked?.$case) {
      case "listServices":
        return { $case: "listServicesResponse", value: { service: listed.map((name) => ({ name })) } };
      case "fileByFilename":
        return files(asked.value, `file ${asked.value}`);
      case "fileContainingSymbol":
        return files(index.fileDefining(asked.value), `symbol ${asked.value}`);
      case "fileContainingExtension":
        return { $case: "errorResponse", value: { errorCode: notFound, errorMessage: "the contracts define no extensions" } };
      case "allExtensionNumbersOfType": {
        if (index.fileDefining(asked.value) === undefined)
          return { $case: "errorResponse", value: { errorCode: notFound, errorMessage: `type ${asked.value} not found` } };
        return { $case: "allExtensionNumbersResponse", value: { baseTypeName: asked.value, extensionNumber: [] } };
      }
      default:
        return { $case: "errorResponse", value: { errorCode: 3 /* INVALID_ARGUMENT */, errorMessage: "the request asks for nothing" } };
    }
  };
  const implementation: ServiceImplementation<typeof ReflectionV1Definition> = {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        yield { validHost: request.host, originalRequest: request, messageResponse: answer(request) };
      }
    },
  };
  server.add(ReflectionV1Definition, implementation);
  // v1alpha's messages are v1's, field for field.
  server.add(ReflectionV1AlphaDefinition, implementation as unknown as ServiceImplementation<typeof ReflectionV1AlphaDefinition>);
}

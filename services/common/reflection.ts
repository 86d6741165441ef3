import { EventEmitter } from "node:events";
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type DescriptorProto, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import type { Server } from "nice-grpc";
import { repoRoot } from "./paths.js";

function protoFilesUnder(directory: string): string[] {
  return readdirSync(directory, { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".proto"))
    .map((file) => relative(directory, join(directory, file)));
}

/**
 * Adds gRPC server reflection (v1 and v1alpha) describing every infermesh contract and
 * grpc.health.v1, so `grpcurl list` and `describe` work on every port. proto-loader is
 * used here and only here: it feeds @grpc/reflection, whose handlers are written for
 * grpc-js and are adapted to nice-grpc below.
 */
export function addReflection(server: Server, serviceNames: readonly string[]): void {
  const root = repoRoot();
  const protoDir = join(root, "proto");
  const vendorDir = join(root, "vendor-proto");
  const files = [...protoFilesUnder(protoDir), ...protoFilesUnder(vendorDir)];
  const packageDefinition = loadSync(files, { includeDirs: [protoDir, vendorDir], keepCase: true });
  qualifyTypeNames(packageDefinition);
  const reflection = new ReflectionService(packageDefinition, { services: ["grpc.health.v1.Health", ...serviceNames] });
  reflection.addToServer({
    addService(definition: grpc.ServiceDefinition, handlers: grpc.UntypedServiceImplementation) {
      const implementation: Record<string, unknown> = {};
      for (const method of Object.keys(definition)) {
        const handler = handlers[method] as (stream: EventEmitter) => void;
        implementation[method] = async function* (requests: AsyncIterable<unknown>) {
          const pending: unknown[] = [];
          const stream = Object.assign(new EventEmitter(), {
            write: (message: unknown) => pending.push(message),
            end: () => undefined,
          });
          handler(stream);
          for await (const request of requests) {
            stream.emit("data", request);
            yield* pending.splice(0);
          }
        };
      }
      server.add(definition, implementation as never);
    },
  });
}

/**
 * proto-loader (through protobufjs) writes type references relative to their scope
 * ("common.v1.Usage"); protoc writes them fully qualified (".infermesh.common.v1.Usage")
 * and some reflection clients resolve only that form. Rewrites every reference in place
 * to the fully qualified form, resolving it by protobuf's scoping rules.
 */
function qualifyTypeNames(packageDefinition: ReturnType<typeof loadSync>): void {
  const lists = descriptorLists(packageDefinition);
  const files = [...new Set(lists.flat())].map((buffer) => ({ buffer, file: fromBinary(FileDescriptorProtoSchema, buffer) }));
  const fileOf = new Map<string, string>();
  const collect = (fileName: string, scope: string, messages: DescriptorProto[], enums: { name: string }[]) => {
    for (const enumType of enums) fileOf.set(`${scope}.${enumType.name}`, fileName);
    for (const message of messages) {
      fileOf.set(`${scope}.${message.name}`, fileName);
      collect(fileName, `${scope}.${message.name}`, message.nestedType, message.enumType);
    }
  };
  for (const { file } of files) collect(file.name, file.package, file.messageType, file.enumType);

  const rewritten = new Map<Buffer, Buffer>();
  for (const { buffer, file } of files) {
    // Also lists the files it refers to as dependencies, which protobufjs leaves out.
    const dependencies = new Set(file.dependency);
    const qualify = (name: string, scope: string): string => {
      const bare = name.replace(/^\./, "");
      const scopes = name.startsWith(".") ? [""] : scope.split(".").map((_, index, parts) => parts.slice(0, parts.length - index).join(".")).concat("");
      for (const outer of scopes) {
        const candidate = outer === "" ? bare : `${outer}.${bare}`;
        const definedIn = fileOf.get(candidate);
        if (definedIn === undefined) continue;
        if (definedIn !== file.name) dependencies.add(definedIn);
        return `.${candidate}`;
      }
      return name;
    };
    const rewriteMessages = (scope: string, messages: DescriptorProto[]) => {
      for (const message of messages) {
        const inner = `${scope}.${message.name}`;
        for (const field of message.field) if (field.typeName !== "") field.typeName = qualify(field.typeName, inner);
        rewriteMessages(inner, message.nestedType);
      }
    };
    rewriteMessages(file.package, file.messageType);
    for (const service of file.service) {
      for (const method of service.method) {
        method.inputType = qualify(method.inputType, file.package);
        method.outputType = qualify(method.outputType, file.package);
      }
    }
    file.dependency = [...dependencies];
    rewritten.set(buffer, Buffer.from(toBinary(FileDescriptorProtoSchema, file as FileDescriptorProto)));
  }
  for (const list of lists) list.forEach((buffer, index) => (list[index] = rewritten.get(buffer) ?? buffer));
}

/** Every fileDescriptorProtos array of a package definition (services' methods and types). */
function descriptorLists(packageDefinition: ReturnType<typeof loadSync>): Buffer[][] {
  const lists: Buffer[][] = [];
  const visit = (value: unknown) => {
    const protos = (value as { fileDescriptorProtos?: Buffer[] } | undefined)?.fileDescriptorProtos;
    if (Array.isArray(protos)) lists.push(protos);
  };
  for (const entry of Object.values(packageDefinition)) {
    visit(entry);
    for (const method of Object.values(entry as Record<string, { requestType?: unknown; responseType?: unknown }>)) {
      visit(method?.requestType);
      visit(method?.responseType);
    }
  }
  return lists;
}

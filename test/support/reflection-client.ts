/** A gRPC server-reflection client (the protocol grpcurl speaks), for tests. */
import { createRequire } from "node:module";
import { credentials as grpcCredentials, loadPackageDefinition, type ChannelCredentials, type ServiceClientConstructor } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type DescriptorProto } from "@bufbuild/protobuf/wkt";

const require = createRequire(import.meta.url);
const reflectionProto = require.resolve("@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto");
const definition = loadPackageDefinition(loadSync(reflectionProto, { keepCase: true })) as any;
const ServerReflection = definition.grpc.reflection.v1.ServerReflection as ServiceClientConstructor;

async function ask(address: string, request: object, credentials: ChannelCredentials): Promise<any> {
  const client = new ServerReflection(address, credentials);
  try {
    return await new Promise((resolve, reject) => {
      const call = (client as any).ServerReflectionInfo();
      call.on("data", resolve);
      call.on("error", reject);
      call.write(request);
      call.end();
    });
  } finally {
    client.close();
  }
}

/** What `grpcurl list` shows. */
export async function listServices(address: string, credentials = grpcCredentials.createInsecure()): Promise<string[]> {
  const response = await ask(address, { list_services: "" }, credentials);
  return response.list_services_response.service.map((service: { name: string }) => service.name);
}

/** A file of `grpcurl describe`: its package, the types it defines and the types it references. */
export interface DescribedFile {
  readonly package: string;
  readonly types: string[];
  readonly references: string[];
}

/** The files the server returns for a symbol (the symbol's file and its dependencies). */
export async function describeSymbol(address: string, symbol: string, credentials = grpcCredentials.createInsecure()): Promise<DescribedFile[]> {
  const response = await ask(address, { file_containing_symbol: symbol }, credentials);
  if (response.error_response) throw new Error(response.error_response.error_message);
  return response.file_descriptor_response.file_descriptor_proto.map((bytes: Buffer) => {
    const file = fromBinary(FileDescriptorProtoSchema, bytes);
    const types: string[] = [];
    const references: string[] = [];
    const walk = (prefix: string, messages: DescriptorProto[], enums: { name: string }[]) => {
      for (const enumType of enums) types.push(`${prefix}${enumType.name}`);
      for (const message of messages) {
        types.push(`${prefix}${message.name}`);
        for (const field of message.field) if (field.typeName) references.push(field.typeName);
        walk(`${prefix}${message.name}.`, message.nestedType, message.enumType);
      }
    };
    walk("", file.messageType, file.enumType);
    for (const service of file.service) for (const method of service.method) references.push(method.inputType, method.outputType);
    return { package: file.package, types, references };
  });
}

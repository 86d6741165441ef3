/** A gRPC server-reflection client (the protocol grpcurl speaks), for tests. */
import { credentials as grpcCredentials, type ChannelCredentials } from "@grpc/grpc-js";
import { createChannel, createClient } from "nice-grpc";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type DescriptorProto } from "@bufbuild/protobuf/wkt";
import { ServerReflectionDefinition, type ServerReflectionRequest } from "../../gen/grpc/reflection/v1/reflection.js";

async function ask(address: string, request: ServerReflectionRequest["messageRequest"], credentials: ChannelCredentials) {
  const channel = createChannel(address, credentials, { "grpc.ssl_target_name_override": "localhost" });
  try {
    async function* one() {
      yield { host: "", messageRequest: request };
    }
    for await (const response of createClient(ServerReflectionDefinition, channel).serverReflectionInfo(one()))
      return response.messageResponse;
    throw new Error("the reflection stream ended without an answer");
  } finally {
    channel.close();
  }
}

/** What `grpcurl list` shows. */
export async function listServices(address: string, credentials = grpcCredentials.createInsecure()): Promise<string[]> {
  const response = await ask(address, { $case: "listServices", value: "" }, credentials);
  if (response?.$case !== "listServicesResponse") throw new Error(`no service list: ${JSON.stringify(response)}`);
  return response.value.service.map((service) => service.name);
}

/** A file of `grpcurl describe`: its package, the types it defines and the types it references. */
export interface DescribedFile {
  readonly package: string;
  readonly types: string[];
  readonly references: string[];
}

/** The files the server returns for a symbol (the symbol's file and its dependencies). */
export async function describeSymbol(
  address: string,
  symbol: string,
  credentials = grpcCredentials.createInsecure(),
): Promise<DescribedFile[]> {
  const response = await ask(address, { $case: "fileContainingSymbol", value: symbol }, credentials);
  if (response?.$case !== "fileDescriptorResponse") throw new Error(`no descriptors: ${JSON.stringify(response)}`);
  return response.value.fileDescriptorProto.map((bytes) => {
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

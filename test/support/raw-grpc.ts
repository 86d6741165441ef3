/** gRPC calls as bytes, the way a client built on nothing but grpc-js would make them: for tests that send what no typed client would. */
import { type ChannelCredentials, Client as GrpcClient, Metadata, status } from "@grpc/grpc-js";

/** A method's path and shape. */
export interface RawMethod {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

/** Every method of a generated service definition, by its key. */
export function rawMethods(definition: {
  fullName: string;
  methods: Record<string, { name: string; requestStream: boolean; responseStream: boolean }>;
}): Record<string, RawMethod> {
  return Object.fromEntries(
    Object.entries(definition.methods).map(([key, method]) => [
      key,
      { path: `/${definition.fullName}/${method.name}`, requestStream: method.requestStream, responseStream: method.responseStream },
    ]),
  );
}

/**
 * Calls `method` at 127.0.0.1:`port` with `message` (its only, or first, message) and
 * resolves with the status it ends with. A stream that answers counts as OK, and so
 * does one still open and silent after `quietMs` (it took the message); either is then
 * cancelled.
 */
export function callRaw(
  port: number,
  credentials: ChannelCredentials,
  method: RawMethod,
  message: Uint8Array = new Uint8Array(0),
  options: { deadlineMs?: number; quietMs?: number } = {},
): Promise<{ code: status; details: string }> {
  const client = new GrpcClient(`127.0.0.1:${port}`, credentials, { "grpc.ssl_target_name_override": "localhost" });
  const bytes = Buffer.from(message);
  const serialize = (value: Buffer) => value;
  const deserialize = (value: Buffer) => value;
  const deadline = Date.now() + (options.deadlineMs ?? 10_000);
  return new Promise((resolve) => {
    let settled = false;
    let call: { cancel(): void } | undefined;
    let quiet: NodeJS.Timeout | undefined;
    const settle = (code: status, details: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(quiet);
      call?.cancel();
      client.close();
      resolve({ code, details });
    };
    if (!method.requestStream && !method.responseStream) {
      call = client.makeUnaryRequest(method.path, serialize, deserialize, bytes, new Metadata(), { deadline }, (error) =>
        settle(error?.code ?? status.OK, error?.details ?? ""),
      );
      return;
    }
    // grpc-js's three stream call types share the methods used below.
    const stream: any = method.requestStream
      ? method.responseStream
        ? client.makeBidiStreamRequest(method.path, serialize, deserialize, new Metadata(), { deadline })
        : client.makeClientStreamRequest(method.path, serialize, deserialize, new Metadata(), { deadline }, (error) =>
            settle(error?.code ?? status.OK, error?.details ?? ""),
          )
      : client.makeServerStreamRequest(method.path, serialize, deserialize, bytes, new Metadata(), { deadline });
    call = stream;
    if (method.requestStream) stream.write(bytes);
    stream.on("data", () => settle(status.OK, "answered"));
    stream.on("error", (error: { code: status; details: string }) => settle(error.code, error.details));
    stream.on("end", () => settle(status.OK, "ended"));
    if (options.quietMs !== undefined) quiet = setTimeout(() => settle(status.OK, "quiet"), options.quietMs);
  });
}

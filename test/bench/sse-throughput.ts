/**
 * SSE throughput: the completion tokens/s one gateway process delivers over server-sent
 * events from a zero-cost worker (the sim engine at time scale 0, which generates a whole
 * answer at once), against the raw grpc-js single-hop message rate measured in this same
 * process and run: a bare server-streaming method on loopback that writes 20-byte
 * messages, one per token, as fast as the stream takes them. Target: SSE tokens/s ≥ 1.0×
 * the raw message rate, which takes coalescing tokens into fewer messages and chunks when
 * the reader is slower than the writer.
 *
 * Each request streams --tokens completion tokens (the default profile's max_tokens cap is
 * raised to that), checked against its usage chunk. The sim's plain answers stop at 16-512
 * tokens, so requests ask for a JSON string longer than --tokens (response_format
 * json_schema, minLength) and end on max_tokens; its tokens are 4 characters, as in a plain
 * answer. The sim sends them in deltas of --delta-tokens tokens (1 by default, one worker
 * message per token, so the raw rate of one message per token is a fair baseline; the
 * sim's own default is 16). Both paths run at concurrency 1 and 8 in alternating rounds; each SSE
 * stream moves about as many tokens as each raw call moves messages. The figures to quote
 * are the medians and the median of per-round ratios.
 *
 *   npm run bench:sse                                  (defaults: 3 rounds, 4096 tokens, 100000 messages)
 *   npm run bench:sse -- --rounds 2 --messages 50000
 *   npm run bench:sse -- --delta-tokens 16             (the sim's default delta size)
 */
import { once } from "node:events";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { defaultProfiles } from "../../gateway/access/profiles.js";
import { startTestMesh } from "../support/harness.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    tokens: { type: "string", default: "4096" },
    messages: { type: "string", default: "100000" },
    "delta-tokens": { type: "string", default: "1" },
  },
});
const rounds = Number(values.rounds);
const maxTokens = Number(values.tokens);
const messagesPerCall = Number(values.messages);
const levels = [1, 8];
/** Requests one SSE stream makes per level and round: about messagesPerCall tokens. */
const requestsPerStream = Math.max(1, Math.round(messagesPerCall / maxTokens));
/** Warm-up: calls and messages per call on the raw path, streams and requests per stream on the SSE path. */
const warmupStreams = 2;
const warmupMessages = Math.ceil(messagesPerCall / 10);
const warmupRequests = 2;

const model = "sim-gpt-oss-20b";
/** The size of a one-token delta message on the raw path. */
const rawPayloadBytes = 20;
/** Enough of a stream's end to hold its finish, usage and [DONE] events. */
const tailBytes = 4096;
/** sim tokens are 4 characters; the schema's string outlasts max_tokens with room to spare. */
const answerChars = 8 * maxTokens;

// Raw grpc-js: one server-streaming method whose request is the number of messages to send.
const passthrough = (buffer: Buffer) => buffer;
const rawMethod: grpc.MethodDefinition<Buffer, Buffer> = {
  path: "/bench.Raw/Stream",
  requestStream: false,
  responseStream: true,
  requestSerialize: passthrough,
  requestDeserialize: passthrough,
  responseSerialize: passthrough,
  responseDeserialize: passthrough,
};
const rawPayload = Buffer.alloc(rawPayloadBytes, "x");

async function streamMessages(call: grpc.ServerWritableStream<Buffer, Buffer>): Promise<void> {
  const count = call.request.readUInt32BE(0);
  for (let sent = 0; sent < count; sent += 1) {
    if (!call.write(rawPayload)) await once(call, "drain");
  }
  call.end();
}

const rawServer = new grpc.Server();
rawServer.addService({ stream: rawMethod }, { stream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => void streamMessages(call) });
const rawPort = await new Promise<number>((resolve, reject) =>
  rawServer.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))),
);
const rawClient = new grpc.Client(`127.0.0.1:${rawPort}`, grpc.credentials.createInsecure());

/** Messages received by one raw call that asks for `count`. */
function rawCall(count: number): Promise<number> {
  const request = Buffer.alloc(4);
  request.writeUInt32BE(count);
  return new Promise((resolve, reject) => {
    let received = 0;
    const call = rawClient.makeServerStreamRequest(rawMethod.path, passthrough, passthrough, request);
    call.on("data", () => (received += 1));
    call.on("error", reject);
    call.on("end", () => (received === count ? resolve(received) : reject(new Error(`raw call got ${received} of ${count} messages`))));
  });
}

// SSE through the gateway, whose default profile must allow max_tokens this large.
const mesh = await startTestMesh({
  workerArgs: ["--engine", "sim", "--sim-time-scale", "0", "--sim-max-tokens-per-delta", values["delta-tokens"]],
  admissionArgs: ["--max-concurrency", "64"],
  gatewayArgs: ["--profiles", JSON.stringify({ balanced: { ...defaultProfiles.balanced, maxTokens } })],
});
const body = JSON.stringify({
  model,
  messages: [{ role: "user", content: "Hi" }],
  max_tokens: maxTokens,
  stream: true,
  stream_options: { include_usage: true },
  response_format: { type: "json_schema", json_schema: { name: "long", schema: { type: "string", minLength: answerChars } } },
});
const newline = 0x0a;

interface StreamTotals {
  tokens: number;
  events: number;
  bytes: number;
}

/** Reads one streamed completion to the end; its tokens come from the usage chunk. */
async function sseRequest(totals: StreamTotals): Promise<void> {
  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  const tail: Buffer[] = [];
  let tailLength = 0;
  let endsWithNewline = false;
  for await (const value of response.body) {
    const chunk = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    totals.bytes += chunk.length;
    // Events end in a blank line; JSON never holds a raw newline, so "\n\n" only ends events.
    if (endsWithNewline && chunk[0] === newline) totals.events += 1;
    for (let at = chunk.indexOf("\n\n"); at >= 0; at = chunk.indexOf("\n\n", at + 2)) totals.events += 1;
    endsWithNewline = chunk[chunk.length - 1] === newline;
    tail.push(chunk);
    tailLength += chunk.length;
    while (tailLength - tail[0]!.length >= tailBytes) tailLength -= tail.shift()!.length;
  }
  const events = Buffer.concat(tail)
    .toString("utf8")
    .split("\n\n")
    .filter((event) => event !== "");
  if (events.at(-1) !== "data: [DONE]") throw new Error(`stream did not end with [DONE]: ${events.at(-1)}`);
  const usage = JSON.parse(events.at(-2)!.slice("data: ".length)).usage as { completion_tokens: number } | null;
  if (usage?.completion_tokens !== maxTokens)
    throw new Error(`expected ${maxTokens} completion tokens, the usage chunk says ${JSON.stringify(usage)}`);
  totals.tokens += usage.completion_tokens;
}

interface Sample {
  readonly rawMessagesPerSecond: number;
  readonly sseTokensPerSecond: number;
  readonly sseEventsPerSecond: number;
  readonly sseBytesPerSecond: number;
}

/** Raw messages/s of `concurrency` calls at once, each of `count` messages. */
async function measureRaw(concurrency: number, count: number): Promise<number> {
  const begin = performance.now();
  const received = await Promise.all(Array.from({ length: concurrency }, () => rawCall(count)));
  return (received.reduce((sum, n) => sum + n, 0) * 1000) / (performance.now() - begin);
}

/** SSE rates of `concurrency` streams at once, each making `requests` requests one after another. */
async function measureSse(concurrency: number, requests: number): Promise<Omit<Sample, "rawMessagesPerSecond">> {
  const totals: StreamTotals = { tokens: 0, events: 0, bytes: 0 };
  const begin = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let request = 0; request < requests; request += 1) await sseRequest(totals);
    }),
  );
  const seconds = (performance.now() - begin) / 1000;
  return {
    sseTokensPerSecond: totals.tokens / seconds,
    sseEventsPerSecond: totals.events / seconds,
    sseBytesPerSecond: totals.bytes / seconds,
  };
}

const median = (numbers: number[]) => {
  const sorted = [...numbers].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const thousands = (value: number) => `${(value / 1000).toFixed(1)}k`;

try {
  // Warm up both paths (JIT, connections, the gateway's first streams).
  await measureRaw(warmupStreams, warmupMessages);
  await measureSse(warmupStreams, warmupRequests);
  const samples = new Map<number, Sample[]>(levels.map((level) => [level, []]));
  for (let round = 0; round < rounds; round += 1) {
    for (const concurrency of levels) {
      const rawMessagesPerSecond = await measureRaw(concurrency, messagesPerCall);
      samples.get(concurrency)!.push({ rawMessagesPerSecond, ...(await measureSse(concurrency, requestsPerStream)) });
    }
  }

  console.log(
    `SSE throughput, zero-cost sim worker (${values["delta-tokens"]} tokens per worker delta), ${rounds} alternating rounds; per stream: ${requestsPerStream} requests x ${maxTokens} tokens; ` +
      `per raw call: ${messagesPerCall} messages of ${rawPayloadBytes} bytes`,
  );
  console.log("round  | concurrency | raw grpc msg/s | SSE tokens/s | SSE events/s | SSE MB/s | tokens/event | SSE ÷ raw");
  const row = (label: string, concurrency: number, sample: Sample, ratio: number) =>
    console.log(
      `${label.padEnd(6)} | ${String(concurrency).padStart(11)} | ${thousands(sample.rawMessagesPerSecond).padStart(14)} | ` +
        `${thousands(sample.sseTokensPerSecond).padStart(12)} | ${thousands(sample.sseEventsPerSecond).padStart(12)} | ` +
        `${(sample.sseBytesPerSecond / 1e6).toFixed(1).padStart(8)} | ${(sample.sseTokensPerSecond / sample.sseEventsPerSecond).toFixed(1).padStart(12)} | ` +
        `${ratio.toFixed(2).padStart(8)}x`,
    );
  for (const concurrency of levels) {
    const perRound = samples.get(concurrency)!;
    for (const [round, sample] of perRound.entries()) {
      row(String(round + 1), concurrency, sample, sample.sseTokensPerSecond / sample.rawMessagesPerSecond);
    }
    const medians: Sample = {
      rawMessagesPerSecond: median(perRound.map((sample) => sample.rawMessagesPerSecond)),
      sseTokensPerSecond: median(perRound.map((sample) => sample.sseTokensPerSecond)),
      sseEventsPerSecond: median(perRound.map((sample) => sample.sseEventsPerSecond)),
      sseBytesPerSecond: median(perRound.map((sample) => sample.sseBytesPerSecond)),
    };
    row("median", concurrency, medians, median(perRound.map((sample) => sample.sseTokensPerSecond / sample.rawMessagesPerSecond)));
  }
  console.log(
    "SSE ÷ raw: per round, SSE tokens/s ÷ raw messages/s at the same concurrency; on the median rows, the median of those ratios (target ≥ 1.00x)",
  );
} finally {
  rawClient.close();
  rawServer.forceShutdown();
  await mesh.stop();
}

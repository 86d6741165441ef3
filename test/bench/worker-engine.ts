/**
 * Worker engine benchmarks, all in one run on this machine against the default test
 * model (the worker's own defaults: F16, threads 1, flash attention; node-llama-cpp alone
 * runs with its default batching, the worker with its sequence-ordered strategy):
 *
 * - engine efficiency: aggregate tokens/s through a worker process's gRPC Generate at
 *   concurrency 1 and 8, against node-llama-cpp called directly in this process with
 *   the same model and context settings (target ≥ 0.95× at both);
 * - batching gain: the worker's tokens/s at concurrency 8 ÷ at 1 (target ≥ 1.7×);
 * - prefix reuse: time to first token of a request whose first ~1,000 tokens were just
 *   served ÷ the same-length request cold (target ≤ 0.3);
 * - cancellation: tokens decoded after the abort, in-process (target ≤ 1 step).
 *
 *   node dist/test/bench/worker-engine.js [--tokens 128] [--rounds 3] [--sequences 8]
 */
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "nice-grpc";
import { getLlama, LlamaChat, resolveChatWrapper, type ChatHistoryItem } from "node-llama-cpp";
import { ChatMessage, ReasoningEffort, SamplingParams } from "../../gen/infermesh/common/v1/common.js";
import { WorkerServiceDefinition } from "../../gen/infermesh/worker/v1/worker_service.js";
import { repoRoot } from "../../services/common/paths.js";
import { loadWorkerConfig } from "../../services/worker/config.js";
import { LlamaCppEngine } from "../../services/worker/engines/llamacpp/llamacpp-engine.js";
import { ensureTestModel } from "../../services/worker/engines/llamacpp/test-model/generate.js";
import { freePorts, makeTestPki, meshChannel, waitFor } from "../support/harness.js";

const { values } = parseArgs({
  options: {
    tokens: { type: "string", default: "128" },
    rounds: { type: "string", default: "3" },
    sequences: { type: "string", default: "8" },
  },
});
const maxTokens = Number(values.tokens);
const rounds = Number(values.rounds);
const sequences = Number(values.sequences);
const defaults = loadWorkerConfig({ argv: [], env: {} });
const contextTokens = 2_048;
const testModel = await ensureTestModel({
  cacheDir: resolve(repoRoot(), defaults.cacheDir),
  size: defaults.testModelSize,
  weightType: "f16",
});
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const questions = Array.from({ length: 16 }, (_, index) => `Question ${index}: tell me a long story about mountains and rivers.`);

/** node-llama-cpp alone: one context, `sequences` sequences, LlamaChat per request. */
async function directTokensPerSecond(concurrency: number): Promise<number> {
  const llama = await getLlama({ gpu: false, logLevel: "error" as never });
  const model = await llama.loadModel({ modelPath: testModel.path });
  const context = await model.createContext({
    contextSize: contextTokens,
    sequences,
    batchSize: defaults.batchSize,
    threads: defaults.threads,
    swaFullCache: true,
    flashAttention: defaults.flashAttention,
  });
  const wrapper = resolveChatWrapper(model);
  const chats = Array.from({ length: concurrency }, () => new LlamaChat({ contextSequence: context.getSequence(), chatWrapper: wrapper }));
  let tokens = 0;
  const started = performance.now();
  await Promise.all(
    chats.map(async (chat, index) => {
      const history: ChatHistoryItem[] = [{ type: "user", text: questions[index]! }];
      await chat.generateResponse(history, {
        maxTokens,
        temperature: 1,
        seed: index,
        onToken: (generated) => (tokens += generated.length),
      });
    }),
  );
  const perSecond = tokens / ((performance.now() - started) / 1000);
  await context.dispose();
  await model.dispose();
  await llama.dispose();
  return perSecond;
}

async function startWorker(): Promise<{ client: ReturnType<typeof createClient<typeof WorkerServiceDefinition>>; stop: () => void }> {
  const [grpcPort, metricsPort, deadPort] = await freePorts(3);
  const pkiDir = await makeTestPki();
  const child = spawn(
    process.execPath,
    [
      resolve(repoRoot(), "dist/services/worker/main.js"),
      "--tls-dir",
      resolve(pkiDir, "worker"),
      "--listen",
      `127.0.0.1:${grpcPort}`,
      "--metrics-port",
      String(metricsPort),
      "--router-address",
      `127.0.0.1:${deadPort}`,
      "--memory-guard-address",
      "",
      "--gpu",
      "cpu",
      "--sequences",
      String(sequences),
      "--context-tokens",
      String(contextTokens),
      "--log-level",
      "warn",
    ],
    { stdio: "ignore" },
  );
  const client = createClient(WorkerServiceDefinition, meshChannel(pkiDir, grpcPort!, "worker", "gateway"));
  await waitFor(
    "the worker to load its model",
    () =>
      client
        .getInfo({})
        .then((info) => info.state === 2)
        .catch(() => false),
    60_000,
  );
  return { client, stop: () => child.kill("SIGTERM") };
}

async function workerTokensPerSecond(client: Awaited<ReturnType<typeof startWorker>>["client"], concurrency: number): Promise<number> {
  let tokens = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, index) => {
      for await (const response of client.generate({
        requestId: `bench-${index}`,
        model: "infermesh-test",
        messages: [{ role: "user", content: questions[index]! }],
        sampling: { maxTokens, temperature: 1, seed: index },
      })) {
        if (response.event?.$case === "delta") tokens += response.event.value.tokenCount;
      }
    }),
  );
  return tokens / ((performance.now() - started) / 1000);
}

async function timeToFirstToken(
  client: Awaited<ReturnType<typeof startWorker>>["client"],
  system: string,
  question: string,
): Promise<{ ms: number; cached: number; prompt: number }> {
  const started = performance.now();
  let cached = 0;
  let prompt = 0;
  for await (const response of client.generate({
    requestId: "ttft",
    model: "infermesh-test",
    messages: [
      { role: "system", content: system },
      { role: "user", content: question },
    ],
    sampling: { maxTokens: 1, temperature: 0 },
  })) {
    if (response.event?.$case === "started") ({ cachedTokens: cached, promptTokens: prompt } = response.event.value);
    if (response.event?.$case === "delta") return { ms: performance.now() - started, cached, prompt };
  }
  throw new Error("no token");
}

async function tokensAfterCancel(): Promise<number[]> {
  const engine = await LlamaCppEngine.load({
    modelPath: testModel.path,
    modelId: "m",
    description: "",
    gpu: "cpu",
    gpuIndex: undefined,
    threads: defaults.threads,
    contextTokens,
    sequences: 2,
    batchSize: defaults.batchSize,
  });
  const after: number[] = [];
  for (let round = 0; round < 5; round += 1) {
    const controller = new AbortController();
    let seen = 0;
    let atAbort = 0;
    for await (const event of engine.generate(
      {
        requestId: "c",
        model: "m",
        messages: [ChatMessage.create({ role: "user", content: questions[round]! })],
        prompt: undefined,
        sampling: SamplingParams.create({ maxTokens: 400, temperature: 1 }),
        tools: [],
        toolChoice: "",
        reasoningEffort: ReasoningEffort.REASONING_EFFORT_UNSPECIFIED,
      },
      controller.signal,
    )) {
      if (event.kind === "delta") {
        seen += event.tokenCount;
        if (seen >= 10 && !controller.signal.aborted) {
          atAbort = seen;
          controller.abort();
        }
      }
      if (event.kind === "finished") after.push(event.completionTokens - atAbort);
    }
  }
  await engine.close();
  return after;
}

console.log(
  `model ${testModel.path} (${testModel.parameterCount.toLocaleString("en")} parameters), threads ${defaults.threads}, sequences ${sequences}, ${maxTokens} tokens per request, ${rounds} rounds`,
);
const figures: Record<string, number[]> = { direct1: [], direct8: [], worker1: [], worker8: [] };
const worker = await startWorker();
for (let round = 0; round < rounds; round += 1) {
  figures.direct1!.push(await directTokensPerSecond(1));
  figures.worker1!.push(await workerTokensPerSecond(worker.client, 1));
  figures.direct8!.push(await directTokensPerSecond(8));
  figures.worker8!.push(await workerTokensPerSecond(worker.client, 8));
}
const [d1, d8, w1, w8] = [median(figures.direct1!), median(figures.direct8!), median(figures.worker1!), median(figures.worker8!)];
console.log("\nthroughput (median tok/s)   direct   worker   worker/direct");
console.log(`  concurrency 1            ${d1.toFixed(0).padStart(6)}   ${w1.toFixed(0).padStart(6)}   ${(w1 / d1).toFixed(3)}`);
console.log(`  concurrency 8            ${d8.toFixed(0).padStart(6)}   ${w8.toFixed(0).padStart(6)}   ${(w8 / d8).toFixed(3)}`);
console.log(`batching gain (worker c8 / c1): ${(w8 / w1).toFixed(2)}×  (direct: ${(d8 / d1).toFixed(2)}×)`);
// The machine is shared: a ratio taken inside one round (runs seconds apart) moves less
// than a ratio of medians taken over the whole run.
const perRound = (top: number[], bottom: number[]) => median(top.map((value, round) => value / bottom[round]!));
console.log(
  `median of per-round ratios: efficiency c1 ${perRound(figures.worker1!, figures.direct1!).toFixed(3)}, ` +
    `c8 ${perRound(figures.worker8!, figures.direct8!).toFixed(3)}; batching gain ${perRound(figures.worker8!, figures.worker1!).toFixed(2)}× ` +
    `(direct ${perRound(figures.direct8!, figures.direct1!).toFixed(2)}×)`,
);

const filler = (seed: number) => Array.from({ length: 260 }, (_, index) => `w${(index * 7919 + seed * 104729) % 9973}`).join(" ");
const warm: number[] = [];
const cold: number[] = [];
let shape = "";
for (let round = 0; round < 5; round += 1) {
  const system = filler(round + 1);
  const first = await timeToFirstToken(worker.client, system, "first question");
  cold.push(first.ms);
  const second = await timeToFirstToken(worker.client, system, "second question");
  warm.push(second.ms);
  shape = `prompt ${second.prompt} tokens, ${second.cached} reused`;
}
console.log(
  `prefix reuse: TTFT warm ${median(warm).toFixed(1)} ms / cold ${median(cold).toFixed(1)} ms = ${(median(warm) / median(cold)).toFixed(3)}  (${shape})`,
);
worker.stop();

const afterCancel = await tokensAfterCancel();
console.log(`cancellation: tokens decoded after abort per run: ${afterCancel.join(", ")} (max ${Math.max(...afterCancel)})`);
process.exit(0);

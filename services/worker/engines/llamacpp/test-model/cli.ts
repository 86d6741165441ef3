/**
 * Builds (or finds in the cache) the random-weight test model and prints its path.
 *
 *   node dist/services/worker/engines/llamacpp/test-model/cli.js [--architecture gpt-oss] [--size small] [--seed 42] [--cache-dir DIR] [--weight-type f32] [--json]
 */

import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { userCacheDir } from "../../../../common/paths.js";
import {
  DEFAULT_TEST_MODEL_ARCHITECTURE,
  DEFAULT_TEST_MODEL_SEED,
  ensureTestModel,
  TEST_MODEL_ARCHITECTURES,
  TEST_MODEL_SIZES,
  type TestModelArchitecture,
  type TestModelSize,
  type TestModelWeightType,
} from "./generate.js";

const defaultCacheDir = userCacheDir(process.env, "models");

const USAGE = `Usage: cli.js [--architecture gpt-oss|llama] [--size tiny|small|medium] [--seed N] [--cache-dir DIR] [--weight-type f32|f16] [--json]

Builds a GGUF model with random weights and a real BPE tokenizer (its answers are
nonsense), or reuses the cached file, and prints its path and parameter count.
gpt-oss: mixture of experts, attention sinks, sliding window, harmony chat format;
llama: dense, ChatML.
Defaults: --architecture ${DEFAULT_TEST_MODEL_ARCHITECTURE}, --size small, --seed ${DEFAULT_TEST_MODEL_SEED}, --cache-dir ${defaultCacheDir}
(the per-user model cache npm start's workers use: $XDG_CACHE_HOME/infermesh/models, else
~/.cache/infermesh/models), --weight-type f32.`;

function formatCount(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : `${(n / 1e3).toFixed(1)}K`;
}

async function main(argv: string[]): Promise<number> {
  // biome-ignore lint/suspicious/noImplicitAnyLet: TypeScript types it from parseArgs' result, assigned below
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        architecture: { type: "string", default: DEFAULT_TEST_MODEL_ARCHITECTURE },
        size: { type: "string", default: "small" },
        seed: { type: "string", default: String(DEFAULT_TEST_MODEL_SEED) },
        "cache-dir": { type: "string", default: defaultCacheDir },
        "weight-type": { type: "string", default: "f32" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const architecture = values.architecture as TestModelArchitecture;
  if (!TEST_MODEL_ARCHITECTURES.includes(architecture)) {
    process.stderr.write(`--architecture must be one of ${TEST_MODEL_ARCHITECTURES.join(", ")}\n`);
    return 2;
  }
  const size = values.size as TestModelSize;
  if (!TEST_MODEL_SIZES.includes(size)) {
    process.stderr.write(`--size must be one of ${TEST_MODEL_SIZES.join(", ")}\n`);
    return 2;
  }
  const seed = /^\d+$/.test(values.seed) ? Number(values.seed) : NaN;
  if (!Number.isInteger(seed) || seed > 0xffff_ffff) {
    process.stderr.write("--seed must be an integer in [0, 4294967295]\n");
    return 2;
  }
  const weightType = values["weight-type"] as TestModelWeightType;
  if (weightType !== "f32" && weightType !== "f16") {
    process.stderr.write("--weight-type must be f32 or f16\n");
    return 2;
  }

  const model = await ensureTestModel({ cacheDir: resolve(process.cwd(), values["cache-dir"]), architecture, size, seed, weightType });
  if (values.json) {
    process.stdout.write(`${JSON.stringify(model, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(
    `${[
      `path: ${model.path}`,
      `architecture: ${model.architecture}`,
      `parameters: ${model.parameterCount} (${formatCount(model.parameterCount)})` +
        (model.activeParameterCount === model.parameterCount ? "" : `, ${formatCount(model.activeParameterCount)} active per token`),
      `file size: ${(model.fileBytes / (1024 * 1024)).toFixed(1)} MiB`,
      model.created ? `built in ${(model.elapsedMs / 1000).toFixed(2)} s` : "cached",
    ].join("\n")}\n`,
  );
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);

import assert from "node:assert/strict";
import { test } from "node:test";
import { chooseEngine, type EngineRequest } from "./engine-choice.js";

const choose = (request: Partial<EngineRequest>) =>
  chooseEngine({ engine: undefined, model: "", upstreamUrl: "", defaultSimPreset: "h100-gpt-oss-20b", ...request });

test("the engine follows from the model, and the worker flags select it", () => {
  assert.deepEqual(choose({ model: "/models/gpt-oss-20b-mxfp4.gguf" }), {
    engine: "llamacpp",
    workerArgs: ["--engine", "llamacpp", "--model-path", "/models/gpt-oss-20b-mxfp4.gguf"],
    reason: "from --model /models/gpt-oss-20b-mxfp4.gguf",
  });
  assert.equal(choose({ model: "Model.GGUF" }).engine, "llamacpp", "the suffix in any case");
  assert.deepEqual(choose({ model: "openai/gpt-oss-20b", upstreamUrl: "http://127.0.0.1:8001" }), {
    engine: "openai",
    workerArgs: ["--engine", "openai", "--upstream-url", "http://127.0.0.1:8001", "--upstream-model-ids", "openai/gpt-oss-20b"],
    reason: "from --model openai/gpt-oss-20b with --upstream-url",
  });
  assert.deepEqual(choose({ model: "sim:h100-gpt-oss-120b" }), {
    engine: "sim",
    workerArgs: ["--engine", "sim", "--sim-preset", "h100-gpt-oss-120b"],
    reason: "from --model sim:h100-gpt-oss-120b",
  });
  assert.deepEqual(
    choose({ model: "sim" }),
    {
      engine: "sim",
      workerArgs: ["--engine", "sim", "--sim-preset", "h100-gpt-oss-20b"],
      reason: "from --model sim: preset h100-gpt-oss-20b",
    },
    "sim alone: the default preset",
  );
  assert.deepEqual(choose({}), {
    engine: "llamacpp",
    workerArgs: ["--engine", "llamacpp"],
    reason: "no --model: the generated test model",
  });
  assert.deepEqual(choose({ upstreamUrl: "http://vllm:8000" }), {
    engine: "openai",
    workerArgs: ["--engine", "openai", "--upstream-url", "http://vllm:8000"],
    reason: "from --upstream-url: every model the upstream lists",
  });
});

test("an --engine that agrees with the model is taken; without a model it picks the engine's default model", () => {
  assert.equal(choose({ engine: "sim", model: "sim:h100-gpt-oss-20b" }).engine, "sim");
  assert.equal(choose({ engine: "llamacpp", model: "a.gguf" }).engine, "llamacpp");
  assert.equal(choose({ engine: "openai", model: "org/name", upstreamUrl: "http://x" }).engine, "openai");
  assert.deepEqual(choose({ engine: "sim" }), {
    engine: "sim",
    workerArgs: ["--engine", "sim", "--sim-preset", "h100-gpt-oss-20b"],
    reason: "from --engine sim: preset h100-gpt-oss-20b",
  });
  assert.equal(choose({ engine: "llamacpp" }).reason, "from --engine llamacpp: no --model, so the generated test model");
  assert.equal(choose({ engine: "openai", upstreamUrl: "http://x" }).reason, "from --engine openai: every model the upstream lists");
  const unsuffixed = choose({ engine: "llamacpp", model: "/models/weights" });
  assert.deepEqual(
    unsuffixed.workerArgs,
    ["--engine", "llamacpp", "--model-path", "/models/weights"],
    "--engine llamacpp takes any path as a GGUF",
  );
  assert.equal(unsuffixed.reason, "from --engine llamacpp, --model /models/weights as a GGUF file");
});

test("an --engine that contradicts the model, or settings no engine would use, stop the start with the reason", () => {
  const refuses = (request: Partial<EngineRequest>, message: RegExp) => assert.throws(() => choose(request), message);
  refuses(
    { engine: "openai", model: "sim:h100-gpt-oss-20b" },
    /^Error: --engine openai contradicts --model sim:h100-gpt-oss-20b: sim models run on the simulator/,
  );
  refuses({ engine: "sim", model: "a.gguf" }, /--engine sim contradicts --model a.gguf: a .gguf file runs on llama.cpp/);
  refuses({ engine: "openai", model: "a.gguf", upstreamUrl: "http://x" }, /--engine openai contradicts --model a.gguf/);
  refuses(
    { engine: "sim", model: "gpt-oss-20b" },
    /--engine sim contradicts --model gpt-oss-20b: the simulator serves --model sim:<preset>/,
  );
  refuses({ model: "sim:a100" }, /no simulator preset "a100"; the presets are h100-gpt-oss-20b, h100-gpt-oss-120b/);
  refuses({ model: "org/name" }, /--model org\/name is neither a .gguf file nor sim:<preset>; .* give --upstream-url/);
  refuses({ engine: "openai" }, /--engine openai needs --upstream-url/);
  refuses({ model: "a.gguf", upstreamUrl: "http://x" }, /--upstream-url is for the openai engine, but --model a.gguf runs on llama.cpp/);
  refuses({ model: "sim", upstreamUrl: "http://x" }, /--upstream-url is for the openai engine, but --model sim runs on the simulator/);
  refuses({ engine: "llamacpp", upstreamUrl: "http://x" }, /--upstream-url is for the openai engine, but --engine llamacpp was given/);
  refuses({ engine: "sim", upstreamUrl: "http://x" }, /but --engine sim was given/);
});

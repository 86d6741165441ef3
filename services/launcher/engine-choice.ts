import { simPresets, type SimPresetName } from "../worker/engines/sim/sim-options.js";

/** The worker engines `npm start` can run. */
export const engineNames = ["llamacpp", "openai", "sim"] as const;
export type EngineName = (typeof engineNames)[number];

/** What the launcher's settings say about the workers' engine. */
export interface EngineRequest {
  /** --engine, when given; otherwise the engine follows from the model. */
  readonly engine: EngineName | undefined;
  /** --model: a .gguf path, `sim` or `sim:<preset>`, a model name of the upstream server, or "" for none. */
  readonly model: string;
  /** --upstream-url: the OpenAI-compatible server of the openai engine, or "". */
  readonly upstreamUrl: string;
  /** The preset `sim` alone means. */
  readonly defaultSimPreset: SimPresetName;
}

/** The workers' engine, the worker flags that select it, and why it was chosen. */
export interface EngineChoice {
  readonly engine: EngineName;
  readonly workerArgs: readonly string[];
  /** Why, in words, e.g. "from --model sim:h100-gpt-oss-20b". */
  readonly reason: string;
}

const isGguf = (model: string) => /\.gguf$/i.test(model);
const simModel = /^sim(?::(.*))?$/;

/**
 * Chooses the engine as the model implies it: a .gguf file runs on llama.cpp, `sim` or
 * `sim:<preset>` on the simulator, any other name on the openai engine from
 * --upstream-url; no model serves the generated test model on llama.cpp (or, with
 * --upstream-url, every model the upstream lists). An --engine that contradicts the
 * model, or an --upstream-url no openai engine will use, is an error.
 */
export function chooseEngine(request: EngineRequest): EngineChoice {
  const { engine: named, model, upstreamUrl } = request;
  const contradicts = (implied: EngineName, why: string) => {
    if (named !== undefined && named !== implied) throw new Error(`--engine ${named} contradicts --model ${model}: ${why}`);
  };
  const noUpstream = (but: string) => {
    if (upstreamUrl !== "") throw new Error(`--upstream-url is for the openai engine, but ${but}`);
  };

  const sim = simModel.exec(model);
  if (sim) {
    const preset = sim[1] ?? request.defaultSimPreset;
    if (!Object.hasOwn(simPresets, preset)) {
      throw new Error(`--model ${model}: no simulator preset "${preset}"; the presets are ${Object.keys(simPresets).join(", ")}`);
    }
    contradicts("sim", "sim models run on the simulator (sim)");
    noUpstream(`--model ${model} runs on the simulator (sim)`);
    const reason = sim[1] === undefined ? `from --model sim: preset ${preset}` : `from --model ${model}`;
    return { engine: "sim", workerArgs: ["--engine", "sim", "--sim-preset", preset], reason };
  }

  if (model !== "" && (isGguf(model) || named === "llamacpp")) {
    contradicts("llamacpp", "a .gguf file runs on llama.cpp (llamacpp)");
    noUpstream(`--model ${model} runs on llama.cpp (llamacpp)`);
    const reason =
      named === "llamacpp" && !isGguf(model) ? `from --engine llamacpp, --model ${model} as a GGUF file` : `from --model ${model}`;
    return { engine: "llamacpp", workerArgs: ["--engine", "llamacpp", "--model-path", model], reason };
  }

  if (model !== "") {
    if (named === "sim") throw new Error(`--engine sim contradicts --model ${model}: the simulator serves --model sim:<preset>`);
    if (upstreamUrl === "") {
      throw new Error(
        `--model ${model} is neither a .gguf file nor sim:<preset>; to serve it from an OpenAI-compatible server (vLLM, SGLang, …) give --upstream-url`,
      );
    }
    return {
      engine: "openai",
      workerArgs: ["--engine", "openai", "--upstream-url", upstreamUrl, "--upstream-model-ids", model],
      reason: `from --model ${model} with --upstream-url`,
    };
  }

  // No model: the engine named, else the upstream's if there is one, else the test model.
  if (named === "sim") {
    noUpstream("--engine sim was given");
    const preset = request.defaultSimPreset;
    return { engine: "sim", workerArgs: ["--engine", "sim", "--sim-preset", preset], reason: `from --engine sim: preset ${preset}` };
  }
  if (named === "openai" || (named === undefined && upstreamUrl !== "")) {
    if (upstreamUrl === "") throw new Error("--engine openai needs --upstream-url, the OpenAI-compatible server to forward to");
    return {
      engine: "openai",
      workerArgs: ["--engine", "openai", "--upstream-url", upstreamUrl],
      reason: `from ${named === undefined ? "--upstream-url" : "--engine openai"}: every model the upstream lists`,
    };
  }
  noUpstream("--engine llamacpp was given");
  return {
    engine: "llamacpp",
    workerArgs: ["--engine", "llamacpp"],
    reason:
      named === undefined ? "no --model: the generated test model" : "from --engine llamacpp: no --model, so the generated test model",
  };
}

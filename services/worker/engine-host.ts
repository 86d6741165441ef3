import { existsSync } from "node:fs";
import { isAbsolute, relative, resolve } from "node:path";
import { ServingState, type ModelInfo } from "../../gen/infermesh/common/v1/common.js";
import { EngineError, type Engine, type KvBlockEvent } from "./engines/engine.js";

/** Builds an engine for a GGUF; absent when the worker's engine cannot load models. */
export type ModelLoader = (modelPath: string, modelId: string) => Promise<Engine>;

/**
 * The worker's engine, which an admin may swap: it serves one engine at a time, passes
 * the engine's load and KV events on to whoever listens (the router and memory-guard
 * streams subscribe once, whatever engine comes), and loads or unloads models on
 * request. Load and unload run one at a time.
 */
export class EngineHost {
  engine: Engine | undefined = undefined;
  state = ServingState.SERVING_STATE_LOADING;
  stateReason = "";
  private readonly loadListeners = new Set<() => void>();
  private readonly kvListeners = new Set<(event: KvBlockEvent) => void>();
  private readonly modelListeners = new Set<() => void>();
  private turn: Promise<unknown> = Promise.resolve();
  /** While an unload drains: checks whether the engine has gone idle. */
  private onEngineLoad: (() => void) | undefined;

  constructor(
    private readonly options: {
      /** Absent for engines that serve a fixed set of models (sim, openai). */
      readonly loader: ModelLoader | undefined;
      /** Admin loads are confined to this directory. */
      readonly modelDir: string;
      /** How long an unload waits for running generations. */
      readonly drainGraceMs: number;
    },
  ) {}

  /** Engine load changed (a request started or ended) or the serving state did. */
  onLoadChange(listener: () => void): void {
    this.loadListeners.add(listener);
  }

  onKvEvent(listener: (event: KvBlockEvent) => void): void {
    this.kvListeners.add(listener);
  }

  /** The models served changed. */
  onModelsChanged(listener: () => void): void {
    this.modelListeners.add(listener);
  }

  models(): ModelInfo[] {
    return this.engine?.models() ?? [];
  }

  /** Serves `engine` from now on. */
  serve(engine: Engine): void {
    engine.onLoadChange(() => {
      if (this.engine !== engine) return;
      this.emit(this.loadListeners);
      this.onEngineLoad?.();
    });
    engine.onKvEvent((event) => {
      if (this.engine === engine) for (const listener of this.kvListeners) listener(event);
    });
    this.engine = engine;
    this.state = ServingState.SERVING_STATE_SERVING;
    this.stateReason = "";
    this.emit(this.modelListeners);
    this.emit(this.loadListeners);
  }

  /** The model failed to load: the worker stays up, NOT_SERVING, and says why. */
  fail(reason: string): void {
    this.state = ServingState.SERVING_STATE_FAILED;
    this.stateReason = reason;
    this.emit(this.loadListeners);
  }

  /** Loads the GGUF at `modelPath` (inside the model directory) and serves it as `modelId`. */
  load(modelId: string, modelPath: string): Promise<ModelInfo> {
    return this.inTurn(async () => {
      const { loader, modelDir } = this.options;
      if (!loader) throw new EngineError("failed_precondition", "this worker's engine serves a fixed set of models and cannot load one");
      if (modelId === "") throw new EngineError("invalid_argument", "model_id must be set");
      const served = this.engine?.models().find((model) => model.id === modelId);
      if (served) return served;
      if (this.engine) {
        const current = this.engine
          .models()
          .map((model) => model.id)
          .join(", ");
        throw new EngineError("failed_precondition", `this worker serves ${current}; unload it first (one model per worker)`);
      }
      const path = resolve(modelDir, modelPath);
      const inside = relative(resolve(modelDir), path);
      if (modelPath === "" || inside.startsWith("..") || isAbsolute(inside)) {
        throw new EngineError("invalid_argument", `model_path must name a GGUF inside the worker's model directory (${modelDir})`);
      }
      if (!existsSync(path)) throw new EngineError("not_found", `no file ${inside} in the worker's model directory`);
      this.state = ServingState.SERVING_STATE_LOADING;
      this.emit(this.loadListeners);
      let engine: Engine;
      try {
        engine = await loader(path, modelId);
      } catch (error) {
        this.state = ServingState.SERVING_STATE_IDLE;
        this.emit(this.loadListeners);
        throw new EngineError("failed_precondition", `the model failed to load: ${error instanceof Error ? error.message : String(error)}`);
      }
      this.serve(engine);
      return engine.models()[0]!;
    });
  }

  /**
   * Stops serving `modelId`: drains at once (the router stops sending work), lets
   * running generations finish for up to the grace period, then frees the engine.
   */
  unload(modelId: string): Promise<void> {
    return this.inTurn(async () => {
      const engine = this.engine;
      if (!engine?.models().some((model) => model.id === modelId))
        throw new EngineError("not_found", `this worker does not serve ${modelId}`);
      // An engine that cannot load could not serve again until restarted: drain it instead.
      if (!this.options.loader)
        throw new EngineError(
          "failed_precondition",
          "this worker's engine cannot load models, so it does not unload them; drain the worker instead",
        );
      this.state = ServingState.SERVING_STATE_DRAINING;
      this.emit(this.loadListeners);
      await this.drained(engine);
      this.engine = undefined;
      this.state = ServingState.SERVING_STATE_IDLE;
      this.emit(this.modelListeners);
      this.emit(this.loadListeners);
      await engine.close();
    });
  }

  /** Resolves when `engine` runs nothing, or when the grace period is over. */
  private drained(engine: Engine): Promise<void> {
    const idle = () => {
      const load = engine.load();
      return load.runningRequests + load.waitingRequests === 0;
    };
    if (idle()) return Promise.resolve();
    return new Promise((done) => {
      const finish = () => {
        clearTimeout(timer);
        this.onEngineLoad = undefined;
        done();
      };
      const timer = setTimeout(finish, this.options.drainGraceMs);
      this.onEngineLoad = () => idle() && finish();
    });
  }

  private inTurn<T>(work: () => Promise<T>): Promise<T> {
    const result = this.turn.then(work);
    this.turn = result.catch(() => undefined);
    return result;
  }

  private emit(listeners: ReadonlySet<() => void>): void {
    for (const listener of listeners) listener();
  }
}

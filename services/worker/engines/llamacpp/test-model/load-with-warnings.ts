import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from "node-llama-cpp";

/** Loads a GGUF on the CPU and keeps the warnings and errors llama.cpp logs while loading it (tests read them). */
export async function loadWithWarnings(path: string): Promise<{ llama: Llama; model: LlamaModel; loadWarnings: string[] }> {
  const loadWarnings: string[] = [];
  let loading = true;
  const llama = await getLlama({
    gpu: false,
    logLevel: LlamaLogLevel.warn,
    logger: (level, message) => {
      if (loading && (level === LlamaLogLevel.warn || level === LlamaLogLevel.error)) loadWarnings.push(message);
    },
  });
  try {
    const model = await llama.loadModel({ modelPath: path });
    return { llama, model, loadWarnings };
  } catch (error) {
    await llama.dispose();
    throw error;
  } finally {
    loading = false;
  }
}

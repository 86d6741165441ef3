import type { LlamaContextSequence, LlamaGrammar, LlamaModel, Token } from "node-llama-cpp";
import { LlamaGrammarEvaluationState } from "node-llama-cpp";
import type { SamplingParams, TokenLogprob } from "../../../../gen/infermesh/common/v1/common.js";
import { StopStrings } from "../stop-strings.js";

export interface DecodedDelta {
  readonly text: string;
  readonly tokenCount: number;
  readonly logprobs: readonly TokenLogprob[] | undefined;
}

export type DecodeStop = "stop" | "length" | "abort";

/**
 * Decodes on one sequence token by token, for what LlamaChat cannot give: log
 * probabilities, and raw prompts. The sequence keeps its first `keep` tokens (a reused
 * prefix) and evaluates the rest of the prompt; each generated token is detokenized
 * with its neighbours, so multi-byte characters split across tokens come out whole;
 * stop strings end the output and are not part of it. Decoding stops before the next
 * token once `signal` aborts.
 */
export async function decodeTokens(options: {
  readonly model: LlamaModel;
  readonly sequence: LlamaContextSequence;
  readonly promptTokens: readonly Token[];
  readonly keep: number;
  readonly sampling: SamplingParams;
  readonly temperature: number;
  readonly maxTokens: number;
  readonly grammar: LlamaGrammar | undefined;
  readonly signal: AbortSignal;
  readonly emit: (delta: DecodedDelta) => void;
}): Promise<DecodeStop> {
  const { model, sequence, sampling, signal } = options;
  if (sequence.nextTokenIndex > options.keep) {
    await sequence.eraseContextTokenRanges([{ start: options.keep, end: sequence.nextTokenIndex }]);
  }
  const generated: Token[] = [];
  const stops = new StopStrings(sampling.stop);
  const topLogprobs = sampling.logprobs ? Math.min(sampling.topLogprobs, 20) : 0;
  let undecodedFrom = 0;
  const penalties =
    sampling.repetitionPenalty !== undefined || sampling.presencePenalty !== undefined || sampling.frequencyPenalty !== undefined;
  const evaluation = sequence.evaluateWithMetadata(
    options.promptTokens.slice(options.keep) as Token[],
    { probabilities: sampling.logprobs },
    {
      temperature: options.temperature,
      topK: sampling.topK,
      topP: sampling.topP,
      minP: sampling.minP,
      seed: sampling.seed,
      repeatPenalty: penalties
        ? {
            punishTokens: () => generated.slice(-64),
            penalty: sampling.repetitionPenalty,
            presencePenalty: sampling.presencePenalty,
            frequencyPenalty: sampling.frequencyPenalty,
          }
        : undefined,
      grammarEvaluationState: options.grammar ? new LlamaGrammarEvaluationState({ model, grammar: options.grammar }) : undefined,
    },
  );
  let stop: DecodeStop = "stop";
  for await (const output of evaluation) {
    generated.push(output.token);
    // Text of the tokens not yet emitted, read with the tokens before them for spacing;
    // an incomplete UTF-8 sequence waits for the token that completes it.
    const pending = generated.slice(undecodedFrom);
    let text = model.detokenize(pending, false, generated.slice(Math.max(0, undecodedFrom - 8), undecodedFrom));
    if (text.endsWith("\uFFFD") && generated.length < options.maxTokens) text = "";
    else undecodedFrom = generated.length;
    const logprobs = sampling.logprobs
      ? [logprobOf(model, output.token, (output as { probabilities?: Map<Token, number> }).probabilities, topLogprobs)]
      : undefined;
    options.emit({ text: stops.push(text), tokenCount: 1, logprobs });
    if (stops.stopped) break;
    if (generated.length >= options.maxTokens) {
      stop = "length";
      break;
    }
    if (signal.aborted) {
      stop = "abort";
      break;
    }
  }
  let rest = "";
  if (!stops.stopped && undecodedFrom < generated.length) {
    rest = stops.push(
      model.detokenize(generated.slice(undecodedFrom), false, generated.slice(Math.max(0, undecodedFrom - 8), undecodedFrom)),
    );
  }
  rest += stops.flush();
  if (rest !== "") options.emit({ text: rest, tokenCount: 0, logprobs: undefined });
  return signal.aborted ? "abort" : stop;
}

function logprobOf(model: LlamaModel, token: Token, probabilities: Map<Token, number> | undefined, top: number): TokenLogprob {
  const entry = (candidate: Token, probability: number) => {
    const text = model.detokenize([candidate], true);
    return { token: text, logprob: Math.log(Math.max(probability, Number.MIN_VALUE)), bytes: Buffer.from(text, "utf8") };
  };
  const alternatives: TokenLogprob["topLogprobs"] = [];
  if (probabilities) {
    for (const [candidate, probability] of probabilities) {
      if (alternatives.length >= top) break;
      alternatives.push(entry(candidate, probability));
    }
  }
  return { ...entry(token, probabilities?.get(token) ?? 0), topLogprobs: alternatives };
}

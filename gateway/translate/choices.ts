import { Status } from "nice-grpc";
import { FinishReason, type TokenLogprob, type ToolCall, type Usage } from "../../gen/infermesh/common/v1/common.js";
import { ApiError } from "../errors.js";
import type { GenerationEvent } from "../mesh/generation.js";
import { joinToolCall } from "../../services/common/tool-call-fragments.js";

/** One choice of a finished generation. */
export interface Choice {
  readonly index: number;
  text: string;
  reasoning: string;
  readonly toolCalls: ToolCall[];
  readonly logprobs: TokenLogprob[];
  finishReason: FinishReason;
}

/** A whole generation, gathered from its events. */
export interface CollectedGeneration {
  /** The model that actually served it. */
  readonly model: string;
  readonly choices: readonly Choice[];
  readonly usage: Usage | undefined;
}

const newChoice = (index: number): Choice => ({
  index,
  text: "",
  reasoning: "",
  toolCalls: [],
  logprobs: [],
  finishReason: FinishReason.FINISH_REASON_STOP,
});

/** The usage of several generations (the prompts of one completions request), added up. */
export function sumUsage(usages: readonly (Usage | undefined)[]): Usage {
  return usages.reduce<Usage>(
    (sum, usage) => ({
      promptTokens: sum.promptTokens + (usage?.promptTokens ?? 0),
      completionTokens: sum.completionTokens + (usage?.completionTokens ?? 0),
      cachedTokens: sum.cachedTokens + (usage?.cachedTokens ?? 0),
      reasoningTokens: sum.reasoningTokens + (usage?.reasoningTokens ?? 0),
    }),
    { promptTokens: 0, completionTokens: 0, cachedTokens: 0, reasoningTokens: 0 },
  );
}

/** A worker's terminal error event as an ApiError. */
export const streamErrorOf = (event: Extract<GenerationEvent, { $case: "error" }>) =>
  new ApiError(event.value.statusCode as Status, event.value.message);

/**
 * Gathers a generation's events into its choices, in index order. A terminal error
 * event is thrown as an ApiError: a whole answer either arrives or fails.
 */
export async function collectGeneration(
  events: AsyncIterable<GenerationEvent>,
  requestedModel: string,
  choiceCount: number,
): Promise<CollectedGeneration> {
  let model = requestedModel;
  const choices = Array.from({ length: choiceCount }, (_, index) => newChoice(index));
  let usage: Usage | undefined;
  const choiceAt = (index: number) => {
    const choice = choices[index];
    if (!choice) throw new ApiError(Status.INTERNAL, `the worker sent choice ${index} of ${choiceCount}`);
    return choice;
  };
  for await (const event of events) {
    switch (event.$case) {
      case "started":
        model = event.value.model || model;
        break;
      case "delta": {
        const choice = choiceAt(event.value.index);
        choice.text += event.value.text;
        choice.reasoning += event.value.reasoningText;
        choice.logprobs.push(...event.value.logprobs);
        for (const fragment of event.value.toolCalls) joinToolCall(choice.toolCalls, fragment);
        break;
      }
      case "choiceEnd":
        choiceAt(event.value.index).finishReason = event.value.finishReason;
        break;
      case "finished":
        if (choiceCount === 1) choices[0]!.finishReason = event.value.finishReason;
        usage = event.value.usage;
        break;
      case "error":
        throw streamErrorOf(event);
    }
  }
  return { model, choices, usage };
}

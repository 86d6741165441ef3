import { contextOf, type Filter } from "../plugin.js";

/** Workers whose context window the prompt fits (an unknown window fits anything). */
export const contextFitFilter: Filter = {
  name: "context-fit",
  keeps(member, model, _health, pick) {
    const window = contextOf(member, model);
    return window === 0 || pick.query.estimatedInputTokens < window;
  },
};

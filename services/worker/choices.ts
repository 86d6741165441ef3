import { pushable } from "it-pushable";
import type { GenerationEvent } from "./engines/engine.js";

/** An event of one of the n choices of a generation. */
export interface ChoiceEvent {
  readonly index: number;
  readonly event: GenerationEvent;
}

/**
 * Interleaves the events of a generation's choices as they come. One choice is read
 * directly; several are pumped concurrently. The first failure ends the merge with that
 * error (the caller then cancels the rest).
 */
export async function* mergeChoices(choices: readonly AsyncIterator<GenerationEvent>[]): AsyncGenerator<ChoiceEvent> {
  if (choices.length === 1) {
    for (;;) {
      const next = await choices[0]!.next();
      if (next.done) return;
      yield { index: 0, event: next.value };
    }
  }
  const merged = pushable<ChoiceEvent>({ objectMode: true });
  let running = choices.length;
  for (const [index, choice] of choices.entries()) {
    void (async () => {
      try {
        for (;;) {
          const next = await choice.next();
          if (next.done) break;
          merged.push({ index, event: next.value });
        }
        running -= 1;
        if (running === 0) merged.end();
      } catch (error) {
        merged.end(error instanceof Error ? error : new Error(String(error)));
      }
    })();
  }
  yield* merged;
}

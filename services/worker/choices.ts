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

type DeltaEvent = Extract<GenerationEvent, { kind: "delta" }>;

const mergeDeltas = (first: DeltaEvent, second: DeltaEvent): DeltaEvent => ({
  kind: "delta",
  text: first.text + second.text,
  reasoningText: (first.reasoningText ?? "") + (second.reasoningText ?? ""),
  tokenCount: first.tokenCount + second.tokenCount,
  logprobs: first.logprobs || second.logprobs ? [...(first.logprobs ?? []), ...(second.logprobs ?? [])] : undefined,
  toolCalls: first.toolCalls || second.toolCalls ? [...(first.toolCalls ?? []), ...(second.toolCalls ?? [])] : undefined,
});

/** Settles after the current I/O phase: whatever is already buffered upstream resolves before it. */
const nextTurn = () => new Promise<typeof nextTurnMarker>((resolve) => setImmediate(resolve, nextTurnMarker));
const nextTurnMarker = Symbol("next turn");

/**
 * Merges consecutive deltas of one choice that are ready at the same time into one
 * event: what piled up while the caller's stream was backed up, or what the engine
 * produced in one step. A delta is held at most one event-loop turn (a setImmediate),
 * microseconds when the loop is idle; merging saves messages when tokens outrun the
 * reader. Deltas of different choices are not merged with each other.
 */
export async function* coalesceDeltas(events: AsyncIterator<ChoiceEvent>): AsyncGenerator<ChoiceEvent> {
  let pending: Promise<IteratorResult<ChoiceEvent>> | undefined;
  try {
    for (;;) {
      const next = await (pending ?? events.next());
      pending = undefined;
      if (next.done) return;
      if (next.value.event.kind !== "delta") {
        yield next.value;
        continue;
      }
      const { index } = next.value;
      let delta = next.value.event;
      for (;;) {
        pending = events.next();
        const ready = await Promise.race([pending, nextTurn()]);
        if (ready === nextTurnMarker || ready.done || ready.value.index !== index || ready.value.event.kind !== "delta") {
          // Not ready yet, or not mergeable: keep it (pending) for the outer loop.
          if (ready !== nextTurnMarker) pending = Promise.resolve(ready);
          break;
        }
        pending = undefined;
        delta = mergeDeltas(delta, ready.value.event);
      }
      yield { index, event: delta };
    }
  } finally {
    // Leave the pending read to settle on its own; the source is closed by its owner.
    pending?.catch(() => undefined);
  }
}

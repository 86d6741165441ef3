import assert from "node:assert/strict";
import test from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pushable } from "it-pushable";
import { FinishReason } from "../../gen/infermesh/common/v1/common.js";
import { coalesceDeltas, type ChoiceEvent } from "./choices.js";

const delta = (index: number, text: string): ChoiceEvent => ({ index, event: { kind: "delta", text, tokenCount: 1 } });
const finished: ChoiceEvent = {
  index: 0,
  event: {
    kind: "finished",
    finishReason: FinishReason.FINISH_REASON_STOP,
    promptTokens: 1,
    completionTokens: 3,
    cachedTokens: 0,
    reasoningTokens: 0,
  },
};

test("deltas of one choice that are ready together become one event; other choices and the end stay apart", async () => {
  const source = pushable<ChoiceEvent>({ objectMode: true });
  for (const event of [delta(0, "a"), delta(0, "b"), delta(0, "c"), delta(1, "x"), delta(0, "d"), finished]) source.push(event);
  source.end();
  const out = [];
  for await (const event of coalesceDeltas(source[Symbol.asyncIterator]())) out.push(event);
  assert.deepEqual(
    out.map(({ index, event }) => (event.kind === "delta" ? `${index}:${event.text}/${event.tokenCount}` : event.kind)),
    ["0:abc/3", "1:x/1", "0:d/1", "finished"],
  );
});

test("a delta that arrives alone is passed on before the next one exists", async () => {
  const source = pushable<ChoiceEvent>({ objectMode: true });
  const events = coalesceDeltas(source[Symbol.asyncIterator]());
  source.push(delta(0, "first"));
  const first = await events.next();
  assert.equal(first.value?.event.kind === "delta" && first.value.event.text, "first");
  await sleep(5);
  source.push(delta(0, "second"));
  source.end();
  const second = await events.next();
  assert.equal(second.value?.event.kind === "delta" && second.value.event.text, "second");
  assert.equal((await events.next()).done, true);
});

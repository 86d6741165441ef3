import assert from "node:assert/strict";
import { test } from "node:test";
import { StopStrings } from "./stop-strings.js";

function run(stops: string[], pieces: string[]): { text: string; stopped: boolean } {
  const filter = new StopStrings(stops);
  let text = "";
  for (const piece of pieces) text += filter.push(piece);
  text += filter.flush();
  return { text, stopped: filter.stopped };
}

test("a stop string split across tokens never reaches the output", () => {
  assert.deepEqual(run(["END"], ["hello E", "N", "D and more"]), { text: "hello ", stopped: true });
});

test("text that only looked like a stop string's start is released", () => {
  assert.deepEqual(run(["END"], ["an E", "ND"]), { text: "an ", stopped: true });
  assert.deepEqual(run(["END"], ["an E", "asy one"]), { text: "an Easy one", stopped: false });
});

test("the earliest of several stop strings wins", () => {
  assert.deepEqual(run(["zz", "b"], ["aazzb"]), { text: "aa", stopped: true });
  assert.deepEqual(run(["\n\n", "###"], ["one\n", "#", "## two"]), { text: "one\n", stopped: true });
});

test("with no stop strings everything passes through", () => {
  assert.deepEqual(run([], ["a", "b"]), { text: "ab", stopped: false });
});

import assert from "node:assert/strict";
import { resolve } from "node:path";
import { test } from "node:test";
import { getLlama, type BatchItem, type LlamaContext } from "node-llama-cpp";
import { repoRoot } from "../../../common/paths.js";
import { queuedSequenceIds, sequenceOrderedStrategy, shareTokens } from "./batch-strategy.js";
import { ensureTestModel } from "./test-model/generate.js";

const item = (tokens: number, evaluationPriority: BatchItem["evaluationPriority"] = 5): BatchItem => ({
  tokens: Array.from({ length: tokens }, (_, index) => index as never),
  logits: [],
  evaluationPriority,
});

test("tokens are shared equally, then the rest goes to the higher priority, never past the batch size", () => {
  const [low, high, short] = [item(100, 1), item(100, 5), item(3)];
  const shared = shareTokens([low, high, short], 30);
  assert.deepEqual(
    shared.map((entry) => entry.processAmount),
    [10, 17, 3],
  );
  assert.deepEqual(
    shareTokens([item(1), item(1)], 8).map((entry) => entry.processAmount),
    [1, 1],
  );
  const crowded = shareTokens([item(5), item(5), item(5)], 2);
  assert.equal(
    crowded.reduce((sum, entry) => sum + entry.processAmount, 0),
    2,
  );
});

test("the batch is held while a generating sequence has not queued yet, at most maxHolds times in a row", () => {
  const items = [item(1), item(1)];
  let generating = 3;
  const strategy = sequenceOrderedStrategy(
    () => undefined,
    () => generating,
    4,
  );
  for (let hold = 0; hold < 4; hold += 1) assert.deepEqual(strategy({ items, size: 512 }), []);
  assert.equal(strategy({ items, size: 512 }).length, 2, "after maxHolds it decodes what is there");
  assert.deepEqual(strategy({ items, size: 512 }), [], "holding starts again on the next step");
  generating = 2;
  assert.equal(strategy({ items, size: 512 }).length, 2, "nobody missing: no hold");
});

test("items go in sequence-id order whatever order they were queued in", () => {
  const [a, b, c] = [item(1), item(1), item(1)];
  const ids = new Map<readonly unknown[], number>([
    [a.tokens, 2],
    [b.tokens, 0],
    [c.tokens, 1],
  ]);
  const ordered = sequenceOrderedStrategy(
    () => ids,
    () => 3,
  )({ items: [a, b, c], size: 512 });
  assert.deepEqual(
    ordered.map((entry) => ids.get(entry.item.tokens)),
    [0, 1, 2],
  );
});

test("on a real context, concurrent generations decode as whole steps in sequence order", async () => {
  const model = await ensureTestModel({ cacheDir: resolve(repoRoot(), ".cache/models"), size: "tiny", weightType: "f16" });
  const llama = await getLlama({ gpu: false, logLevel: "error" as never });
  const loaded = await llama.loadModel({ modelPath: model.path });
  let context: LlamaContext | undefined;
  let generating = 0;
  const sequenceIds = queuedSequenceIds(() => context);
  const strategy = sequenceOrderedStrategy(sequenceIds, () => generating);
  const steps: number[][] = [];
  context = await loaded.createContext({
    contextSize: 1024,
    sequences: 4,
    threads: 1,
    swaFullCache: true,
    batching: {
      itemPrioritizationStrategy: (options) => {
        const chosen = strategy(options);
        const ids = sequenceIds();
        assert.ok(ids, "node-llama-cpp's queued decodes no longer carry sequence ids: batches fall back to queue order");
        if (chosen.length > 0) steps.push(chosen.map((entry) => ids.get(entry.item.tokens)!));
        return chosen;
      },
    },
  });
  try {
    const sequences = [context.getSequence(), context.getSequence(), context.getSequence(), context.getSequence()];
    generating = sequences.length;
    await Promise.all(
      sequences.map(async (sequence, index) => {
        let count = 0;
        for await (const _token of sequence.evaluate(loaded.tokenize(`prompt number ${index} about rivers`), {
          temperature: 1,
          seed: index,
        })) {
          count += 1;
          if (count === 24) break;
        }
      }),
    );
    // The first step is the four prompts; the last few may be short as generations end.
    const decodeSteps = steps.slice(1, -3);
    assert.ok(decodeSteps.length >= 18, `expected ~23 decode steps, saw ${decodeSteps.length}`);
    for (const step of decodeSteps)
      assert.deepEqual(step, [0, 1, 2, 3], `every step decodes all four sequences in order: ${JSON.stringify(steps)}`);
  } finally {
    await context.dispose();
    await loaded.dispose();
    await llama.dispose();
  }
});

import assert from "node:assert/strict";
import test from "node:test";
import { parsePrometheusText, PrometheusParseError } from "./prometheus-text.js";

test("parses names, escaped label values, special values and timestamps", () => {
  const scrape = parsePrometheusText(
    [
      "# HELP up Whether it is up.",
      "# TYPE up gauge",
      "up 1",
      'info{path="C:\\\\models\\\\x",quote="say \\"hi\\"",multi="a\\nb",empty=""} 1.0 1712345678901',
      "# a free comment",
      "",
      'ratio{le="+Inf",} NaN',
      "hot +Inf",
      "cold -Inf",
      "big 1.7537953269352946e+09",
      "tiny 9.75010481363281e-06\r",
    ].join("\n"),
  );
  assert.deepEqual(scrape.types.get("up"), "gauge");
  assert.deepEqual(
    scrape.samples.map((sample) => sample.name),
    ["up", "info", "ratio", "hot", "cold", "big", "tiny"],
  );
  assert.deepEqual(scrape.samples[1]!.labels, { path: "C:\\models\\x", quote: 'say "hi"', multi: "a\nb", empty: "" });
  assert.equal(scrape.samples[1]!.value, 1);
  assert.ok(Number.isNaN(scrape.samples[2]!.value));
  assert.deepEqual(scrape.samples[2]!.labels, { le: "+Inf" });
  assert.equal(scrape.samples[3]!.value, Number.POSITIVE_INFINITY);
  assert.equal(scrape.samples[4]!.value, Number.NEGATIVE_INFINITY);
  assert.equal(scrape.samples[5]!.value, 1753795326.9352946);
  assert.equal(scrape.samples[6]!.value, 9.75010481363281e-6);
});

test("rejects malformed lines, naming the line", () => {
  const bad = [
    ['ok 1\nbroken{a="x} 1', 2],
    ["no_value", 1],
    ["x{a=1} 2", 1],
    ['x{a="1" b="2"} 2', 1],
    ["x 12abc", 1],
    ['x{a="\\t"} 1', 1],
    ['x{a="1",a="2"} 1', 1],
    ["# TYPE x sideways", 1],
    ["[]", 1],
    ['{"object":"list"}', 1],
  ] as const;
  for (const [text, line] of bad) {
    assert.throws(
      () => parsePrometheusText(text),
      (error: unknown) => error instanceof PrometheusParseError && error.line === line,
      `should reject ${JSON.stringify(text)} at line ${line}`,
    );
  }
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { LauncherOutput, loadProgressOf } from "./output.js";

const progressLine = (fraction: number) =>
  JSON.stringify({ level: "info", service: "worker", load_progress: fraction, msg: `loading model: ${fraction * 100} %` });

function capture(progressBar: boolean) {
  const written: string[] = [];
  const output = new LauncherOutput(
    { stdout: (text) => written.push(text), stderr: (text) => written.push(`<stderr>${text}`) },
    (child, line) => `[${child}] ${line}`,
    progressBar,
  );
  return { output, written };
}

test("a worker's load progress line is recognised by its field; other lines are not", () => {
  assert.equal(loadProgressOf(progressLine(0.4)), 0.4);
  assert.equal(loadProgressOf(progressLine(1.5)), 1);
  assert.equal(loadProgressOf('{"msg":"worker ready"}'), undefined);
  assert.equal(loadProgressOf('{"load_progress":"half"}'), undefined);
  assert.equal(loadProgressOf('{"load_progress": broken'), undefined);
  assert.equal(loadProgressOf("plain text with load_progress in it"), undefined);
});

test("on a terminal the loading progress is one bar that updates in place and ends on its own line", () => {
  const { output, written } = capture(true);
  output.childLine("worker-0", progressLine(0.1), "stdout");
  output.childLine("worker-0", progressLine(0.5), "stdout");
  assert.deepEqual(written, [
    `\r\x1b[2K[infermesh] loading model ${"█".repeat(3)}${"░".repeat(27)} 10 %`,
    `\r\x1b[2K[infermesh] loading model ${"█".repeat(15)}${"░".repeat(15)} 50 %`,
  ]);
  written.length = 0;
  output.childLine("router", "a line", "stderr");
  assert.deepEqual(
    written,
    ["\r\x1b[2K", "<stderr>[router] a line\n", `[infermesh] loading model ${"█".repeat(15)}${"░".repeat(15)} 50 %`],
    "another line clears the bar, is written, and the bar is drawn again below it",
  );
  written.length = 0;
  output.childLine("worker-0", progressLine(1), "stdout");
  output.say("ready");
  assert.deepEqual(
    written,
    [`\r\x1b[2K[infermesh] loading model ${"█".repeat(30)} 100 %\n`, "[infermesh] ready\n"],
    "done: the bar stays as a line",
  );
});

test("with several workers the bar shows their mean and each one, until all have loaded", () => {
  const { output, written } = capture(true);
  output.childLine("worker-0", progressLine(0.5), "stdout");
  output.childLine("worker-1", progressLine(0.2), "stdout");
  assert.match(written.at(-1)!, /loading model █{11}░{19} 35 % \(worker-0 50 %, worker-1 20 %\)$/);
  output.childLine("worker-0", progressLine(1), "stdout");
  assert.match(written.at(-1)!, /loading model █{18}░{12} 60 % \(worker-0 100 %, worker-1 20 %\)$/);
  assert.ok(!written.at(-1)!.endsWith("\n"));
  output.childLine("worker-1", progressLine(1), "stdout");
  assert.match(written.at(-1)!, /100 % \(worker-0 100 %, worker-1 100 %\)\n$/);
});

test("without a terminal, or with JSON logs, progress lines pass through as lines", () => {
  const { output, written } = capture(false);
  output.childLine("worker-0", progressLine(0.5), "stdout");
  output.childLine("worker-0", progressLine(1), "stdout");
  assert.deepEqual(written, [`[worker-0] ${progressLine(0.5)}\n`, `[worker-0] ${progressLine(1)}\n`]);
});

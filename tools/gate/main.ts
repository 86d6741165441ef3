/**
 * The release gate, against any OpenAI-compatible endpoint:
 *
 *   npm run gate -- --target http://127.0.0.1:8000 --model gpt-oss-20b [--slo slo.yaml] [--quick] [--out gate-report]
 *
 * Runs STEP, SPIKE and SOAK, prints each SLO's verdict with the measured value beside
 * its threshold, writes an HTML report with charts and the figures as JSON, and exits 0 for PROMOTE, 1 for HOLD (2 for
 * a usage error), so CI/CD can gate on it. The API key, if any, comes from
 * INFERMESH_GATE_API_KEY (never a flag: flags end up in shell histories and CI logs).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { runGate } from "./gate.js";
import { loadSpec } from "./slo.js";
import { htmlReport, verdictRows } from "./report.js";

function usage(message: string): never {
  process.stderr.write(`${message}\nUsage: npm run gate -- --target URL --model ID [--slo FILE] [--quick] [--out DIR]\n`);
  process.exit(2);
}

let values: { target?: string; model?: string; slo?: string; quick?: boolean; out?: string };
try {
  ({ values } = parseArgs({
    options: {
      target: { type: "string" },
      model: { type: "string" },
      slo: { type: "string" },
      quick: { type: "boolean", default: false },
      out: { type: "string", default: "gate-report" },
    },
  }));
} catch (error) {
  usage((error as Error).message);
}
if (!values.target || !/^https?:\/\//.test(values.target)) usage("--target must be the endpoint's http(s) URL");
if (!values.model) usage("--model must name the model to try");
let spec: ReturnType<typeof loadSpec>;
try {
  spec = loadSpec(values.slo, values.quick ?? false);
} catch (error) {
  usage(`the SLO file is invalid: ${(error as Error).message}`);
}

const out = resolve(values.out ?? "gate-report");
process.stderr.write(`release gate: ${values.model} at ${values.target}${values.quick ? " (quick)" : ""}\n`);
const { verdict, samples } = await runGate(
  { url: values.target, model: values.model, apiKey: process.env.INFERMESH_GATE_API_KEY },
  spec,
  (line) => process.stderr.write(`  ${line}\n`),
);

const rows = verdictRows(verdict);
const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
for (const row of rows) process.stdout.write(`${row.map((cell, column) => cell.padEnd(widths[column]!)).join("  ")}\n`);
process.stdout.write(`verdict: ${verdict.decision}\n`);

mkdirSync(out, { recursive: true });
writeFileSync(
  join(out, "report.json"),
  `${JSON.stringify({ target: values.target, model: values.model, spec, ...verdict, samples }, null, 2)}\n`,
);
writeFileSync(join(out, "report.html"), htmlReport({ target: values.target, model: values.model, spec, verdict, samples, at: new Date() }));
process.stderr.write(`report: ${join(out, "report.html")} (figures: report.json)\n`);
process.exit(verdict.decision === "PROMOTE" ? 0 : 1);

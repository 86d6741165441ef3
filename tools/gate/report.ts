import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Sample } from "./load.js";
import type { GateSpec } from "./slo.js";
import { type Check, percentile, type Verdict } from "./verdict.js";

/** Chart.js's browser bundle, inlined so the report opens anywhere, offline included. */
function chartJs(): string {
  const entry = createRequire(import.meta.url).resolve("chart.js");
  return readFileSync(join(dirname(entry), "chart.umd.min.js"), "utf8");
}

/** A phase's samples in `windows` equal slices of its time: completed per second and latency percentiles, for the timelines. */
function timeline(samples: readonly Sample[], windows: number) {
  if (samples.length === 0) return [];
  const from = Math.min(...samples.map((sample) => sample.startMs));
  const to = Math.max(...samples.map((sample) => sample.startMs)) + 1;
  const width = (to - from) / windows;
  return Array.from({ length: windows }, (_, index) => {
    const inside = samples.filter((sample) => Math.min(windows - 1, Math.floor((sample.startMs - from) / width)) === index);
    const ok = inside.filter((sample) => sample.ok);
    return {
      atS: Math.round(((index + 0.5) * width) / 100) / 10,
      sentPerS: inside.length / (width / 1000),
      failed: inside.length - ok.length,
      ttftP95: percentile(
        ok.flatMap((sample) => (sample.ttftMs === undefined ? [] : [sample.ttftMs])),
        95,
      ),
      e2eP95: percentile(
        ok.map((sample) => sample.e2eMs),
        95,
      ),
    };
  });
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (character) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[character]!);

const shown = (check: Check, value: number | null) =>
  value === null
    ? "none"
    : check.slo === "errorRate"
      ? `${(100 * value).toFixed(2)} %`
      : check.slo === "qpsFloor"
        ? `${value.toFixed(2)}/s`
        : `${Math.round(value)} ms`;

/** The verdict table's rows: pass or FAIL, the SLO, the phase, measured beside threshold. */
export function verdictRows(verdict: Verdict): string[][] {
  return verdict.checks.map((check) => [
    check.pass ? "pass" : "FAIL",
    check.slo,
    check.phase,
    shown(check, check.measured),
    `${check.bound === "max" ? "≤" : "≥"} ${shown(check, check.threshold)}`,
  ]);
}

/**
 * The report a person reads: the verdict and its table, then latency and throughput
 * against concurrency per step, the spike's timeline and the soak's latency over time,
 * drawn by Chart.js from the figures embedded in the page.
 */
export function htmlReport(run: {
  target: string;
  model: string;
  spec: GateSpec;
  verdict: Verdict;
  samples: readonly Sample[];
  at: Date;
}): string {
  const { verdict, samples } = run;
  const data = {
    steps: verdict.steps.map((step) => ({
      concurrency: step.concurrency,
      ttftP50: step.ttftMs.p50,
      ttftP95: step.ttftMs.p95,
      e2eP50: step.e2eMs.p50,
      e2eP95: step.e2eMs.p95,
      qps: step.qps,
    })),
    spike: timeline(
      samples.filter((sample) => sample.phase === "spike"),
      Math.max(4, Math.min(60, Math.round(run.spec.phases.spike.seconds))),
    ),
    soak: timeline(
      samples.filter((sample) => sample.phase === "soak"),
      Math.max(4, Math.min(60, Math.round(run.spec.phases.soak.seconds / 10))),
    ),
  };
  const rows = verdictRows(verdict)
    .map((row) => `<tr class="${row[0] === "pass" ? "pass" : "fail"}">${row.map((cell) => `<td>${escapeHtml(cell)}</td>`).join("")}</tr>`)
    .join("\n");
  const phases = verdict.phases
    .map(
      (phase) =>
        `<tr><td>${phase.phase}</td><td>${phase.requests}</td><td>${phase.failed}</td><td>${phase.qps.toFixed(2)}</td>` +
        `<td>${phase.ttftMs.p50 === null ? "none" : Math.round(phase.ttftMs.p50)}</td><td>${phase.ttftMs.p95 === null ? "none" : Math.round(phase.ttftMs.p95)}</td>` +
        `<td>${phase.e2eMs.p95 === null ? "none" : Math.round(phase.e2eMs.p95)}</td><td>${phase.itlMs.p95 === null ? "none" : phase.itlMs.p95.toFixed(1)}</td></tr>`,
    )
    .join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Release gate: ${escapeHtml(run.model)} ${verdict.decision}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1b1f24; max-width: 1200px; }
h1 { margin: 0 0 4px; } .meta { color: #57606a; margin-bottom: 16px; }
.decision { display: inline-block; padding: 4px 14px; border-radius: 6px; font-weight: 700; color: white; }
.PROMOTE { background: #1a7f37; } .HOLD { background: #cf222e; }
table { border-collapse: collapse; margin: 12px 0 24px; } td, th { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; }
tr.fail td { background: #ffebe9; } tr.pass td:first-child { color: #1a7f37; } tr.fail td:first-child { color: #cf222e; font-weight: 700; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; } .chart { height: 280px; }
</style></head><body>
<h1>Release gate <span class="decision ${verdict.decision}">${verdict.decision}</span></h1>
<div class="meta">${escapeHtml(run.model)} at ${escapeHtml(run.target)} · ${run.at.toISOString()} · ${samples.length} requests</div>
<h2>Verdict</h2>
<table><tr><th></th><th>SLO</th><th>phase</th><th>measured</th><th>threshold</th></tr>
${rows}
</table>
<h2>Phases</h2>
<table><tr><th>phase</th><th>requests</th><th>failed</th><th>completed/s</th><th>TTFT p50 ms</th><th>TTFT p95 ms</th><th>E2E p95 ms</th><th>ITL p95 ms</th></tr>
${phases}
</table>
<div class="charts">
<div><h3>Step: latency against concurrency</h3><div class="chart"><canvas id="step-latency"></canvas></div></div>
<div><h3>Step: throughput against concurrency</h3><div class="chart"><canvas id="step-throughput"></canvas></div></div>
<div><h3>Spike: timeline</h3><div class="chart"><canvas id="spike"></canvas></div></div>
<div><h3>Soak: latency over time</h3><div class="chart"><canvas id="soak"></canvas></div></div>
</div>
<script>${chartJs()}</script>
<script>
const data = ${JSON.stringify(data).replaceAll("<", "\\u003c")};
const ms = { y: { beginAtZero: true, title: { display: true, text: "ms" } } };
const common = { responsive: true, maintainAspectRatio: false, animation: false };
new Chart(document.getElementById("step-latency"), { type: "line", options: { ...common, scales: { ...ms, x: { title: { display: true, text: "concurrent requests" } } } },
  data: { labels: data.steps.map((s) => s.concurrency), datasets: [
    { label: "TTFT p50", data: data.steps.map((s) => s.ttftP50) }, { label: "TTFT p95", data: data.steps.map((s) => s.ttftP95) },
    { label: "E2E p50", data: data.steps.map((s) => s.e2eP50) }, { label: "E2E p95", data: data.steps.map((s) => s.e2eP95) } ] } });
new Chart(document.getElementById("step-throughput"), { type: "bar", options: { ...common, scales: { y: { beginAtZero: true, title: { display: true, text: "completed/s" } }, x: { title: { display: true, text: "concurrent requests" } } } },
  data: { labels: data.steps.map((s) => s.concurrency), datasets: [{ label: "completed requests/s", data: data.steps.map((s) => s.qps) }] } });
new Chart(document.getElementById("spike"), { type: "line", options: { ...common, scales: { ...ms, rate: { position: "right", beginAtZero: true, title: { display: true, text: "sent/s, failed" } }, x: { title: { display: true, text: "s into the spike" } } } },
  data: { labels: data.spike.map((w) => w.atS), datasets: [
    { label: "TTFT p95", data: data.spike.map((w) => w.ttftP95) }, { label: "E2E p95", data: data.spike.map((w) => w.e2eP95) },
    { label: "sent/s", data: data.spike.map((w) => w.sentPerS), yAxisID: "rate" }, { label: "failed", data: data.spike.map((w) => w.failed), yAxisID: "rate" } ] } });
new Chart(document.getElementById("soak"), { type: "line", options: { ...common, scales: { ...ms, x: { title: { display: true, text: "s into the soak" } } } },
  data: { labels: data.soak.map((w) => w.atS), datasets: [
    { label: "TTFT p95", data: data.soak.map((w) => w.ttftP95) }, { label: "E2E p95", data: data.soak.map((w) => w.e2eP95) } ] } });
</script>
</body></html>
`;
}

/**
 * infermesh's Grafana dashboard, built with Grafana's own Foundation SDK rather than
 * written as JSON by hand: the seeds' SLOs (TTFT per model with exemplars that open the
 * request's trace, errors, availability), where requests go (model, profile, class,
 * API), admission, and the fleet's KV pressure. `npm run dashboards` writes
 * deploy/grafana/infermesh.json; a test fails when the file and this builder drift, and
 * another checks every metric it queries against a live mesh.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type * as cog from "@grafana/grafana-foundation-sdk/cog";
import {
  DashboardBuilder,
  DatasourceVariableBuilder,
  type Panel,
  QueryVariableBuilder,
  RowBuilder,
  VariableRefresh,
} from "@grafana/grafana-foundation-sdk/dashboard";
import { DataqueryBuilder } from "@grafana/grafana-foundation-sdk/prometheus";
import { PanelBuilder as StatPanel } from "@grafana/grafana-foundation-sdk/stat";
import { PanelBuilder as TimeseriesPanel } from "@grafana/grafana-foundation-sdk/timeseries";

const datasource = { type: "prometheus", uid: "${datasource}" };
const model = 'model=~"$model"';
/** The mesh's own failures: a caller's errors and callers that left do not count. */
const meshErrors = 'outcome=~"upstream_error|timeout|shed"';

const query = (expr: string, legend: string, exemplar = false) =>
  new DataqueryBuilder().expr(expr).legendFormat(legend).exemplar(exemplar).range();

const series = (title: string, unit: string, targets: DataqueryBuilder[], description = "") => {
  const panel = new TimeseriesPanel().title(title).unit(unit).datasource(datasource).height(8).span(12);
  if (description) panel.description(description);
  for (const target of targets) panel.withTarget(target);
  return panel;
};

const quantile = (q: number, metric: string, by: string, filter = model) =>
  `histogram_quantile(${q}, sum by (le, ${by}) (rate(${metric}_bucket{${filter}}[$__rate_interval])))`;

export function infermeshDashboard() {
  const panels: cog.Builder<Panel>[] = [];
  const dashboard = new DashboardBuilder("infermesh")
    .uid("infermesh-overview")
    .tags(["infermesh", "llm"])
    .refresh("30s")
    .time({ from: "now-1h", to: "now" })
    .timezone("browser")
    .withVariable(new DatasourceVariableBuilder("datasource").label("Prometheus").type("prometheus"))
    .withVariable(
      new QueryVariableBuilder("model")
        .label("Model")
        .datasource(datasource)
        .query("label_values(infermesh_gateway_requests_total, model)")
        .refresh(VariableRefresh.OnTimeRangeChanged)
        .multi(true)
        .includeAll(true)
        .allValue(".*"),
    );

  dashboard.withRow(new RowBuilder("SLOs"));
  panels.push(
    series(
      "Time to first token, p95 by model (SLO: 2 s for 20b, 5 s for 120b)",
      "s",
      [query(quantile(0.95, "infermesh_gateway_time_to_first_token_seconds", "model"), "{{model}}", true)],
      "Exemplars (dots) are sampled requests: click one to open its trace.",
    ),
    series("End-to-end latency, p50 and p95 by model", "s", [
      query(quantile(0.5, "infermesh_gateway_e2e_request_latency_seconds", "model", `${model},outcome="ok"`), "p50 {{model}}", true),
      query(quantile(0.95, "infermesh_gateway_e2e_request_latency_seconds", "model", `${model},outcome="ok"`), "p95 {{model}}", true),
    ]),
  );
  const stat = (title: string, unit: string, expr: string) =>
    new StatPanel().title(title).unit(unit).datasource(datasource).height(4).span(6).withTarget(query(expr, title));
  panels.push(
    stat(
      "Mesh errors (SLO: < 0.1 %)",
      "percentunit",
      `sum(rate(infermesh_gateway_requests_total{${meshErrors}}[$__range])) / sum(rate(infermesh_gateway_requests_total[$__range]))`,
    ),
    stat(
      "Availability (SLO: > 99.9 %)",
      "percentunit",
      `1 - sum(rate(infermesh_gateway_requests_total{${meshErrors}}[$__range])) / sum(rate(infermesh_gateway_requests_total[$__range]))`,
    ),
    stat("Requests/s", "reqps", "sum(rate(infermesh_gateway_requests_total[$__rate_interval]))"),
    stat("Generated tokens/s", "short", "sum(rate(vllm:generation_tokens_total[$__rate_interval]))"),
  );
  for (const panel of panels.splice(0)) dashboard.withPanel(panel);

  dashboard.withRow(new RowBuilder("Requests"));
  for (const panel of [
    series("Requests by outcome", "reqps", [
      query(`sum by (outcome) (rate(infermesh_gateway_requests_total{${model}}[$__rate_interval]))`, "{{outcome}}"),
    ]),
    series("Requests by API, model and profile", "reqps", [
      query(
        `sum by (api, model, profile) (rate(infermesh_gateway_requests_total{${model}}[$__rate_interval]))`,
        "{{api}} {{model}} {{profile}}",
      ),
    ]),
    series("Inter-token latency, p50 and p95 by model", "s", [
      query(quantile(0.5, "infermesh_gateway_inter_token_latency_seconds", "model"), "p50 {{model}}", true),
      query(quantile(0.95, "infermesh_gateway_inter_token_latency_seconds", "model"), "p95 {{model}}", true),
    ]),
    series("Queue time to admission, p95 by priority class", "s", [
      query(quantile(0.95, "infermesh_gateway_queue_seconds", "priority_class"), "{{priority_class}}", true),
    ]),
    series("Prompt and generated tokens/s by model", "short", [
      query(`sum by (model) (rate(infermesh_gateway_prompt_tokens_sum{${model}}[$__rate_interval]))`, "prompt {{model}}"),
      query(`sum by (model) (rate(infermesh_gateway_generation_tokens_sum{${model}}[$__rate_interval]))`, "generated {{model}}"),
    ]),
    series("Retries, and answers from the response cache", "reqps", [
      query("sum(rate(infermesh_gateway_retries_total[$__rate_interval]))", "retries"),
      query('sum(rate(infermesh_gateway_response_cache_requests_total{outcome="hit"}[$__rate_interval]))', "cache hits"),
    ]),
  ]) {
    dashboard.withPanel(panel);
  }

  dashboard.withRow(new RowBuilder("Admission"));
  for (const panel of [
    series("Slots in use and requests queued, by priority class", "short", [
      query("sum by (priority_class) (infermesh_admission_in_flight)", "in flight {{priority_class}}"),
      query("sum by (priority_class) (infermesh_admission_queued)", "queued {{priority_class}}"),
    ]),
    series("Admission decisions", "reqps", [
      query("sum by (outcome) (rate(infermesh_admission_outcomes_total[$__rate_interval]))", "{{outcome}}"),
    ]),
  ]) {
    dashboard.withPanel(panel);
  }

  dashboard.withRow(new RowBuilder("Fleet and KV pressure"));
  for (const panel of [
    series(
      "KV cache use per device (warn 85 %, critical 95 %)",
      "percentunit",
      [query("infermesh_memory_kv_used_tokens / infermesh_memory_kv_total_tokens", "{{worker_id}} {{device}}")],
      "Above 85 % memory-guard evicts idle sessions and batch work waits; above 95 % the router sends the device no new work.",
    ),
    series("Requests running and waiting per worker", "short", [
      query("sum by (worker_id) (vllm:num_requests_running)", "running {{worker_id}}"),
      query("sum by (worker_id) (vllm:num_requests_waiting)", "waiting {{worker_id}}"),
    ]),
    series("Workers the router sees, and sessions evicted", "short", [
      query("sum(infermesh_router_workers)", "workers"),
      query("sum(rate(infermesh_memory_session_evictions_total[$__rate_interval]))", "evictions/s"),
    ]),
    series("Worker time to first token, p95 by model (vLLM's metric)", "s", [
      query(
        'histogram_quantile(0.95, sum by (le, model_name) (rate(vllm:time_to_first_token_seconds_bucket{model_name=~"$model"}[$__rate_interval])))',
        "{{model_name}}",
        true,
      ),
    ]),
  ]) {
    dashboard.withPanel(panel);
  }
  return dashboard.build();
}

/** Every PromQL query of a dashboard's panels. */
export const dashboardQueries = (dashboard: { panels?: { targets?: { expr?: string }[] }[] }) =>
  (dashboard.panels ?? []).flatMap((panel) => (panel.targets ?? []).flatMap((target) => (target.expr ? [target.expr] : [])));

/** The dashboard as the file deploy/grafana/infermesh.json holds it. */
export const dashboardJson = () => `${JSON.stringify(infermeshDashboard(), null, 2)}\n`;

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = join(fileURLToPath(new URL(".", import.meta.url)), "../../../deploy/grafana/infermesh.json");
  writeFileSync(file, dashboardJson());
  process.stdout.write(`wrote ${file}\n`);
}

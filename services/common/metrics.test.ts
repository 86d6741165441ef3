import assert from "node:assert/strict";
import test from "node:test";
import { Counter, Histogram } from "prom-client";
import { createMetricsRegistry, scrape, toPrometheusText } from "./metrics.js";

test("a plain scrape gets Prometheus's text format; an OpenMetrics scrape gets the exemplars", async () => {
  const registry = createMetricsRegistry("test");
  const latency = new Histogram({
    name: "x_seconds",
    help: "x",
    labelNames: ["model"],
    buckets: [1],
    enableExemplars: true,
    registers: [registry],
  });
  const requests = new Counter({ name: "x_requests_total", help: "requests", labelNames: ["model"], registers: [registry] });
  latency.observe({ labels: { model: 'a "b" {c}' }, value: 0.5, exemplarLabels: { trace_id: "abc" } as never });
  requests.inc({ model: "m" });

  const open = await scrape(registry, "application/openmetrics-text;version=1.0.0,text/plain;q=0.5");
  assert.match(open.contentType, /^application\/openmetrics-text/);
  assert.match(open.text, /x_seconds_bucket\{le="1",service="test",model="a \\"b\\" \{c\}"\} 1 # \{trace_id="abc"\} 0\.5 \d/);
  assert.match(open.text, /# EOF\n$/);

  const plain = await scrape(registry, "text/plain");
  assert.match(plain.contentType, /^text\/plain; version=0\.0\.4/);
  assert.doesNotMatch(plain.text, /trace_id|# EOF/);
  assert.match(plain.text, /^x_seconds_bucket\{le="1",service="test",model="a \\"b\\" \{c\}"\} 1$/m);
  assert.match(
    plain.text,
    /^# HELP x_requests_total requests\n# TYPE x_requests_total counter\nx_requests_total\{model="m",service="test"\} 1$/m,
  );
});

test("toPrometheusText keeps a label value that looks like an exemplar", () => {
  const text = toPrometheusText('# HELP a help\n# TYPE a gauge\na{l="x # {y} 1 2"} 3\n# EOF\n');
  assert.equal(text, '# HELP a help\n# TYPE a gauge\na{l="x # {y} 1 2"} 3\n');
});

/**
 * A strict parser of the Prometheus text exposition format 0.0.4 (what vLLM, SGLang,
 * trtllm-serve and llama-server emit). No maintained npm package parses it (prom-client
 * only writes it), and the subset engines emit is small: samples, HELP/TYPE comments,
 * escaped label values, NaN/±Inf and optional timestamps. A malformed line fails the
 * whole scrape rather than yielding half-read figures.
 */

/** One sample line: `name{labels} value`. */
export interface PrometheusSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A parsed scrape: its samples in order, and the declared type of each metric family. */
export interface PrometheusScrape {
  readonly samples: readonly PrometheusSample[];
  readonly types: ReadonlyMap<string, string>;
}

/** A line that is not valid exposition format; `line` is 1-based. */
export class PrometheusParseError extends Error {
  override readonly name = "PrometheusParseError";
  constructor(
    readonly line: number,
    reason: string,
  ) {
    super(`metrics line ${line}: ${reason}`);
  }
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const metricTypes = new Set(["counter", "gauge", "histogram", "summary", "untyped", "info", "stateset", "gaugehistogram", "unknown"]);

export function parsePrometheusText(text: string): PrometheusScrape {
  const samples: PrometheusSample[] = [];
  const types = new Map<string, string>();
  const lines = text.split("\n");
  for (let index = 0; index < lines.length; index += 1) {
    const line = lines[index]!.replace(/\r$/, "");
    const lineNumber = index + 1;
    if (line.trim() === "") continue;
    if (line.startsWith("#")) {
      const comment = /^#\s*(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line);
      if (comment?.[1] === "TYPE") {
        const type = (comment[3] ?? "").trim();
        if (!metricName.test(comment[2]!) || !metricTypes.has(type)) {
          throw new PrometheusParseError(lineNumber, `bad TYPE comment "${line}"`);
        }
        types.set(comment[2]!, type);
      }
      continue;
    }
    samples.push(parseSample(line, lineNumber));
  }
  return { samples, types };
}

function parseSample(line: string, lineNumber: number): PrometheusSample {
  const name = metricName.exec(line)?.[0];
  if (name === undefined) throw new PrometheusParseError(lineNumber, `expected a metric name in "${line}"`);
  let position = name.length;
  const labels: Record<string, string> = {};
  if (line[position] === "{") {
    position = parseLabels(line, position + 1, labels, lineNumber);
  }
  const rest = line.slice(position);
  const fields = /^[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$/.exec(rest);
  if (!fields) throw new PrometheusParseError(lineNumber, `expected " value [timestamp]" after ${name}`);
  const value = parseValue(fields[1]!);
  if (value === undefined) throw new PrometheusParseError(lineNumber, `"${fields[1]}" is not a number`);
  return { name, labels, value };
}

/** Reads `a="x",b="y"}` starting after the `{`; returns the index after the `}`. */
function parseLabels(line: string, start: number, labels: Record<string, string>, lineNumber: number): number {
  let position = start;
  for (;;) {
    while (line[position] === " ") position += 1;
    if (line[position] === "}") return position + 1;
    const name = labelName.exec(line.slice(position))?.[0];
    if (name === undefined) throw new PrometheusParseError(lineNumber, `expected a label name at column ${position + 1}`);
    position += name.length;
    if (line[position] !== "=" || line[position + 1] !== '"') {
      throw new PrometheusParseError(lineNumber, `expected ="…" after label ${name}`);
    }
    position += 2;
    let value = "";
    for (;;) {
      const char = line[position];
      if (char === undefined) throw new PrometheusParseError(lineNumber, `unterminated value of label ${name}`);
      position += 1;
      if (char === '"') break;
      if (char === "\\") {
        const escaped = line[position];
        position += 1;
        if (escaped === "n") value += "\n";
        else if (escaped === "\\" || escaped === '"') value += escaped;
        else throw new PrometheusParseError(lineNumber, `bad escape \\${escaped ?? ""} in label ${name}`);
        continue;
      }
      value += char;
    }
    if (name in labels) throw new PrometheusParseError(lineNumber, `label ${name} appears twice`);
    labels[name] = value;
    while (line[position] === " ") position += 1;
    if (line[position] === ",") {
      position += 1;
      continue;
    }
    if (line[position] === "}") return position + 1;
    throw new PrometheusParseError(lineNumber, `expected , or } after label ${name}`);
  }
}

function parseValue(text: string): number | undefined {
  if (text === "NaN") return Number.NaN;
  if (text === "+Inf" || text === "Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined;
  return Number(text);
}

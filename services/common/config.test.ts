import test from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { boolean, ConfigError, integer, loadConfig, port } from "./config.js";

const schema = z.object({
  maxConcurrency: integer(1, 64).default(4),
  port: port().default(8080),
  verbose: boolean().default(false),
  modelName: z.string().default("tiny"),
});

const dir = mkdtempSync(join(tmpdir(), "infermesh-config-test-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const load = (argv: string[] = [], env: Record<string, string> = {}) => loadConfig(schema, { argv, env }, "TEST_");

/** The ConfigError message thrown by `fn`. */
function configErrorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.name, "ConfigError");
    return error.message;
  }
  assert.fail("expected a ConfigError");
}

test("no sources gives the schema defaults", () => {
  assert.deepEqual({ ...load() }, { maxConcurrency: 4, port: 8080, verbose: false, modelName: "tiny" });
});

test("a YAML file (--config) overrides defaults", () => {
  const path = file("a.yaml", "maxConcurrency: 8\nmodelName: big\n");
  assert.deepEqual({ ...load(["--config", path]) }, { maxConcurrency: 8, port: 8080, verbose: false, modelName: "big" });
});

test("a JSON file named by <PREFIX>CONFIG is read", () => {
  const path = file("a.json", JSON.stringify({ port: 9000, verbose: true }));
  const config = load([], { TEST_CONFIG: path });
  assert.equal(config.port, 9000);
  assert.equal(config.verbose, true);
});

test("--config wins over <PREFIX>CONFIG", () => {
  const fromFlag = file("flag.yaml", "modelName: from-flag\n");
  const fromEnv = file("env.yaml", "modelName: from-env\n");
  assert.equal(load(["--config", fromFlag], { TEST_CONFIG: fromEnv }).modelName, "from-flag");
});

test("precedence: file < environment < flags", () => {
  const path = file("precedence.yaml", "maxConcurrency: 2\nport: 1000\nmodelName: file\n");
  const config = load(["--config", path, "--model-name", "flag"], {
    TEST_PORT: "2000",
    TEST_MODEL_NAME: "env",
  });
  assert.equal(config.maxConcurrency, 2); // file only
  assert.equal(config.port, 2000); // env beats file
  assert.equal(config.modelName, "flag"); // flag beats env and file
});

test("env var is prefix + SCREAMING_SNAKE; flag is kebab-case", () => {
  assert.equal(load([], { TEST_MAX_CONCURRENCY: "7" }).maxConcurrency, 7);
  assert.equal(load(["--max-concurrency", "9"]).maxConcurrency, 9);
  assert.equal(load(["--max-concurrency=10"]).maxConcurrency, 10);
  // Other spellings are not read.
  assert.equal(load([], { TEST_MAXCONCURRENCY: "7", TEST_maxConcurrency: "7", MAX_CONCURRENCY: "7" }).maxConcurrency, 4);
});

test("an empty environment variable counts as unset", () => {
  assert.equal(load([], { TEST_PORT: "" }).port, 8080);
});

test("booleans are spelled true/false/1/0 in env and flags", () => {
  assert.equal(load([], { TEST_VERBOSE: "1" }).verbose, true);
  assert.equal(load(["--verbose", "true"]).verbose, true);
  assert.equal(load(["--verbose", "0"], { TEST_VERBOSE: "true" }).verbose, false);
  assert.match(
    configErrorOf(() => load(["--verbose", "yes"])),
    /setting "verbose" \(flag --verbose\)/,
  );
});

test("a bad value's error names the setting and where it came from", () => {
  assert.match(
    configErrorOf(() => load(["--max-concurrency", "0"])),
    /setting "maxConcurrency" \(flag --max-concurrency\)/,
  );
  assert.match(
    configErrorOf(() => load([], { TEST_MAX_CONCURRENCY: "100" })),
    /setting "maxConcurrency" \(environment variable TEST_MAX_CONCURRENCY\)/,
  );
  const path = file("bad.yaml", "port: 70000\n");
  assert.match(
    configErrorOf(() => load(["--config", path])),
    new RegExp(`setting "port" \\(file ${path}\\)`),
  );
  assert.match(
    configErrorOf(() => load(["--port", "eighty"])),
    /setting "port" \(flag --port\)/,
  );
});

test("every bad setting is named in one error", () => {
  const message = configErrorOf(() => load(["--port=-1"], { TEST_MAX_CONCURRENCY: "1.5" }));
  assert.match(message, /setting "port" \(flag --port\)/);
  assert.match(message, /setting "maxConcurrency" \(environment variable TEST_MAX_CONCURRENCY\)/);
});

test("an unknown flag is rejected, naming it", () => {
  assert.match(
    configErrorOf(() => load(["--max-concurency", "3"])),
    /invalid command line: .*--max-concurency/,
  );
  assert.match(
    configErrorOf(() => load(["stray"])),
    /invalid command line/,
  );
});

test("an unknown key in the file is rejected, naming file and key", () => {
  const path = file("unknown.yaml", "maxConcurrency: 3\nmaxConcurency: 3\n");
  const message = configErrorOf(() => load(["--config", path]));
  assert.ok(message.includes(path));
  assert.match(message, /unknown setting "maxConcurency"/);
});

test("a missing, malformed or non-mapping file is a ConfigError", () => {
  assert.match(
    configErrorOf(() => load(["--config", join(dir, "absent.yaml")])),
    /cannot read config file .*ENOENT/,
  );
  assert.match(
    configErrorOf(() => load(["--config", file("broken.json", "{ port: ")])),
    /not valid JSON/,
  );
  assert.match(
    configErrorOf(() => load(["--config", file("list.yaml", "- 1\n- 2\n")])),
    /must hold a mapping/,
  );
});

test("the result is frozen", () => {
  const config = load();
  assert.ok(Object.isFrozen(config));
  assert.throws(() => {
    (config as { port: number }).port = 1;
  }, TypeError);
});

test("an integer setting with no digits is rejected, not read as 0", () => {
  assert.match(
    configErrorOf(() => load(["--port="])),
    /setting "port" \(flag --port\)/,
  );
  assert.match(
    configErrorOf(() => load(["--config", file("empty-port.yaml", "port:\n")])),
    /setting "port"/,
  );
  assert.match(
    configErrorOf(() => load(["--max-concurrency", "1e1"])),
    /setting "maxConcurrency"/,
  );
});

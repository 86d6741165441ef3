import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

/** Where a process's configuration comes from; tests pass their own. */
export interface ConfigSources {
  /** Command-line arguments after the script (process.argv.slice(2)). */
  readonly argv: readonly string[];
  /** Environment variables. */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** A configuration that failed validation; the message names every bad setting. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Integer setting; accepts numbers from files and (only) decimal digits from env and flags. */
export const integer = (min: number, max: number) =>
  z
    .union(
      [
        z.number(),
        z
          .string()
          .regex(/^-?\d+$/, "expected an integer")
          .transform(Number),
      ],
      { error: "expected an integer" },
    )
    .pipe(z.number().int().min(min).max(max));

/** Number setting; accepts numbers from files and decimals such as 0.85 from env and flags. */
export const decimal = (min: number, max: number) =>
  z
    .union(
      [
        z.number(),
        z
          .string()
          .regex(/^-?\d+(\.\d+)?$/, "expected a number")
          .transform(Number),
      ],
      { error: "expected a number" },
    )
    .pipe(z.number().min(min).max(max));

/** TCP port; 0 asks the OS for a free one. */
export const port = () => integer(0, 65535);

/** Boolean setting; env and flags spell it true/false/1/0. */
export const boolean = () =>
  z.union([z.boolean(), z.enum(["true", "false", "1", "0"]).transform((text) => text === "true" || text === "1")]);

/** Comma-separated host:port addresses, at least one: "10.0.0.1:50052,10.0.0.2:50052" (spaces allowed). */
export const addressList = () =>
  z
    .string()
    .transform((text) =>
      text
        .split(",")
        .map((address) => address.trim())
        .filter((address) => address !== ""),
    )
    .refine((addresses) => addresses.length > 0, "at least one host:port");

/** Comma-separated host:port addresses, or none (empty): "" turns the peer off. */
export const optionalAddressList = () =>
  z.string().transform((text) =>
    text
      .split(",")
      .map((address) => address.trim())
      .filter((address) => address !== ""),
  );

/** A setting's flag name: portOffset is --port-offset. */
export const kebab = (key: string) => key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
const screamingSnake = (key: string) => key.replace(/[A-Z]/g, (letter) => `_${letter}`).toUpperCase();

/**
 * Parses one process's configuration: schema defaults, then a YAML or JSON file
 * (`--config FILE` or `<PREFIX>CONFIG`), then `<PREFIX><SETTING>` environment
 * variables, then `--setting value` flags; later sources win. Only top-level settings
 * can come from the environment or flags. The result is frozen.
 */
export function loadConfig<Shape extends z.ZodRawShape>(
  schema: z.ZodObject<Shape>,
  sources: ConfigSources,
  envPrefix: string,
): Readonly<z.infer<z.ZodObject<Shape>>> {
  const keys = Object.keys(schema.shape);
  const flagOptions = Object.fromEntries(keys.map((key) => [kebab(key), { type: "string" as const }]));
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({
      args: [...sources.argv],
      options: { ...flagOptions, config: { type: "string" } },
      strict: true,
      allowPositionals: false,
    }).values as Record<string, string | boolean | undefined>;
  } catch (error) {
    throw new ConfigError(`invalid command line: ${(error as Error).message}`);
  }

  const origin = new Map<string, string>();
  const merged: Record<string, unknown> = {};
  const configFile = (flags.config as string | undefined) ?? sources.env[`${envPrefix}CONFIG`];
  if (configFile !== undefined && configFile !== "") {
    const fromFile = readConfigFile(configFile);
    for (const [key, value] of Object.entries(fromFile)) {
      if (!keys.includes(key)) throw new ConfigError(`${configFile}: unknown setting "${key}"`);
      merged[key] = value;
      origin.set(key, `file ${configFile}`);
    }
  }
  for (const key of keys) {
    const variable = `${envPrefix}${screamingSnake(key)}`;
    const fromEnv = sources.env[variable];
    if (fromEnv !== undefined && fromEnv !== "") {
      merged[key] = fromEnv;
      origin.set(key, `environment variable ${variable}`);
    }
    const fromFlag = flags[kebab(key)];
    if (typeof fromFlag === "string") {
      merged[key] = fromFlag;
      origin.set(key, `flag --${kebab(key)}`);
    }
  }

  const parsed = schema.safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? "");
      const where = origin.get(key) ?? "default";
      return `setting "${issue.path.join(".")}" (${where}): ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
  return Object.freeze(parsed.data);
}

/** The config file `loadConfig` reads for these sources (`--config FILE` or `<PREFIX>CONFIG`), if any. */
export function configFileOf(sources: ConfigSources, envPrefix: string): string | undefined {
  const { values } = parseArgs({ args: [...sources.argv], options: { config: { type: "string" } }, strict: false, allowPositionals: true });
  const file = (typeof values.config === "string" ? values.config : undefined) ?? sources.env[`${envPrefix}CONFIG`];
  return file === undefined || file === "" ? undefined : file;
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`);
  }
  let value: unknown;
  try {
    value = path.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    // The parsers quote the file around the error (YAML a code frame, JSON a snippet): it may hold a key, so only where.
    const where = (error as Error).message.split("\n")[0]!.replace(/"[^"]*"/g, '"…"');
    throw new ConfigError(`config file ${path} is not valid ${path.endsWith(".json") ? "JSON" : "YAML"}: ${where}`);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw new ConfigError(`config file ${path} must hold a mapping of settings`);
  return value as Record<string, unknown>;
}

import { prettyFactory } from "pino-pretty";

const colours = ["\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[32m", "\x1b[34m", "\x1b[91m", "\x1b[96m"];
const reset = "\x1b[0m";

/**
 * Formats a child's output line for the terminal: `[router] 12:00:01 INFO …`. JSON log
 * lines go through pino-pretty; anything else is passed through as is.
 */
export function lineFormatter(format: "pretty" | "json", colour: boolean): (child: string, line: string) => string {
  const pretty = prettyFactory({ colorize: colour, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname,service", singleLine: true });
  const colourOf = new Map<string, string>();
  return (child, line) => {
    if (colour && !colourOf.has(child)) colourOf.set(child, colours[colourOf.size % colours.length]!);
    const prefix = colour ? `${colourOf.get(child)}[${child}]${reset}` : `[${child}]`;
    if (format === "json" || !line.startsWith("{")) return `${prefix} ${line}`;
    return `${prefix} ${pretty(line).trimEnd()}`;
  };
}

import { loadProgressField } from "../worker/load-progress.js";

/** Where the launcher writes; tests pass their own. */
export interface OutputStreams {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

/** The model loading progress a child's JSON log line carries, as a fraction; undefined for any other line. */
export function loadProgressOf(line: string): number | undefined {
  if (!line.startsWith("{") || !line.includes(`"${loadProgressField}"`)) return undefined;
  try {
    const fraction = (JSON.parse(line) as Record<string, unknown>)[loadProgressField];
    return typeof fraction === "number" && Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : undefined;
  } catch {
    return undefined;
  }
}

const clearLine = "\r\x1b[2K";
const barWidth = 30;

/**
 * The launcher's output: its own lines and its children's, formatted. With `progressBar`
 * (a terminal, pretty logs) the workers' model loading lines become one bar on the last
 * line, which other lines scroll past and which ends with its own line when every
 * worker has loaded; without it they are lines like any other.
 */
export class LauncherOutput {
  /** Each loading worker's fraction, while the bar shows. */
  private readonly loading = new Map<string, number>();

  constructor(
    private readonly streams: OutputStreams,
    private readonly format: (child: string, line: string) => string,
    private readonly progressBar: boolean,
  ) {}

  /** A line of the launcher's own. */
  say(message: string): void {
    this.write("stdout", this.format("infermesh", message));
  }

  /** A line a child wrote. */
  childLine(child: string, line: string, stream: "stdout" | "stderr"): void {
    const fraction = this.progressBar ? loadProgressOf(line) : undefined;
    if (fraction === undefined) {
      this.write(stream, this.format(child, line));
      return;
    }
    this.loading.set(child, fraction);
    if ([...this.loading.values()].every((loaded) => loaded >= 1)) {
      this.streams.stdout(`${clearLine}${this.bar()}\n`);
      this.loading.clear();
      return;
    }
    this.streams.stdout(`${clearLine}${this.bar()}`);
  }

  private write(stream: "stdout" | "stderr", text: string): void {
    if (this.loading.size === 0) {
      this.streams[stream](`${text}\n`);
      return;
    }
    this.streams.stdout(clearLine);
    this.streams[stream](`${text}\n`);
    this.streams.stdout(this.bar());
  }

  private bar(): string {
    const fractions = [...this.loading.values()];
    const mean = fractions.reduce((sum, fraction) => sum + fraction, 0) / fractions.length;
    const filled = Math.round(mean * barWidth);
    const percent = (fraction: number) => `${Math.floor(fraction * 100)} %`;
    const each =
      this.loading.size > 1 ? ` (${[...this.loading].map(([child, fraction]) => `${child} ${percent(fraction)}`).join(", ")})` : "";
    return this.format("infermesh", `loading model ${"█".repeat(filled)}${"░".repeat(barWidth - filled)} ${percent(mean)}${each}`);
  }
}

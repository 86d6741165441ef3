/** Tokens per second over a sliding window. */
export class ThroughputMeter {
  private readonly samples: { atMs: number; tokens: number }[] = [];

  constructor(private readonly windowMs: number) {}

  add(tokens: number): void {
    this.samples.push({ atMs: performance.now(), tokens });
    this.trim();
  }

  perSecond(): number {
    this.trim();
    let tokens = 0;
    for (const sample of this.samples) tokens += sample.tokens;
    return (tokens * 1000) / this.windowMs;
  }

  private trim(): void {
    const oldest = performance.now() - this.windowMs;
    while (this.samples.length > 0 && this.samples[0]!.atMs < oldest) this.samples.shift();
  }
}

import type { SimFigures } from "./sim-options.js";

/** What one scheduler step computes. */
export interface StepWork {
  /** Sequences producing their next token. */
  readonly decodingSequences: number;
  /** Context tokens those sequences hold (their attention reads this KV). */
  readonly decodingKvTokens: number;
  /** Prompt tokens computed in this step. */
  readonly prefillTokens: number;
}

/**
 * Simulated GPU time of one step, in milliseconds: a forward pass reads the dense
 * weights and the experts its batch routes to, computes each decoding sequence and
 * reads its KV, and computes the prompt chunks at the prefill rate.
 */
export function stepDurationMs(figures: SimFigures, work: StepWork): number {
  const decoding = work.decodingSequences;
  const expertsTouched = decoding === 0 ? 0 : 1 - (1 - figures.decodeExpertFraction) ** decoding;
  return (
    figures.decodeFixedMs +
    figures.decodeExpertReadMs * expertsTouched +
    figures.decodeMsPerSequence * decoding +
    (figures.decodeMsPer1kKvTokens * work.decodingKvTokens) / 1000 +
    (work.prefillTokens * 1000) / figures.prefillTokensPerSecond
  );
}

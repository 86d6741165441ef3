/**
 * Bounds on what one request may ask for, shared by the gateway's validation (HTTP and
 * gRPC alike) and the workers' own checks, so both refuse the same thing.
 */

/** Most messages one chat may carry: past it, rendering the chat template alone would hold a worker for seconds. */
export const maxChatMessages = 2_048;

/** Most inputs one embeddings request may carry (OpenAI's limit). */
export const maxEmbeddingInputs = 2_048;

/** Most tokens one embeddings request may carry in all its inputs (OpenAI's limit). */
export const maxEmbeddingTokens = 300_000;

/** Most choices (n) one request may ask for. */
export const maxChoices = 16;

/** Most stop sequences (OpenAI's limit), and the longest one. */
export const maxStopSequences = 4;
export const maxStopChars = 1_024;

/** Most tools one request may offer. */
export const maxTools = 128;

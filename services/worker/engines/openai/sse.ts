import { createParser, type EventSourceMessage } from "eventsource-parser";

/**
 * The `data` of each server-sent event in `body`, in order, up to OpenAI's `[DONE]`
 * sentinel or the end of the body. Aborting the request that produced `body` makes the
 * pending read reject, which ends the iteration with that error.
 */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string, { done: boolean }> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const pending: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (event) => pending.push(event) });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      // An event cut off by the end of the body is dropped, as the SSE specification says.
      parser.feed(done ? decoder.decode() : decoder.decode(value, { stream: true }));
      while (pending.length > 0) {
        const event = pending.shift()!;
        if (event.data === "[DONE]") return { done: true };
        if (event.data === "") continue;
        yield event.data;
      }
      if (done) return { done: false };
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
}

import { LRUCache } from "lru-cache";
import { Status } from "nice-grpc";
import { Counter, Gauge, type Registry } from "prom-client";
import { type Clock, systemClock } from "../../services/common/clock.js";
import { ApiError } from "../errors.js";

/** A stored response: what retrieve returns, and what a later `previous_response_id` continues. */
export interface StoredResponse {
  readonly tenantId: string;
  /** The response object, as POST /v1/responses returned it. */
  readonly response: { readonly id: string; readonly previous_response_id: string | null; readonly output: readonly object[] };
  /** The request's own input items, with ids, as GET …/input_items lists them. */
  readonly inputItems: readonly object[];
}

interface Entry extends StoredResponse {
  readonly bytes: number;
}

export interface ResponsesStoreSettings {
  /** Bytes the store holds in all. */
  readonly maxBytes: number;
  /** Bytes one tenant's responses may hold: its own oldest go first, never another's. */
  readonly tenantMaxBytes: number;
  /** How long a response is kept; 0 keeps it until evicted. */
  readonly ttlMs: number;
}

/** Stored Responses, in this process (ResponsesStore) or shared by every gateway replica (SharedResponsesStore). */
export interface ResponsesStoring {
  put(stored: StoredResponse): void | Promise<void>;
  /** The tenant's response `id`, or undefined (unknown, expired, deleted, or another tenant's). */
  get(tenantId: string, id: string): StoredResponse | undefined | Promise<StoredResponse | undefined>;
  /** The tenant's stored item `id` (an input or output item of one of its responses), or undefined. */
  item(tenantId: string, id: string): object | undefined | Promise<object | undefined>;
  /** Deletes the tenant's response `id`; false when it has none by that id. */
  delete(tenantId: string, id: string): boolean | Promise<boolean>;
  /**
   * The conversation a response continues, oldest first: each earlier response's input
   * items, then its output. Fails with NOT_FOUND naming the first link that is gone.
   */
  conversation(tenantId: string, previousResponseId: string): object[] | Promise<object[]>;
}

/** What a stored response counts against the bounds: its JSON, as UTF-16 in memory, and a little for bookkeeping. */
export const storedBytes = (stored: StoredResponse) =>
  2 * (JSON.stringify(stored.response).length + JSON.stringify(stored.inputItems).length) + 256;

/** Most stored responses one conversation walks back through (`previous_response_id` links). */
export const maxConversationLinks = 1_000;

/**
 * Stored Responses (`store: true`, OpenAI's default), in memory, bounded in bytes in all
 * and per tenant, each kept for a set time. A tenant only ever sees its own: another
 * tenant's id is "not found", exactly as an unknown one.
 */
export class ResponsesStore implements ResponsesStoring {
  private readonly entries: LRUCache<string, Entry>;
  /** The response that holds each stored item (input or output), by item id. */
  private readonly items = new Map<string, string>();
  /** Each tenant's ids, oldest first, and the bytes they hold. */
  private readonly tenants = new Map<string, { ids: Set<string>; bytes: number }>();
  /** Responses dropped before a client deleted them, by reason; the shared store counts its own here too. */
  readonly evictions: Counter<"reason">;

  constructor(
    private readonly settings: ResponsesStoreSettings,
    registry: Registry,
    clock: Pick<Clock, "now"> = systemClock,
  ) {
    this.evictions = new Counter({
      name: "infermesh_gateway_responses_evicted_total",
      help: "Stored responses dropped before a client deleted them, by reason (expired, evicted: the store or the tenant's share was full)",
      labelNames: ["reason"] as const,
      registers: [registry],
    });
    this.entries = new LRUCache<string, Entry>({
      maxSize: settings.maxBytes,
      sizeCalculation: (entry) => entry.bytes,
      ttl: settings.ttlMs > 0 ? settings.ttlMs : undefined,
      perf: clock,
      ttlResolution: 0,
      // A response read by a later turn stays as long as a fresh one.
      updateAgeOnGet: true,
      dispose: (entry, id, reason) => {
        this.forget(entry.tenantId, id, entry.bytes);
        for (const item of itemsOf(entry)) if (this.items.get(item.id) === id) this.items.delete(item.id);
        if (reason === "expire") this.evictions.inc({ reason: "expired" });
        if (reason === "evict") this.evictions.inc({ reason: "evicted" });
      },
    });
    const entries = this.entries;
    new Gauge({
      name: "infermesh_gateway_responses_stored_bytes",
      help: "Bytes held by stored responses",
      registers: [registry],
      collect() {
        this.set(entries.calculatedSize);
      },
    });
  }

  put(stored: StoredResponse): void {
    const bytes = storedBytes(stored);
    if (bytes > this.settings.tenantMaxBytes || bytes > this.settings.maxBytes) return;
    // The tenant's own oldest make room for it first (deleting one updates `tenants`).
    for (const oldest of this.tenants.get(stored.tenantId)?.ids ?? []) {
      if ((this.tenants.get(stored.tenantId)?.bytes ?? 0) + bytes <= this.settings.tenantMaxBytes) break;
      this.entries.delete(oldest);
      this.evictions.inc({ reason: "evicted" });
    }
    this.entries.set(stored.response.id, { ...stored, bytes });
    for (const item of itemsOf(stored)) this.items.set(item.id, stored.response.id);
    const tenant = this.tenants.get(stored.tenantId) ?? { ids: new Set<string>(), bytes: 0 };
    this.tenants.set(stored.tenantId, tenant);
    tenant.ids.add(stored.response.id);
    tenant.bytes += bytes;
  }

  /** The tenant's response `id`, or undefined (unknown, expired, deleted, or another tenant's). */
  get(tenantId: string, id: string): StoredResponse | undefined {
    const entry = this.entries.peek(id);
    if (entry === undefined || entry.tenantId !== tenantId) return undefined;
    return this.entries.get(id);
  }

  /** The tenant's stored item `id` (an input or output item of one of its responses), or undefined. */
  item(tenantId: string, id: string): object | undefined {
    const responseId = this.items.get(id);
    const stored = responseId === undefined ? undefined : this.get(tenantId, responseId);
    return stored === undefined ? undefined : itemsOf(stored).find((item) => item.id === id);
  }

  /** Deletes the tenant's response `id`; false when it has none by that id. */
  delete(tenantId: string, id: string): boolean {
    if (this.get(tenantId, id) === undefined) return false;
    return this.entries.delete(id);
  }

  /**
   * The conversation a response continues, oldest first: each earlier response's input
   * items, then its output. Fails with NOT_FOUND naming the first link that is gone.
   */
  conversation(tenantId: string, previousResponseId: string): object[] {
    const links: StoredResponse[] = [];
    for (let id: string | null = previousResponseId; id !== null; id = nextLink(links, this.get(tenantId, id), id, previousResponseId));
    return conversationOf(links);
  }

  private forget(tenantId: string, id: string, bytes: number): void {
    const tenant = this.tenants.get(tenantId);
    if (!tenant?.ids.delete(id)) return;
    tenant.bytes -= bytes;
    if (tenant.ids.size === 0) this.tenants.delete(tenantId);
  }
}

/**
 * One step back through a conversation: `stored` is the response `id` (undefined when
 * gone), added to `links`; returns the id it continues. Fails with NOT_FOUND naming the
 * first link that is gone, or past `maxConversationLinks`.
 */
export function nextLink(
  links: StoredResponse[],
  stored: StoredResponse | undefined,
  id: string,
  previousResponseId: string,
): string | null {
  if (stored === undefined) {
    const which = id === previousResponseId ? "Previous response" : `Response ${id}, which the previous response continues,`;
    throw new ApiError(Status.NOT_FOUND, `${which} with id '${id}' not found.`, {
      param: "previous_response_id",
      code: "previous_response_not_found",
    });
  }
  links.push(stored);
  if (links.length > maxConversationLinks) {
    throw new ApiError(Status.INVALID_ARGUMENT, `a conversation continues at most ${maxConversationLinks} stored responses`, {
      param: "previous_response_id",
      code: "invalid_value",
    });
  }
  return stored.response.previous_response_id;
}

/** The items of a conversation's responses (newest first in `links`), oldest first: each one's input, then its output. */
export const conversationOf = (links: readonly StoredResponse[]) =>
  [...links].reverse().flatMap((link) => [...link.inputItems, ...link.response.output]);

const itemsOf = (stored: StoredResponse) => [...stored.inputItems, ...stored.response.output] as { readonly id: string }[];

/** The 404 of an id the caller's tenant has no response by. */
export const responseNotFound = (id: string) =>
  new ApiError(Status.NOT_FOUND, `Response with id '${id}' not found.`, { param: "response_id", code: "response_not_found" });

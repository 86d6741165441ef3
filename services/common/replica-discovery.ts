import { lookup } from "node:dns/promises";
import type { Client } from "nice-grpc";
import type { CompatServiceDefinition } from "nice-grpc/lib/service-definitions/index.js";
import { createGrpcClient } from "./grpc-client.js";
import type { Logger } from "./logger.js";
import type { MeshRole } from "./mesh-security/identity.js";
import type { MeshSecurity } from "./mesh-security/mesh-security.js";
import { ReplicaSet } from "./replica-set.js";

/**
 * An address entry that names every replica behind a DNS name: `dns:///host:port` is
 * each address `host` resolves to (a Kubernetes headless Service's ready pods), with
 * the port. Any other entry is one replica, as given.
 */
export const dnsPrefix = "dns:///";

/** How often dns:/// entries are resolved again: replicas that come and go are found within this. */
export const reresolveMs = 5_000;

type Resolve = (host: string) => Promise<string[]>;

const lookupAll: Resolve = async (host) => (await lookup(host, { all: true })).map((entry) => entry.address);

/** host:port with an IPv6 host in brackets. */
const joinHostPort = (host: string, port: string) => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`);

/**
 * The replicas `entries` name now, sorted and without repeats. An entry whose name does
 * not resolve contributes nothing (its replicas are not there yet); `previous` keeps
 * its last known replicas instead, so a DNS hiccup does not drop live streams.
 */
export async function resolveReplicas(
  entries: readonly string[],
  resolve: Resolve = lookupAll,
  previous: ReadonlyMap<string, readonly string[]> = new Map(),
): Promise<{ addresses: string[]; byEntry: Map<string, readonly string[]> }> {
  const byEntry = new Map<string, readonly string[]>();
  await Promise.all(
    entries.map(async (entry) => {
      if (!entry.startsWith(dnsPrefix)) {
        byEntry.set(entry, [entry]);
        return;
      }
      const target = entry.slice(dnsPrefix.length);
      const colon = target.lastIndexOf(":");
      const host = target.slice(0, colon).replace(/^\[|\]$/g, "");
      const port = target.slice(colon + 1);
      try {
        byEntry.set(
          entry,
          (await resolve(host)).map((address) => joinHostPort(address, port)),
        );
      } catch {
        byEntry.set(entry, previous.get(entry) ?? []);
      }
    }),
  );
  const addresses = [...new Set([...byEntry.values()].flat())].sort();
  return { addresses, byEntry };
}

/**
 * Calls `onChange` with the replicas `entries` name: at once for literal entries, then
 * whenever a dns:/// entry resolves to a different set (every `everyMs`), until
 * `signal` aborts.
 */
export function watchReplicas(
  entries: readonly string[],
  onChange: (addresses: readonly string[]) => void,
  options: { readonly signal: AbortSignal; readonly logger: Logger; readonly everyMs?: number; readonly resolve?: Resolve },
): void {
  let known: readonly string[] = [];
  let previous = new Map<string, readonly string[]>();
  const apply = (addresses: string[]) => {
    if (addresses.length === known.length && addresses.every((address, index) => address === known[index])) return;
    options.logger.info({ replicas: addresses }, "replicas changed");
    known = addresses;
    onChange(addresses);
  };
  const literal = entries.filter((entry) => !entry.startsWith(dnsPrefix));
  known = [...new Set(literal)].sort();
  onChange(known);
  if (literal.length === entries.length) return;
  const refresh = async () => {
    const { addresses, byEntry } = await resolveReplicas(entries, options.resolve, previous);
    previous = byEntry;
    if (!options.signal.aborted) apply(addresses);
  };
  void refresh();
  const timer = setInterval(() => void refresh(), options.everyMs ?? reresolveMs);
  timer.unref();
  options.signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}

/**
 * Runs `start(address, signal)` once for each replica `entries` name, for as long as it
 * is named: a replica that leaves DNS has its signal aborted, a new one is started.
 * For streams a process keeps to every replica (a worker's Connect to each router).
 */
export function forEachReplica(
  entries: readonly string[],
  start: (address: string, signal: AbortSignal) => void,
  options: { readonly signal: AbortSignal; readonly logger: Logger; readonly everyMs?: number; readonly resolve?: Resolve },
): void {
  connectReplicas(
    entries,
    (address) => {
      const controller = new AbortController();
      start(address, AbortSignal.any([options.signal, controller.signal]));
      return { clients: address, close: () => controller.abort() };
    },
    () => undefined,
    options,
  );
}

/** One replica's connection: what calls use, and how to close it once the replica is gone. */
export interface ReplicaConnection<Clients> {
  readonly clients: Clients;
  close(): void;
}

/**
 * Connections to the replicas `entries` name, kept in step with discovery: one per
 * address (made by `connect`, closed when the address goes), handed to `onChange` in
 * address order every time the set changes.
 */
export function connectReplicas<Clients>(
  entries: readonly string[],
  connect: (address: string) => ReplicaConnection<Clients>,
  onChange: (replicas: readonly Clients[]) => void,
  options: { readonly signal: AbortSignal; readonly logger: Logger; readonly everyMs?: number; readonly resolve?: Resolve },
): void {
  const connections = new Map<string, ReplicaConnection<Clients>>();
  watchReplicas(
    entries,
    (addresses) => {
      for (const [address, connection] of connections) {
        if (!addresses.includes(address)) {
          connection.close();
          connections.delete(address);
        }
      }
      for (const address of addresses) if (!connections.has(address)) connections.set(address, connect(address));
      onChange(addresses.map((address) => connections.get(address)!.clients));
    },
    options,
  );
  options.signal.addEventListener("abort", () => {
    for (const connection of connections.values()) connection.close();
  });
}

/**
 * A ReplicaSet of clients of `definition` on every replica `addresses` names (dns:///
 * entries found and re-resolved), each on its own mesh channel to `peer`.
 */
export function discoveredReplicas<Definition extends CompatServiceDefinition>(
  addresses: readonly string[],
  peer: MeshRole,
  definition: Definition,
  security: MeshSecurity,
  options: { readonly signal: AbortSignal; readonly logger: Logger; readonly timeoutMs: number },
): ReplicaSet<Client<Definition>> {
  const replicas = new ReplicaSet<Client<Definition>>();
  connectReplicas(
    addresses,
    (address) => {
      const channel = security.channel(address, peer);
      return { clients: createGrpcClient(definition, channel, options.timeoutMs), close: () => channel.close() };
    },
    (clients) => replicas.setMembers(clients),
    { signal: options.signal, logger: options.logger.child({ peer }) },
  );
  return replicas;
}

import { createGzip } from "node:zlib";
import type { FastifyInstance } from "fastify";
import { pack } from "tar-stream";
import { GetStatsResponse } from "../../../gen/infermesh/admission/v1/admission_service.js";
import type { GetDebugInfoResponse } from "../../../gen/infermesh/debug/v1/debug_service.js";
import { ListTrafficSplitsResponse, ListWorkersResponse } from "../../../gen/infermesh/router/v1/router_service.js";
import { type DebugSource, debugInfo } from "../../../services/common/debug-info.js";
import { toApiError } from "../../errors.js";
import type { MeshClients } from "../../mesh/clients.js";
import type { RecentRequests } from "../../observability/recent-requests.js";

type DebugClient = MeshClients["debug"]["admission"]["members"][number];

/** What the bundle gathers besides the mesh's own parts. */
export interface DebugBundleDeps {
  readonly clients: MeshClients;
  /** The gateway's own part: its config, registry and errors. */
  readonly gateway: DebugSource;
  readonly recent: RecentRequests;
}

/** One file of the archive. */
type Entry = readonly [name: string, content: string];

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

const readme = `infermesh debug bundle

versions.json              infermesh, Node.js and each service's versions; workers' engines, devices and node-llama-cpp
<service>/config.json      the effective configuration, secrets "[redacted]"
<service>/metrics.txt      a snapshot of its Prometheus metrics
<service>/errors.json      its most recent error log lines, with trace and request ids
router/fleet.json          the workers as the router sees them: load, KV, pressure, draining
router/splits.json         traffic splits in force
admission/stats.json       slots in use and queued, per class, and the memory gate
requests/slowest.json      the slowest of the gateway's last 1,000 requests, with trace ids
requests/failed.json       its most recent failed requests, with trace ids and errors
problems.json              parts that could not be gathered, and why

No prompt and no output is in it.
`;

/** A service's part as files under its directory. */
function partOf(directory: string, info: GetDebugInfoResponse): Entry[] {
  return [
    [`${directory}/config.json`, json(JSON.parse(info.configJson || "{}"))],
    [`${directory}/metrics.txt`, info.metricsText],
    [`${directory}/errors.json`, json(info.recentErrors)],
    [`${directory}/details.json`, json({ uptime_seconds: info.uptimeSeconds, ...JSON.parse(info.detailsJson || "{}") })],
  ];
}

/**
 * GET /debug/bundle (admin key): one .tar.gz a user attaches to a bug report — every
 * reachable service's versions, redacted config, metrics snapshot and recent errors,
 * the fleet and admission state, and the gateway's slowest and failed recent requests
 * with their trace ids. A part that cannot be gathered is named in problems.json; the
 * rest still comes.
 */
export function registerDebugBundle(app: FastifyInstance, deps: DebugBundleDeps): void {
  app.get("/debug/bundle", async (_request, reply) => {
    const { clients } = deps;
    const problems: { part: string; error: string }[] = [];
    const gather = async <T>(part: string, get: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await get();
      } catch (error) {
        problems.push({ part, error: toApiError(error).message });
        return undefined;
      }
    };
    // Every replica of each control-plane service: "admission", "admission-1", …
    const replicaParts = (role: string, replicas: readonly DebugClient[]) =>
      Promise.all(
        replicas.map(async (replica, index) => {
          const name = index === 0 ? role : `${role}-${index}`;
          return { name, info: await gather(name, () => replica.getDebugInfo({})) };
        }),
      );
    const [gateway, admission, router, memoryGuard, fleet, splits, stats] = await Promise.all([
      debugInfo(deps.gateway),
      replicaParts("admission", clients.debug.admission.members),
      replicaParts("router", clients.debug.router.members),
      replicaParts("memory-guard", clients.debug.memoryGuard.members),
      gather("router/fleet", () => clients.router.listWorkers({})),
      gather("router/splits", () => clients.router.listTrafficSplits({})),
      Promise.all(
        clients.admission.members.map(async (replica, index) => ({
          name: index === 0 ? "admission" : `admission-${index}`,
          stats: await gather(`${index === 0 ? "admission" : `admission-${index}`}/stats`, () => replica.getStats({})),
        })),
      ),
    ]);
    const workers = await Promise.all(
      (fleet?.workers ?? []).map(async (worker) => {
        const id = worker.registration?.workerId ?? "unknown";
        const info = await gather(`workers/${id}`, () => clients.workerDebug(worker.registration?.address ?? "").getDebugInfo({}));
        return { id, info };
      }),
    );
    const services = [
      { name: "gateway", info: gateway },
      ...admission,
      ...router,
      ...memoryGuard,
      ...workers.map(({ id, info }) => ({ name: `workers/${id}`, info })),
    ];
    const entries: Entry[] = [
      ["README.txt", readme],
      [
        "versions.json",
        json(
          Object.fromEntries(
            services.map(({ name, info }) => [
              name,
              info ? { infermesh: info.version, node: info.nodeVersion, ...JSON.parse(info.detailsJson || "{}") } : null,
            ]),
          ),
        ),
      ],
      ...services.flatMap(({ name, info }) => (info ? partOf(name, info) : [])),
      ...(fleet ? ([["router/fleet.json", json(ListWorkersResponse.toJSON(fleet))]] as Entry[]) : []),
      ...(splits ? ([["router/splits.json", json(ListTrafficSplitsResponse.toJSON(splits))]] as Entry[]) : []),
      ...stats.flatMap(({ name, stats }): Entry[] => (stats ? [[`${name}/stats.json`, json(GetStatsResponse.toJSON(stats))]] : [])),
      ["requests/slowest.json", json(deps.recent.slowest(20))],
      ["requests/failed.json", json(deps.recent.failed(50))],
      ["problems.json", json(problems)],
    ];
    const archive = pack();
    for (const [name, content] of entries) archive.entry({ name: `infermesh-debug/${name}`, mtime: new Date() }, content);
    archive.finalize();
    const stamp = new Date().toISOString().replaceAll(":", "-").replace(/\..*/, "");
    return reply
      .type("application/gzip")
      .header("content-disposition", `attachment; filename="infermesh-debug-${stamp}.tar.gz"`)
      .send(archive.pipe(createGzip()));
  });
}

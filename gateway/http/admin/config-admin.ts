import type { FastifyInstance } from "fastify";
import type { GetDebugInfoResponse } from "../../../gen/infermesh/debug/v1/debug_service.js";
import { type DebugSource, debugInfo } from "../../../services/common/debug-info.js";
import { toApiError } from "../../errors.js";
import type { MeshClients } from "../../mesh/clients.js";

/**
 * GET /admin/config (admin key): the configuration each process runs, secrets
 * "[redacted]", with its version (1 at start, one more per reload that changed it) and
 * when it was loaded: the gateway's, and every replica of admission, router and
 * memory-guard. A process that cannot be asked is listed under `problems`.
 */
export function registerConfigAdmin(app: FastifyInstance, deps: { clients: MeshClients; gateway: DebugSource }): void {
  app.get("/admin/config", async () => {
    const { debug } = deps.clients;
    const problems: { service: string; error: string }[] = [];
    const ask = async (service: string, get: () => Promise<GetDebugInfoResponse>) => {
      try {
        return configJson(service, await get());
      } catch (error) {
        problems.push({ service, error: toApiError(error).message });
        return undefined;
      }
    };
    const replicas = (role: string, members: readonly { getDebugInfo: (request: object) => Promise<GetDebugInfoResponse> }[]) =>
      members.map((member, index) => ask(index === 0 ? role : `${role}-${index}`, () => member.getDebugInfo({})));
    const answers = await Promise.all([
      ask("gateway", () => debugInfo(deps.gateway)),
      ...replicas("admission", debug.admission.members),
      ...replicas("router", debug.router.members),
      ...replicas("memory-guard", debug.memoryGuard.members),
    ]);
    return { object: "list", data: answers.filter((answer) => answer !== undefined), problems };
  });
}

function configJson(service: string, info: GetDebugInfoResponse) {
  return {
    object: "config",
    service,
    version: info.configVersion,
    loaded_at: new Date(info.configLoadedUnixMs).toISOString(),
    config: JSON.parse(info.configJson || "{}") as unknown,
  };
}

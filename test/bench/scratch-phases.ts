import { startTestMesh } from "../support/harness.js";
import { MeshClients } from "../../gateway/mesh/clients.js";
import { acquireSlot } from "../../gateway/mesh/admission-slot.js";
import { PriorityClass } from "../../gen/infermesh/common/v1/common.js";
const mesh = await startTestMesh({});
const clients = new MeshClients(`127.0.0.1:${mesh.ports.admission}`, `127.0.0.1:${mesh.ports.router}`, 5000);
const model = "infermesh-test";
const body = JSON.stringify({ model, messages: [{ role: "user", content: "Hi" }], max_tokens: 1, temperature: 0 });
const ops: Record<string, () => Promise<unknown>> = {
  healthz: async () => (await fetch(`${mesh.baseUrl}/healthz`)).text(),
  acquire: async () => (await acquireSlot(clients, { requestId: "x", tenantId: "t", priorityClass: PriorityClass.PRIORITY_CLASS_STANDARD, model, estimatedInputTokens: 1, maxOutputTokens: 1, queueTimeoutMs: undefined }, new AbortController().signal)).release(),
  pick: () => clients.router.pick({ requestId: "x", model, estimatedInputTokens: 1, excludeWorkerIds: [], sessionId: "" }),
  generate: async () => { for await (const _ of clients.worker(`127.0.0.1:${mesh.ports.workerBase}`).generate({ requestId: "x", model, messages: [{ role: "user", content: "Hi" }], prompt: undefined, sampling: { maxTokens: 1, temperature: 0, stop: [] } })) {} },
  gateway: async () => (await fetch(`${mesh.baseUrl}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body })).text(),
};
for (let round = 0; round < 3; round++) {
  const out: string[] = [];
  for (const [name, op] of Object.entries(ops)) {
    const v: number[] = [];
    for (let i = 0; i < 300; i++) { const a = performance.now(); await op(); v.push(performance.now() - a); }
    v.sort((x, y) => x - y); out.push(`${name} ${v[150]!.toFixed(2)}/${v[297]!.toFixed(2)}`);
  }
  console.log(out.join("  "));
}
await mesh.stop();

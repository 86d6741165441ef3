/**
 * Who may call what inside the mesh (ARCHITECTURE §9), in one table. Each service's
 * rules are typed by its generated definition, so a new RPC does not compile until it
 * has a rule here. Health and reflection are open to every mesh identity.
 */
import { AdmissionServiceDefinition } from "../../../gen/infermesh/admission/v1/admission_service.js";
import { DebugServiceDefinition } from "../../../gen/infermesh/debug/v1/debug_service.js";
import { MemoryGuardServiceDefinition } from "../../../gen/infermesh/memory/v1/memory_service.js";
import { RouterServiceDefinition } from "../../../gen/infermesh/router/v1/router_service.js";
import { WorkerServiceDefinition } from "../../../gen/infermesh/worker/v1/worker_service.js";
import { AuthorizationPolicy, type MethodRules } from "./authorization.js";

/**
 * The gateway drives every request (Acquire, Pick, Generate) and, on its admin routes
 * behind an admin key, drains, splits, rolls out, loads and unloads. The operator identity (a
 * person with grpcurl) may read, never act.
 */
export const admissionRules: MethodRules<typeof AdmissionServiceDefinition> = {
  acquire: ["gateway"],
  getStats: ["gateway", "operator"],
};

export const routerRules: MethodRules<typeof RouterServiceDefinition> = {
  pick: ["gateway"],
  connect: ["worker"],
  listWorkers: ["gateway", "operator"],
  drainWorker: ["gateway"],
  setTrafficSplit: ["gateway"],
  listTrafficSplits: ["gateway", "operator"],
  setRollout: ["gateway"],
  listRollouts: ["gateway", "operator"],
  deleteRollout: ["gateway"],
};

export const memoryGuardRules: MethodRules<typeof MemoryGuardServiceDefinition> = {
  report: ["worker"],
  watch: ["router", "admission", "operator"],
};

export const workerRules: MethodRules<typeof WorkerServiceDefinition> = {
  generate: ["gateway"],
  tokenize: ["gateway"],
  detokenize: ["gateway"],
  embed: ["gateway"],
  getInfo: ["gateway", "operator"],
  loadModel: ["gateway"],
  unloadModel: ["gateway"],
};

/** Every service's bug-report part: the gateway gathers it for an admin's GET /debug/bundle; the operator may read it. */
export const debugRules: MethodRules<typeof DebugServiceDefinition> = {
  getDebugInfo: ["gateway", "operator"],
};

const withDebug = () => new AuthorizationPolicy().allow(DebugServiceDefinition, debugRules);
export const admissionPolicy = () => withDebug().allow(AdmissionServiceDefinition, admissionRules);
export const routerPolicy = () => withDebug().allow(RouterServiceDefinition, routerRules);
export const memoryGuardPolicy = () => withDebug().allow(MemoryGuardServiceDefinition, memoryGuardRules);
export const workerPolicy = () => withDebug().allow(WorkerServiceDefinition, workerRules);

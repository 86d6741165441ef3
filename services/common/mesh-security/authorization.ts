import { Metadata, ServerInterceptingCall, status, type ServerInterceptor } from "@grpc/grpc-js";
import { Counter, type Registry } from "prom-client";
import type { Logger } from "../logger.js";
import { type MeshRole, roleOf } from "./identity.js";

/** A generated service definition (ts-proto, nice-grpc flavour): its name and methods. */
interface ServiceDefinition {
  readonly fullName: string;
  readonly methods: Readonly<Record<string, { readonly name: string }>>;
}

/** Who may call each method of one service; every method must be named. */
export type MethodRules<Definition extends ServiceDefinition> = {
  readonly [Method in keyof Definition["methods"]]: readonly MeshRole[];
};

/** Services every mesh identity may call: health and reflection describe, they do not act. */
const openToTheMesh = ["/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"];

/** Which identities may call which methods of one process's gRPC server. Anything not named is denied. */
export class AuthorizationPolicy {
  private readonly callers = new Map<string, ReadonlySet<MeshRole>>();

  /** Adds one service's rules. */
  allow<Definition extends ServiceDefinition>(definition: Definition, rules: MethodRules<Definition>): this {
    for (const [method, { name }] of Object.entries(definition.methods)) {
      const roles = (rules as Record<string, readonly MeshRole[]>)[method];
      if (roles === undefined) throw new Error(`${definition.fullName}: no authorization rule for ${method}`);
      this.callers.set(`/${definition.fullName}/${name}`, new Set(roles));
    }
    return this;
  }

  /** Whether `caller` may call the method at `path` (e.g. /infermesh.router.v1.RouterService/Pick). */
  permits(path: string, caller: MeshRole | undefined): boolean {
    if (caller === undefined) return false;
    if (openToTheMesh.some((prefix) => path.startsWith(prefix))) return true;
    return this.callers.get(path)?.has(caller) ?? false;
  }
}

/** Counts and logs refusals; created once per process. */
export class DenialRecorder {
  private readonly denied: Counter<"method" | "caller">;
  private lastLogAtMs = Number.NEGATIVE_INFINITY;
  private unlogged = 0;

  constructor(
    registry: Registry,
    private readonly logger: Logger,
  ) {
    this.denied = new Counter({
      name: "infermesh_rpc_denied_total",
      help: "gRPC calls refused with PERMISSION_DENIED because the caller's mesh identity may not call the method",
      labelNames: ["method", "caller"],
      registers: [registry],
    });
  }

  record(method: string, caller: MeshRole | undefined): void {
    this.denied.inc({ method, caller: caller ?? "unknown" });
    // At most one line a second: a flood of refused calls must not become a flood of logs.
    const now = performance.now();
    if (now - this.lastLogAtMs < 1_000) {
      this.unlogged += 1;
      return;
    }
    this.logger.warn(
      { method, caller: caller ?? "unknown", alsoDeniedSinceLastLine: this.unlogged },
      "refused a call its caller's identity does not allow",
    );
    this.lastLogAtMs = now;
    this.unlogged = 0;
  }
}

/**
 * A grpc-js server interceptor that reads the caller's role from its verified client
 * certificate and answers PERMISSION_DENIED before any handler runs when the policy
 * does not allow it.
 */
export function authorizationInterceptor(policy: AuthorizationPolicy, trustDomain: string, denials: DenialRecorder): ServerInterceptor {
  return (method, call) =>
    new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, passOn) {
            const caller = roleOf(call.getAuthContext().sslPeerCertificate, trustDomain);
            if (policy.permits(method.path, caller)) {
              passOn(metadata);
              return;
            }
            denials.record(method.path, caller);
            const who = caller === undefined ? "a caller without a mesh identity" : `the ${caller} identity`;
            call.sendStatus({ code: status.PERMISSION_DENIED, details: `${who} may not call ${method.path}`, metadata: new Metadata() });
          },
        });
      },
    });
}

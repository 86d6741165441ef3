import { Status } from "nice-grpc";
import { PriorityClass } from "../../gen/infermesh/common/v1/common.js";
import { ApiError } from "../errors.js";
import type { Caller } from "../flow/request.js";
import type { ModelCatalog } from "../mesh/models.js";
import { bearerToken, priorityClassOf, type ApiKeys, type KeyIdentity } from "./api-keys.js";
import { profileNames, type Alias, type Profile, type ProfileName } from "./profiles.js";

export interface AccessSettings {
  /** "required": every request needs a configured key. "off": keys are optional and only classify. */
  readonly auth: "off" | "required";
  readonly keys: ApiKeys;
  readonly profiles: Readonly<Record<ProfileName, Profile>>;
  readonly aliases: Readonly<Record<string, Alias>>;
  readonly defaultProfile: ProfileName;
}

/** A request's model, profile and caller once its key, alias and profile are applied. */
export interface AccessResolution {
  /** The model to ask the router for. */
  readonly model: string;
  /** Other served models the router may choose instead (profile `balanced`). */
  readonly alternativeModels: readonly string[];
  readonly profile: ProfileName;
  /** The profile's output bound: the most max_tokens a request may ask, and its max_tokens when it asks none. */
  readonly maxTokens: number;
  readonly caller: Caller;
  /** The key, when one was presented and known. */
  readonly identity: KeyIdentity | undefined;
}

/** The header a request names its profile with. */
export const profileHeaderName = "x-infermesh-profile";

/** The header a request names its priority class with; the key's class is its ceiling. */
export const priorityHeaderName = "x-infermesh-priority";

const priorityNames = ["interactive", "standard", "batch"] as const;
type PriorityName = (typeof priorityNames)[number];

/** What a request itself says about how it should run. */
export interface RequestSettings {
  /** The `model` field: a model id or an alias. */
  readonly model: string;
  /** The profile it names (x-infermesh-profile), if any. */
  readonly profileHeader: string | undefined;
  /** The priority class it asks for (x-infermesh-priority), if any. */
  readonly priorityHeader: string | undefined;
  /** OpenAI's `user`: the fairness key of callers without an API key. */
  readonly user: string;
}

/** Urgency order of the classes: a smaller number is more urgent. */
const urgency: Record<PriorityClass, number> = {
  [PriorityClass.PRIORITY_CLASS_INTERACTIVE]: 0,
  [PriorityClass.PRIORITY_CLASS_STANDARD]: 1,
  [PriorityClass.PRIORITY_CLASS_BATCH]: 2,
  [PriorityClass.PRIORITY_CLASS_UNSPECIFIED]: 1,
  [PriorityClass.UNRECOGNIZED]: 1,
};

/** Keys, tenants, aliases and profiles: who a request is and what it runs. */
export class AccessControl {
  constructor(
    private settings: AccessSettings,
    private readonly catalog: ModelCatalog,
  ) {}

  /** Puts new keys, tenants, profiles and aliases in force (a reload): requests from now on, not those admitted. */
  reconfigure(settings: AccessSettings): void {
    this.settings = settings;
  }

  /**
   * The identity behind an Authorization value. With auth required, a missing or
   * unknown key is UNAUTHENTICATED; with auth off, an unknown key is anonymous (SDKs
   * insist on sending some key).
   */
  authenticate(authorization: string | undefined): KeyIdentity | undefined {
    const token = bearerToken(authorization);
    const identity = token === undefined ? undefined : this.settings.keys.find(token);
    if (identity || this.settings.auth === "off") return identity;
    throw new ApiError(
      Status.UNAUTHENTICATED,
      token === undefined ? "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'." : "Incorrect API key provided.",
      { code: "invalid_api_key" },
    );
  }

  /**
   * Admin endpoints need an admin key. A gateway with auth off and no admin key
   * configured (the local default) lets loopback callers through.
   */
  requireAdmin(identity: KeyIdentity | undefined, fromLoopback: boolean): void {
    if (identity?.admin) return;
    if (this.settings.auth === "off" && !this.settings.keys.hasAdmin && fromLoopback) return;
    if (identity) throw new ApiError(Status.PERMISSION_DENIED, "This endpoint needs an admin API key.", { code: "admin_key_required" });
    throw new ApiError(Status.UNAUTHENTICATED, "This endpoint needs an admin API key.", { code: "invalid_api_key" });
  }

  /**
   * Applies alias, profile (header, then key, then server), priority class and limits
   * to a request.
   */
  async resolve(identity: KeyIdentity | undefined, request: RequestSettings, signal?: AbortSignal): Promise<AccessResolution> {
    const { model: modelField, profileHeader, priorityHeader, user } = request;
    if (profileHeader !== undefined && !(profileNames as readonly string[]).includes(profileHeader)) {
      throw new ApiError(Status.INVALID_ARGUMENT, `Unknown profile '${profileHeader}'; expected one of ${profileNames.join(", ")}.`, {
        param: profileHeaderName,
        code: "invalid_profile",
      });
    }
    if (priorityHeader !== undefined && !(priorityNames as readonly string[]).includes(priorityHeader)) {
      throw new ApiError(Status.INVALID_ARGUMENT, `Unknown priority '${priorityHeader}'; expected one of ${priorityNames.join(", ")}.`, {
        param: priorityHeaderName,
        code: "invalid_priority",
      });
    }
    const alias = Object.hasOwn(this.settings.aliases, modelField) ? this.settings.aliases[modelField] : undefined;
    const profileName = alias?.profile ?? (profileHeader as ProfileName | undefined) ?? identity?.profile ?? this.settings.defaultProfile;
    const profile = this.settings.profiles[profileName];
    let model = alias?.model ?? modelField;
    let alternativeModels: string[] = [];
    if (alias && alias.model === undefined) {
      const served = new Set((await this.catalog.list(signal)).map((entry) => entry.id));
      const candidates = profile.models.filter((id) => served.has(id));
      if (candidates.length === 0) {
        throw new ApiError(
          Status.UNAVAILABLE,
          `No worker serves a model of the ${profileName} profile (${profile.models.join(", ")}) right now.`,
          {
            code: "model_unavailable",
            retryAfterMs: 1_000,
          },
        );
      }
      model = candidates[0]!;
      if (profile.routerChoosesModel) alternativeModels = candidates.slice(1);
    }
    // The header, when given, chooses the class instead of the profile.
    const requestedClass = priorityClassOf((priorityHeader as PriorityName | undefined) ?? profile.priority);
    const keyClass = identity?.priorityClass ?? PriorityClass.PRIORITY_CLASS_INTERACTIVE;
    return {
      model,
      alternativeModels,
      maxTokens: profile.maxTokens,
      profile: profileName,
      identity,
      caller: {
        // Without a key, the end user (OpenAI's `user`) is the fairness key, in its own
        // namespace so that no anonymous caller can pose as a keyed tenant.
        tenantId: identity?.tenant ?? `anonymous:${user}`,
        // The key's class is a ceiling: a batch key cannot buy urgency with a profile or a header.
        priorityClass: urgency[requestedClass] >= urgency[keyClass] ? requestedClass : keyClass,
        limits: identity?.limits,
      },
    };
  }
}

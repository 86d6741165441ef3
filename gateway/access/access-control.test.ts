import assert from "node:assert/strict";
import test from "node:test";
import { Status } from "nice-grpc";
import { PriorityClass } from "../../gen/infermesh/common/v1/common.js";
import { ApiError } from "../errors.js";
import type { ModelCatalog } from "../mesh/models.js";
import { AccessControl, type RequestSettings } from "./access-control.js";
import { ApiKeys, apiKeySchema } from "./api-keys.js";
import { defaultAliases, defaultProfiles } from "./profiles.js";

const keys = {
  interactive: "sk-interactive-000000000000001",
  standard: "sk-standard-0000000000000000002",
  batch: "sk-batch-0000000000000000000003",
};

const access = new AccessControl(
  {
    auth: "off",
    keys: new ApiKeys(
      Object.entries(keys).map(([priority, key]) => apiKeySchema.parse({ name: priority, key, tenant: priority, priority })),
    ),
    profiles: defaultProfiles,
    aliases: defaultAliases,
    defaultProfile: "balanced",
  },
  {} as ModelCatalog, // a plain model id never asks the catalog
);

const { PRIORITY_CLASS_INTERACTIVE: INTERACTIVE, PRIORITY_CLASS_STANDARD: STANDARD, PRIORITY_CLASS_BATCH: BATCH } = PriorityClass;

async function classOf(key: keyof typeof keys | undefined, settings: Partial<RequestSettings> = {}): Promise<PriorityClass> {
  const identity = key === undefined ? undefined : access.authenticate(`Bearer ${keys[key]}`);
  const resolved = await access.resolve(identity, {
    model: "m",
    profileHeader: undefined,
    priorityHeader: undefined,
    user: "u",
    ...settings,
  });
  return resolved.caller.priorityClass;
}

test("without the header the class is the profile's, capped by the key's", async () => {
  assert.equal(await classOf("interactive"), STANDARD, "balanced is standard");
  assert.equal(await classOf("interactive", { profileHeader: "latency_first" }), INTERACTIVE);
  assert.equal(await classOf("batch", { profileHeader: "latency_first" }), BATCH);
});

test("x-infermesh-priority may lower a request's class, or choose any class up to the key's, never above it", async () => {
  assert.equal(await classOf("interactive", { priorityHeader: "batch" }), BATCH);
  assert.equal(await classOf("interactive", { profileHeader: "latency_first", priorityHeader: "standard" }), STANDARD);
  assert.equal(await classOf("interactive", { priorityHeader: "interactive" }), INTERACTIVE, "up to the key's ceiling");
  assert.equal(await classOf("standard", { priorityHeader: "interactive" }), STANDARD, "not above it");
  assert.equal(await classOf("batch", { priorityHeader: "interactive" }), BATCH);
  assert.equal(await classOf("batch", { priorityHeader: "standard" }), BATCH);
  assert.equal(await classOf(undefined, { priorityHeader: "batch" }), BATCH, "without a key too");
});

test("an unknown priority is a 400 that names the header", async () => {
  for (const value of ["urgent", "Batch", ""]) {
    await assert.rejects(classOf("interactive", { priorityHeader: value }), (error: unknown) => {
      assert.ok(error instanceof ApiError);
      assert.equal(error.status, Status.INVALID_ARGUMENT);
      assert.equal(error.details.param, "x-infermesh-priority");
      assert.match(error.message, /expected one of interactive, standard, batch/);
      return true;
    });
  }
});

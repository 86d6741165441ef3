import test from "node:test";
import assert from "node:assert/strict";
import { AbortError } from "abort-controller-x";
import { ClientError, ServerError, Status } from "nice-grpc";
import { ApiError, httpStatusOf, openAiErrorBody, toApiError } from "./errors.js";

const allStatuses = Object.values(Status).filter((value): value is Status => typeof value === "number");

test("every gRPC status maps to a 2xx, 4xx or 5xx HTTP status", () => {
  assert.equal(allStatuses.length, 17);
  for (const status of allStatuses) {
    const http = httpStatusOf(status);
    assert.ok(Number.isInteger(http), `${Status[status]} has no HTTP status`);
    assert.ok((http >= 200 && http < 300) || (http >= 400 && http < 600), `${Status[status]} → ${http}`);
    assert.equal(http >= 200 && http < 300, status === Status.OK, `${Status[status]} → ${http}`);
  }
});

test("the documented gRPC → HTTP mappings", () => {
  const expected: [Status, number][] = [
    [Status.RESOURCE_EXHAUSTED, 429],
    [Status.UNAVAILABLE, 503],
    [Status.INVALID_ARGUMENT, 400],
    [Status.NOT_FOUND, 404],
    [Status.DEADLINE_EXCEEDED, 504],
    [Status.UNAUTHENTICATED, 401],
    [Status.PERMISSION_DENIED, 403],
    [Status.INTERNAL, 500],
  ];
  for (const [status, http] of expected) assert.equal(httpStatusOf(status), http, Status[status]);
});

test("openAiErrorBody has OpenAI's shape, with null param and code when absent", () => {
  assert.deepEqual(
    openAiErrorBody(new ApiError(Status.INVALID_ARGUMENT, "bad temperature", { param: "temperature", code: "invalid_value" })),
    {
      error: { message: "bad temperature", type: "invalid_request_error", param: "temperature", code: "invalid_value" },
    },
  );
  assert.deepEqual(openAiErrorBody(new ApiError(Status.RESOURCE_EXHAUSTED, "busy")), {
    error: { message: "busy", type: "rate_limit_error", param: null, code: null },
  });
  assert.equal(openAiErrorBody(new ApiError(Status.UNAVAILABLE, "x")).error.type, "service_unavailable_error");
  assert.equal(openAiErrorBody(new ApiError(Status.INTERNAL, "x")).error.type, "server_error");
});

test("toApiError keeps the status and details of gRPC errors", () => {
  const fromClient = toApiError(new ClientError("/infermesh.router.v1.RouterService/Pick", Status.NOT_FOUND, "model m9 is not served"));
  assert.equal(fromClient.status, Status.NOT_FOUND);
  assert.equal(fromClient.message, "model m9 is not served");
  const fromServer = toApiError(new ServerError(Status.RESOURCE_EXHAUSTED, "queue full"));
  assert.equal(fromServer.status, Status.RESOURCE_EXHAUSTED);
  assert.equal(fromServer.message, "queue full");
});

test("toApiError turns an abort into CANCELLED and passes an ApiError through", () => {
  const cancelled = toApiError(new AbortError());
  assert.equal(cancelled.status, Status.CANCELLED);
  assert.equal(httpStatusOf(cancelled.status), 499);
  const original = new ApiError(Status.NOT_FOUND, "no such model", { param: "model" });
  assert.equal(toApiError(original), original);
});

test("toApiError hides anything else behind INTERNAL 'internal error'", () => {
  for (const thrown of [new Error("ECONNREFUSED 10.0.0.7:7001 /srv/secret"), new TypeError("x is undefined"), "a string", undefined]) {
    const error = toApiError(thrown);
    assert.equal(error.status, Status.INTERNAL);
    assert.equal(error.message, "internal error");
    assert.deepEqual(openAiErrorBody(error), { error: { message: "internal error", type: "server_error", param: null, code: null } });
  }
});

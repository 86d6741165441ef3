import assert from "node:assert/strict";
import test from "node:test";
import { Status } from "nice-grpc";
import { RejectReason } from "../../gen/infermesh/admission/v1/admission_service.js";
import { httpStatusOf } from "../errors.js";
import { rejectionError } from "./admission-slot.js";

test("a rate limit is the caller's 429; the server's capacity and a stopping admission are 503; all keep the retry delay", () => {
  const expected: [RejectReason, number, string][] = [
    [RejectReason.REJECT_REASON_RATE_LIMITED, 429, "rate_limit_exceeded"],
    [RejectReason.REJECT_REASON_QUEUE_FULL, 503, "server_overloaded"],
    [RejectReason.REJECT_REASON_QUEUE_TIMEOUT, 503, "server_overloaded"],
    [RejectReason.REJECT_REASON_OVERLOADED, 503, "server_overloaded"],
    [RejectReason.REJECT_REASON_MEMORY, 503, "server_overloaded"],
    [RejectReason.REJECT_REASON_SHUTTING_DOWN, 503, "server_unavailable"],
    [RejectReason.UNRECOGNIZED, 503, "server_overloaded"],
  ];
  for (const [reason, httpStatus, code] of expected) {
    const error = rejectionError({ reason, message: "no", retryAfterMs: 2_500 });
    assert.equal(httpStatusOf(error.status), httpStatus, RejectReason[reason]);
    assert.equal(error.details.code, code, RejectReason[reason]);
    assert.equal(error.details.retryAfterMs, 2_500);
  }
  assert.equal(
    rejectionError({ reason: RejectReason.REJECT_REASON_QUEUE_FULL, message: "no", retryAfterMs: 1 }).status,
    Status.UNAVAILABLE,
  );
});

import test from "node:test";
import assert from "node:assert/strict";
import { KvReservations } from "./kv-reservations.js";

test("reservations add up while held and are released once each", () => {
  const reservations = new KvReservations();
  let changes = 0;
  reservations.onChange(() => changes++);
  const releaseA = reservations.hold(500);
  const releaseB = reservations.hold(300);
  assert.equal(reservations.reservedTokens, 800);
  releaseA();
  releaseA();
  assert.equal(reservations.reservedTokens, 300);
  releaseB();
  assert.equal(reservations.reservedTokens, 0);
  assert.equal(changes, 4, "a second release changes nothing");
});

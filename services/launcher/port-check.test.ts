import assert from "node:assert/strict";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { portsTaken } from "./port-check.js";

test("a port another process listens on is reported with what would have used it; free ones are not", async () => {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
  const heldPort = (holder.address() as AddressInfo).port;
  const spare = createServer();
  await new Promise<void>((resolve) => spare.listen(0, "127.0.0.1", resolve));
  const freePort = (spare.address() as AddressInfo).port;
  await new Promise((resolve) => spare.close(resolve));
  try {
    assert.deepEqual(
      await portsTaken("127.0.0.1", [
        ["the router", freePort],
        ["the gateway's HTTP API", heldPort],
      ]),
      [["the gateway's HTTP API", heldPort]],
    );
  } finally {
    await new Promise((resolve) => holder.close(resolve));
  }
});

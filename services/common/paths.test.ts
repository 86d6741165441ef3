import assert from "node:assert/strict";
import { homedir } from "node:os";
import { test } from "node:test";
import { userCacheDir } from "./paths.js";

test("the per-user cache is under XDG_CACHE_HOME when it is absolute, else ~/.cache", () => {
  assert.equal(userCacheDir({ XDG_CACHE_HOME: "/var/cache/me", HOME: "/home/me" }, "models"), "/var/cache/me/infermesh/models");
  assert.equal(userCacheDir({ HOME: "/home/me" }, "models"), "/home/me/.cache/infermesh/models");
  assert.equal(userCacheDir({ XDG_CACHE_HOME: "relative/cache", HOME: "/home/me" }, "pki"), "/home/me/.cache/infermesh/pki");
  assert.equal(userCacheDir({ XDG_CACHE_HOME: "", HOME: "/home/me" }), "/home/me/.cache/infermesh");
  assert.equal(userCacheDir({}, "models"), `${homedir()}/.cache/infermesh/models`);
});

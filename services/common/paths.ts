import { homedir } from "node:os";
import { fileURLToPath } from "node:url";
import { dirname, isAbsolute, join, resolve } from "node:path";

/** The repository root, found from this file's place in src or dist. */
export function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // services/common → root; dist/services/common → root.
  const up = here.includes(`${"/"}dist${"/"}`) ? "../../.." : "../..";
  return resolve(here, up);
}

/**
 * infermesh's per-user cache, whatever the working directory: `$XDG_CACHE_HOME/infermesh`,
 * else `~/.cache/infermesh` (the XDG base directory rule: a relative XDG_CACHE_HOME is
 * ignored), joined with `parts`. Holds what infermesh makes by itself and makes again
 * when it is deleted: the generated test model, the local mesh CA.
 */
export function userCacheDir(env: Readonly<Record<string, string | undefined>>, ...parts: string[]): string {
  const xdg = env.XDG_CACHE_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), ".cache");
  return join(base, "infermesh", ...parts);
}

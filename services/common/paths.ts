import { fileURLToPath } from "node:url";
import { dirname, resolve } from "node:path";

/** The repository root, found from this file's place in src or dist. */
export function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // services/common → root; dist/services/common → root.
  const up = here.includes(`${"/"}dist${"/"}`) ? "../../.." : "../..";
  return resolve(here, up);
}

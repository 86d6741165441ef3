// Adds lockfile entries for platform-specific optional packages that `npm install`
// left out because the registry this project is built against does not carry them
// (buf's and node-llama-cpp's binaries for other operating systems). Without these
// entries `npm ci` refuses the lockfile as out of sync. The entries carry the version
// and the os/cpu the package name encodes, so npm skips them on other platforms;
// on a full registry `npm install` writes them itself. Run after `npm install`:
//   node scripts/complete-lockfile.mjs
import { readFileSync, writeFileSync } from "node:fs";

const path = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(path, "utf8"));
const platformOf = (name) => {
  const os = /darwin|mac-/.test(name) ? "darwin" : /win32|win-/.test(name) ? "win32" : /linux/.test(name) ? "linux" : undefined;
  const cpu = /arm64|aarch64/.test(name)
    ? "arm64"
    : /armv7/.test(name)
      ? "arm"
      : /riscv64/.test(name)
        ? "riscv64"
        : /x64/.test(name)
          ? "x64"
          : undefined;
  return os && cpu ? { os: [os], cpu: [cpu] } : undefined;
};
let added = 0;
for (const [location, entry] of Object.entries(lock.packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const target = `${location ? `${location}/` : ""}node_modules/${name}`;
    const hoisted = `node_modules/${name}`;
    if (lock.packages[target] || lock.packages[hoisted]) continue;
    const platform = platformOf(name);
    if (!platform) continue;
    lock.packages[hoisted] = { version, optional: true, ...platform };
    added += 1;
  }
}
lock.packages = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))));
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`added ${added} platform entries to package-lock.json`);

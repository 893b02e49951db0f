// Builds the neighbours' web app: type-checks web/src (DOM types, no node
// types, with the ledger modules it imports) and bundles it with esbuild into
// web/dist/app.js. The bundle carries the ledger's own encoder and signer
// (ledger/tx.ts, codec.ts, hash.ts) so the browser signs exactly what the
// ledger verifies; platform "browser" makes any node: import an error.
//
//   node scripts/build-web.mjs [--no-check]
import { execFileSync } from "node:child_process";
import { statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
/** The bundle is sent to phones over the LAN (and kept by the service worker): it stays small. */
const BUNDLE_BYTES_MAX = 256 * 1024;

if (!process.argv.includes("--no-check")) {
  execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", join(root, "web/tsconfig.json")], { stdio: "inherit" });
}
const out = join(root, "web/dist/app.js");
await build({
  entryPoints: [join(root, "web/src/main.ts")],
  outfile: out,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022", // noble needs BigInt; every phone browser of the last four years has ES2022
  minify: true,
  sourcemap: false, // the box serves app.js alone; build with esbuild by hand to debug
  legalComments: "eof", // the MIT notices of the bundled libraries travel in the file
  logLevel: "warning",
});
const bytes = statSync(out).size;
if (bytes > BUNDLE_BYTES_MAX) throw new Error(`web/dist/app.js is ${bytes} bytes, over the ${BUNDLE_BYTES_MAX} limit`);
console.log(`web/dist/app.js: ${bytes} bytes`);

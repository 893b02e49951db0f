#!/usr/bin/env node
// The `peergrid` command. The TypeScript sources are compiled to dist/ by
// `npm install` (the "prepare" script) or `npm run build`.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const cli = new URL("../dist/daemon/cli.js", import.meta.url);
if (!existsSync(fileURLToPath(cli))) {
  console.error("peergrid is not built yet: run `npm install` (or `npm run build`) in the peergrid folder first.");
  process.exit(2);
}
const { main } = await import(cli.href);
process.exitCode = await main(process.argv);

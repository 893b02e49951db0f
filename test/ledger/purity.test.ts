// Pure cores import no I/O and read no clock or randomness (STYLE.md, "What
// that means here", rule 1). This test reads their TypeScript sources and
// fails on the first forbidden import or call.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

/** Every pure core, relative to the repository root. Add market/*.ts and device/*.ts cores here as they are written. */
const PURE_CORES = [
  "ledger/codec.ts",
  "ledger/errors.ts",
  "ledger/assert.ts",
  "ledger/hash.ts",
  "ledger/tx.ts",
  "ledger/block.ts",
  "ledger/merkle.ts",
  "ledger/state-tree.ts",
  "ledger/records.ts",
  "ledger/genesis.ts",
  "ledger/state.ts",
  "ledger/raft/quorum.ts",
  "ledger/raft/raft.ts",
  "ledger/mempool.ts",
  "ledger/checkpoint-fetch.ts",
  "ledger/raft/wire.ts",
  "ledger/raft/conf-change.ts",
  "ledger/replicated.ts",
  "device/register-map.ts",
  "device/modbus-frame.ts",
  "device/reading-check.ts",
  "device/profiles.ts",
  "device/sunspec.ts",
  "ledger/results.ts",
  "ledger/governance.ts",
  "market/clearing.ts",
  "market/settlement.ts",
  "market/auto-bid.ts",
  "market/interval.ts",
  "market/grid-monitor.ts",
  "market/dispatch.ts",
  "sim/site.ts",
  "sim/solar.ts",
  "sim/weather.ts",
  "sim/household.ts",
  "sim/battery.ts",
  "sim/premise.ts",
];

// This file runs as dist/test/ledger/purity.test.js; the sources are three levels up.
const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

const FORBIDDEN_MODULES = ["fs", "better-sqlite3", "fastify", "mqtt", "serialport", "modbus-serial", ...builtinModules];

const FORBIDDEN_CALLS: [string, RegExp][] = [
  ["Date.now", /\bDate\s*\.\s*now\b/],
  ["new Date(", /\bnew\s+Date\s*\(/],
  ["setTimeout", /\bsetTimeout\b/],
  ["setInterval", /\bsetInterval\b/],
  ["setImmediate", /\bsetImmediate\b/],
  ["Math.random", /\bMath\s*\.\s*random\b/],
  ["performance.now", /\bperformance\s*\.\s*now\b/],
  ["process.", /\bprocess\s*\./],
  ["crypto.getRandomValues", /\bgetRandomValues\b/],
  ["require(", /\brequire\s*\(/],
];

/** The source with comments blanked out (strings and template literals kept), so prose about Date.now is fine. */
export function stripComments(src: string): string {
  let out = "";
  let i = 0;
  while (i < src.length) {
    const c = src[i] as string;
    const next = src[i + 1];
    if (c === "/" && next === "/") {
      while (i < src.length && src[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      const end = src.indexOf("*/", i + 2);
      i = end < 0 ? src.length : end + 2;
      out += " ";
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < src.length && src[j] !== c) j += src[j] === "\\" ? 2 : 1;
      out += src.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Module specifiers of static imports, re-exports and dynamic imports. */
export function importsOf(code: string): string[] {
  const specs: string[] = [];
  const patterns = [/\bfrom\s*["']([^"']+)["']/g, /\bimport\s*["']([^"']+)["']/g, /\bimport\s*\(\s*["']([^"']+)["']/g];
  for (const re of patterns) for (const m of code.matchAll(re)) specs.push(m[1] as string);
  return specs;
}

export function violations(src: string): string[] {
  const code = stripComments(src);
  const found: string[] = [];
  for (const spec of importsOf(code)) {
    const bare = spec.startsWith("node:") ? spec : spec.split("/")[0] ?? spec;
    if (spec.startsWith("node:") || FORBIDDEN_MODULES.includes(bare) || FORBIDDEN_MODULES.includes(spec)) found.push(`imports "${spec}"`);
  }
  for (const [name, re] of FORBIDDEN_CALLS) if (re.test(code)) found.push(`uses ${name}`);
  return found;
}

describe("purity of the pure cores", () => {
  for (const file of PURE_CORES) {
    test(`${file} imports no I/O and reads no clock or randomness`, () => {
      const src = readFileSync(REPO_ROOT + file, "utf8");
      assert.ok(src.length > 0);
      assert.deepEqual(violations(src), [], `${file} is not pure`);
    });
  }
});

describe("the purity scanner itself", () => {
  test("catches every forbidden import form", () => {
    const cases = [
      `import { readFileSync } from "node:fs";`,
      `import * as fs from 'fs';`,
      `import { readFile } from "fs/promises";`,
      `import Database from "better-sqlite3";`,
      `import Fastify from "fastify";`,
      `import mqtt from "mqtt";`,
      `import { SerialPort } from "serialport";`,
      `import ModbusRTU from "modbus-serial";`,
      `import "node:process";`,
      `const os = await import("os");`,
      `export { x } from "node:crypto";`,
      `import { createHash } from "crypto";`,
    ];
    for (const src of cases) assert.equal(violations(src).length, 1, src);
  });

  test("catches every forbidden call", () => {
    const cases = [
      "const t = Date.now();",
      "const d = new Date();",
      "setTimeout(f, 10);",
      "setInterval(f, 10);",
      "const r = Math.random();",
      "const p = performance.now();",
      "if (process.env.X) {}",
      "globalThis.crypto.getRandomValues(buf);",
    ];
    for (const src of cases) assert.ok(violations(src).length >= 1, src);
  });

  test("allows comments about them, pure imports, and similar names", () => {
    const src = [
      "// never calls Date.now or Math.random; the shell hands in nowMs",
      "/* setTimeout lives in the shell, with process.env */",
      `import { sha256 } from "@noble/hashes/sha2.js";`,
      `import { Type } from "@sinclair/typebox";`,
      `import { assert } from "./assert.js";`,
      "const processed = 1; const updateDate = 2;",
      `const url = "http://example.org/";`,
    ].join("\n");
    assert.deepEqual(violations(src), []);
  });
});

// `peergrid demo`, as a user runs it: the orchestrator as a child process,
// three boxes on free loopback ports at 60x (a 15-minute interval in 15 s).
// It must get a trade through the market and the boxes must agree on the
// chain; a key pasted on its stdin is enrolled; Ctrl-C (SIGINT) stops it
// with exit 0 within seconds and no box left running. Killed with -9, its
// boxes stop by themselves. Bad options are refused with exit 2 before
// anything starts. Linux: the boxes are found through /proc.
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { type Server, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, describe, test } from "node:test";
import { getJson } from "../../daemon/demo.js";
import { waitFor } from "../../daemon/local-cluster.js";
import { toHex } from "../../ledger/hash.js";
import { NodeSigner } from "../../ledger/keys.js";

const MAIN = fileURLToPath(new URL("../../daemon/main.js", import.meta.url));
const BOXES = 3;
const PORTS = 3 * BOXES + 1;

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "peergrid-demo-"));
  dirs.push(d);
  return d;
}

function listen(port: number): Promise<Server | null> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(null));
    s.listen({ host: "127.0.0.1", port, exclusive: true }, () => resolve(s));
  });
}

/**
 * A base port whose PORTS ports are all free now: in 10000..17999, below the kernel's ephemeral range
 * (32768..) and apart from the other tests' ports (config 18000.., cluster 20000..).
 */
async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 10_000 + Math.floor(Math.random() * 790) * 10;
    const held = await Promise.all(Array.from({ length: PORTS }, (_, i) => listen(base + i)));
    await Promise.all(held.map((s) => new Promise<void>((resolve) => (s === null ? resolve() : s.close(() => resolve())))));
    if (held.every((s) => s !== null)) return base;
  }
  throw new Error("no free range of ports");
}

/** The processes whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Run {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly exited: Promise<number | null>;
}

function startDemo(args: readonly string[]): Run {
  const child = spawn(process.execPath, [MAIN, "demo", ...args], { stdio: ["pipe", "pipe", "pipe"] });
  const lines: string[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (l) => lines.push(l));
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (l) => lines.push(l));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, lines, exited };
}


describe("peergrid demo", () => {
  test("three boxes trade, agree on the chain, enrol a pasted key, and stop on Ctrl-C with exit 0 and no box left", { timeout: 90_000 }, async (t) => {
    const dir = join(tempDir(), "demo");
    const base = await freeBasePort();
    const http = (i: number) => `http://127.0.0.1:${base + 2 * i + 1}`;
    // 60x from 09:05: the first boundary (09:15) comes 10 s in, the first trades clear at 09:30, 25 s in.
    const startedAt = Date.now();
    const run = startDemo(["--boxes", String(BOXES), "--speed", "60", "--base-port", String(base), "--data-dir", dir, "--start-at", "09:05", "--progress-every", "5"]);
    const transcript = () => run.lines.join("\n");
    try {
      await waitFor("the demo's summary", () => run.lines.some((l) => l.includes("Ctrl-C stops everything")), 30_000, 100);
      const summary = transcript();
      for (let i = 0; i < BOXES; i++) assert.ok(summary.includes(`${http(i)}/`), `box ${i}'s web app is printed:\n${summary}`);
      assert.match(summary, /<- leader/, "the leader is named");
      assert.match(summary, /the day: Sunday 21 June 2026, sunny, in London; times are London's \(BST, UTC\+1\)/, "the simulated day is named");
      const boxes = childrenOf(run.child.pid as number);
      assert.equal(boxes.length, BOXES, `one process per box: ${boxes.join(", ")}`);

      // A trade, through a box's API: the auto-bidders ordered from their simulated meters.
      type Market = { lastCleared: { startMs: number; priceMicroPerKWh: number | null; trades: { buyer: number; seller: number; energyWh: number }[] } | null };
      const traded = await waitFor("an interval cleared with a trade", async () => {
        const m = await getJson<Market>(`${http(1)}/api/v1/market`);
        return m?.lastCleared != null && m.lastCleared.trades.length > 0 ? m.lastCleared : null;
      }, 60_000, 500);
      const firstTradeS = Math.round((Date.now() - startedAt) / 1_000);
      assert.ok(traded.priceMicroPerKWh !== null && traded.priceMicroPerKWh > 0, "a pay-as-clear price");
      assert.ok(traded.trades.every((t) => t.seller % 2 === 0 && t.buyer % 2 === 1), `prosumers (even boxes) sell to consumers (odd): ${JSON.stringify(traded.trades)}`);
      await waitFor("the clearing printed", () => run.lines.some((l) => / cleared at .*buys \d+ Wh from /.test(l)), 10_000, 100);

      // Every box holds the same block at a height all of them have.
      type Status = { height: number };
      const heights = await Promise.all(Array.from({ length: BOXES }, (_, i) => getJson<Status>(`${http(i)}/api/v1/status`)));
      const height = Math.min(...heights.map((s) => s?.height ?? 0));
      assert.ok(height > 10, `blocks were cut: ${height}`);
      const hashes = await Promise.all(Array.from({ length: BOXES }, (_, i) => getJson<{ hash: string }>(`${http(i)}/api/v1/blocks/${height}`)));
      assert.ok(hashes.every((h) => h !== null && h.hash === hashes[0]?.hash), `one block ${height} on every box: ${JSON.stringify(hashes)}`);

      // Healthy on the fast clock: its meters are not "silent" between polls 60 simulated seconds apart.
      const health = await Promise.all(Array.from({ length: BOXES }, (_, i) => getJson<{ status: string; problems: unknown[] }>(`${http(i)}/api/v1/health`)));
      assert.ok(health.every((h) => h?.status === "ok"), `every box healthy: ${JSON.stringify(health)}`);

      // A block a real second, 60 simulated seconds after its parent (give or take a timer's lateness, times
      // 60): the chain runs on the simulated clock.
      const recent = await getJson<{ blocks: { height: number; timeMs: number }[] }>(`${http(0)}/api/v1/blocks?limit=10`);
      const gaps = (recent?.blocks ?? []).slice(1).map((b, i) => (recent?.blocks[i] as { timeMs: number }).timeMs - b.timeMs);
      assert.ok(gaps.length >= 5 && gaps.filter((g) => Math.abs(g - 60_000) <= 3_000).length >= gaps.length - 1, `block time gaps: ${gaps.join(", ")}`);
      // On the demo's day (its meters' sunny 21 June in London: test/daemon/demo-profiles.test.ts), not today.
      assert.ok(recent?.blocks.every((b) => new Date(b.timeMs).toISOString().startsWith("2026-06-21T")), `blocks stamped on 21 June 2026: ${recent?.blocks.map((b) => new Date(b.timeMs).toISOString()).join(", ")}`);
      assert.ok(height >= firstTradeS - 8 && height <= firstTradeS + 2, `about a block a real second: height ${height} after ${firstTradeS} s`);

      // A browser's key, pasted into the demo's terminal, is enrolled by box 0 and seen by every box.
      const key = toHex(NodeSigner.generate().publicKey);
      run.child.stdin?.write(`${key}\n`);
      await waitFor("the enrolment", () => run.lines.some((l) => l.startsWith("enrolled as member")), 20_000, 100);
      const known = await waitFor("the member on box 2", () => getJson<{ member: { index: number; roles: string[] } }>(`${http(2)}/api/v1/members/by-key/${key}`), 10_000, 200);
      assert.deepEqual(known.member.roles, ["user"]);
      assert.ok(run.lines.includes(`enrolled as member ${known.member.index} (neighbour-1): the page notices within a few seconds, and can then place orders`), transcript());

      // Ctrl-C.
      const stopAt = Date.now();
      run.child.kill("SIGINT");
      const code = await Promise.race([run.exited, new Promise<"late">((resolve) => setTimeout(() => resolve("late"), 10_000))]);
      const stopMs = Date.now() - stopAt;
      assert.equal(code, 0, `exit 0 on SIGINT, within 10 s (${stopMs} ms):\n${transcript()}`);
      assert.ok(stopMs < 8_000, `stopped in ${stopMs} ms`);
      t.diagnostic(`first trade seen ${firstTradeS} s after the start; Ctrl-C to exit: ${stopMs} ms`);
      assert.deepEqual(boxes.filter(alive), [], "every box process is gone");
      assert.match(transcript(), /stopped\. The neighbourhood's data stays in/);
      assert.doesNotMatch(transcript(), /exited with/, "no box exited uncleanly");
      for (let i = 0; i < BOXES; i++) assert.match(readFileSync(join(dir, `box-${i}.log`), "utf8"), /"msg":"box stopped"/, `box ${i} stopped cleanly`);
      assert.equal(existsSync(join(dir, "demo.pid")), false, "the folder is released");
    } finally {
      run.child.kill("SIGKILL");
    }
  });

  test("killed with -9, the demo leaves no box behind", { timeout: 60_000 }, async () => {
    const base = await freeBasePort();
    const run = startDemo(["--boxes", "2", "--speed", "60", "--base-port", String(base), "--data-dir", join(tempDir(), "demo"), "--no-mqtt"]);
    try {
      await waitFor("the demo's summary", () => run.lines.some((l) => l.includes("Ctrl-C stops everything")), 30_000, 100);
      const boxes = childrenOf(run.child.pid as number);
      assert.equal(boxes.length, 2, run.lines.join("\n"));
      run.child.kill("SIGKILL");
      await run.exited;
      await waitFor("every box to stop by itself", () => boxes.every((b) => !alive(b)), 15_000, 100);
    } finally {
      run.child.kill("SIGKILL");
    }
  });

  test("bad options are refused with exit 2 and a message that says what to do, before anything starts", async () => {
    const cli = (...args: string[]) =>
      new Promise<{ status: number | null; out: string }>((resolve) => {
        execFile(process.execPath, [MAIN, "demo", ...args], { encoding: "utf8", timeout: 20_000 }, (err, stdout, stderr) => resolve({ status: err === null ? 0 : typeof err.code === "number" ? err.code : null, out: stdout + stderr }));
      });
    const dir = join(tempDir(), "never");
    const base = await freeBasePort();
    let otherBase = await freeBasePort(); // the ports are checked before the folder: a free range for that case
    while (otherBase === base) otherBase = await freeBasePort();
    const busy = await listen(base + 3); // box 1's HTTP port
    const foreign = tempDir();
    writeFileSync(join(foreign, "precious.txt"), "not the demo's\n");
    try {
      const cases: [string[], RegExp][] = [
        [["--speed", "0"], /--speed must be a whole number 1\.\.60/],
        [["--speed", "61"], /--speed must be/],
        [["--boxes", "1"], /--boxes must be 2\.\.10: a market needs/],
        [["--start-at", "25:00"], /--start-at "25:00" is not a time of day/],
        [["--base-port", "80"], /--base-port must be 1024\.\./],
        [["--boxes", "3", "--base-port", String(base)], new RegExp(`port ${base + 3} on 127\\.0\\.0\\.1, for box 1's web app and API, is in use.*--base-port`)],
      ];
      const runs = await Promise.all([...cases.map(([args]) => cli(...args, "--data-dir", dir)), cli("--boxes", "3", "--base-port", String(otherBase), "--data-dir", foreign)]);
      cases.forEach(([args, expected], i) => {
        const r = runs[i] as { status: number | null; out: string };
        assert.equal(r.status, 2, `${args.join(" ")}: ${r.out}`);
        assert.match(r.out, expected, args.join(" "));
      });
      assert.equal(existsSync(dir), false, "nothing was made");
      const r = runs[cases.length] as { status: number | null; out: string };
      assert.equal(r.status, 2, r.out);
      assert.match(r.out, /was not made by a peergrid demo: choose another --data-dir/);
      assert.equal(readFileSync(join(foreign, "precious.txt"), "utf8"), "not the demo's\n", "a folder the demo did not make is left alone");
    } finally {
      busy?.close();
    }
  });
});

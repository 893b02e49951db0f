// A neighbourhood of boxes on one machine, each a separate `peergrid start`
// process on loopback: for the cluster tests, the benchmarks and the demo
// (daemon/demo.ts). It makes the keys, the genesis and each box's data
// directory, then starts, kills (-9 too) and restarts boxes, and reads their
// HTTP API. The boxes run the build this file was compiled into (main.js
// beside it), whichever folder that build is in.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { type LedgerParams, type MarketParams, parseGenesis } from "../ledger/genesis.js";
import type { RoleName } from "../ledger/tx.js";
import { toHex } from "../ledger/hash.js";
import { NodeSigner, NodeVerifier, writeKeyFile } from "../ledger/keys.js";
import { Ledger } from "../ledger/ledger.js";
import type { NodeStatus } from "./node.js";

/**
 * Poll `probe` every `everyMs` until it gives something other than null,
 * undefined or false, and resolve with it; reject naming `what` after
 * `timeoutMs`. Shared by the cluster tests and the benchmarks.
 */
export async function waitFor<T>(what: string, probe: () => T | null | undefined | false | Promise<T | null | undefined | false>, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== null && v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, everyMs));
  }
}

/** The `peergrid` command of this build (daemon/main.ts). */
const MAIN = fileURLToPath(new URL("./main.js", import.meta.url));

export interface LocalClusterOptions {
  readonly dir: string;
  readonly boxes: number;
  /** Extra members without a box (users who sign orders). */
  readonly users?: number;
  /** First port; box i listens for Raft on basePort + 2i and for HTTP on basePort + 2i + 1. */
  readonly basePort: number;
  readonly chainId?: string;
  /** The genesis time (default: now), and market and ledger parameters over the defaults. */
  readonly genesis?: { readonly timeMs?: number; readonly market?: Partial<MarketParams>; readonly ledger?: Partial<LedgerParams> };
  /** Member i's name and roles (default: box-i, with admin for box 0; neighbour-i, a user, after the boxes). */
  readonly member?: (i: number) => { readonly name: string; readonly roles: readonly RoleName[] };
  /**
   * The boxes are this process's alone (the demo): each runs in its own process group, so a terminal's
   * Ctrl-C reaches only this process, which stops them in order; and each stops by itself once this
   * process is gone, even killed with -9 (`--exit-with-parent`: this process holds its stdin).
   */
  readonly supervised?: boolean;
  /** Every line a box logs (stdout and stderr), as it comes. */
  readonly onLine?: (box: number, line: string) => void;
}

export interface BoxProcess {
  readonly index: number;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  readonly lines: string[]; // the last log lines (bounded)
}

export class LocalCluster {
  readonly signers: NodeSigner[];
  readonly procs = new Map<number, BoxProcess>();

  private constructor(readonly o: LocalClusterOptions) {
    this.signers = [];
  }

  /** Keys, genesis and data directories for a new neighbourhood under o.dir (which must not hold one). */
  static create(o: LocalClusterOptions): LocalCluster {
    const c = new LocalCluster(o);
    mkdirSync(o.dir, { recursive: true });
    const users = o.users ?? 0;
    for (let i = 0; i < o.boxes + users; i++) {
      const s = NodeSigner.generate();
      writeKeyFile(c.keyFile(i), s);
      c.signers.push(s);
    }
    const member = o.member ?? ((i: number) => ({ name: i < o.boxes ? `box-${i}` : `neighbour-${i}`, roles: i === 0 ? ["box", "admin"] : i < o.boxes ? ["box"] : ["user"] }));
    const genesis = parseGenesis({
      chainId: o.chainId ?? "local-neighbourhood",
      genesisTimeMs: o.genesis?.timeMs ?? Date.now(),
      members: c.signers.map((s, i) => ({ ...member(i), publicKey: toHex(s.publicKey) })),
      ...(o.genesis?.market !== undefined && { market: o.genesis.market }),
      ...(o.genesis?.ledger !== undefined && { ledger: o.genesis.ledger }),
    });
    writeFileSync(join(o.dir, "genesis.json"), JSON.stringify(genesis, null, 2) + "\n");
    for (let i = 0; i < o.boxes; i++) Ledger.create(c.dataDir(i), genesis, new NodeVerifier()).close();
    return c;
  }

  keyFile(i: number): string {
    return join(this.o.dir, `member-${i}.key`);
  }

  dataDir(i: number): string {
    return join(this.o.dir, `box-${i}`);
  }

  raftPort(i: number): number {
    return this.o.basePort + 2 * i;
  }

  httpPort(i: number): number {
    return this.o.basePort + 2 * i + 1;
  }

  /** Start box i and resolve once it says it is ready. */
  async start(i: number, extraArgs: readonly string[] = []): Promise<BoxProcess> {
    const args = [MAIN, "start", "--data-dir", this.dataDir(i), "--key", this.keyFile(i), "--raft-listen", `127.0.0.1:${this.raftPort(i)}`, "--http-listen", `127.0.0.1:${this.httpPort(i)}`];
    for (let p = 0; p < this.o.boxes; p++) if (p !== i) args.push("--peer", `${p}=127.0.0.1:${this.raftPort(p)}`);
    const supervised = this.o.supervised === true;
    if (supervised) args.push("--exit-with-parent");
    const child = spawn(process.execPath, [...args, ...extraArgs], { stdio: [supervised ? "pipe" : "ignore", "pipe", "pipe"], detached: supervised });
    const lines: string[] = [];
    const keep = (line: string) => {
      lines.push(line);
      if (lines.length > 200) lines.shift();
      this.o.onLine?.(i, line);
    };
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", keep);
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const proc: BoxProcess = { index: i, child, exited, lines };
    this.procs.set(i, proc);
    await new Promise<void>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
      rl.on("line", (line) => {
        keep(line);
        if (line.includes('"msg":"ready"')) resolve();
      });
      void exited.then((code) => reject(new Error(`box ${i} exited (${code}) before it was ready:\n${lines.slice(-20).join("\n")}`)));
    });
    return proc;
  }

  /** Send a signal (SIGKILL: a power cut) and wait for the process to end. */
  async kill(i: number, signal: NodeJS.Signals = "SIGKILL"): Promise<number | null> {
    const p = this.procs.get(i);
    if (p === undefined) return null;
    p.child.kill(signal);
    const code = await p.exited;
    this.procs.delete(i);
    return code;
  }

  async status(i: number): Promise<NodeStatus | null> {
    try {
      const r = await fetch(`http://127.0.0.1:${this.httpPort(i)}/api/v1/status`, { signal: AbortSignal.timeout(2_000) });
      return r.ok ? ((await r.json()) as NodeStatus) : null;
    } catch {
      return null;
    }
  }

  async statuses(): Promise<Map<number, NodeStatus>> {
    const out = new Map<number, NodeStatus>();
    await Promise.all([...this.procs.keys()].map(async (i) => {
      const s = await this.status(i);
      if (s !== null) out.set(i, s);
    }));
    return out;
  }

  /** The index of the one box that says it leads, if exactly one does. */
  async leader(): Promise<number | null> {
    const leaders = [...(await this.statuses())].filter(([, s]) => s.role === "leader");
    return leaders.length === 1 ? (leaders[0] as [number, NodeStatus])[0] : null;
  }

  async stopAll(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    await Promise.all([...this.procs.keys()].map((i) => this.kill(i, signal)));
  }
}

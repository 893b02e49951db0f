// Ledger benchmark (issue 2): `npm run bench` (builds, then runs
// dist/scripts/bench-ledger.js; `npm run bench -- --quick` for a short run).
// Everything runs in ONE process on ONE core (the main thread), so the ratios
// compare like with like:
//
//   1. codec     encode/decode of signed readings, and their encoded size
//   2. crypto    Ed25519 sign and verify through node:crypto (NodeSigner,
//                NodeVerifier); the bare verify rate is the BASELINE
//   3. apply     decodeBlock + applyBlock with the real verifier on full
//                1-second blocks, interleaved rep by rep with the bare verify
//                rate over the same messages; then the same blocks with an
//                always-true verifier, split into decode, txId hashing, header
//                and Merkle checks, per-transaction rules and the state root
//   4. store     LedgerStore.appendBlock (synchronous=FULL, WAL, a real file)
//                with blocks applied beforehand, untimed; bytes written per
//                reading (WAL frames and checkpoints, Linux /proc/self/io);
//                bytes on disk per reading after a wal_checkpoint(TRUNCATE)
//   5. open      LedgerStore.open (quick_check) and Ledger.open (state reload)
//   6. design    the load of DESIGN.md (60 meters, 60 readings a block) on a
//                store of its own: time and bytes written per small block
//
// The neighbourhood of 1-4: `boxes` boxes, each with `meters` meter channels
// read once a second, so one 1-second block carries boxes x meters readings
// (60 x 120 = 7,200 by default: a full block, as if every box sub-metered a
// block of flats), each signed by its box, with counters that advance as in
// daemon/demo.ts. Every reading in a block is a different meter: the worst
// case for the state tree.
//
// Timing: process.hrtime.bigint; warm-up passes first; the median of several
// repetitions is reported. On a loaded machine the numbers are lower bounds
// (the load average is printed before and after).
import * as nodeCrypto from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, statfsSync } from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { sha256 } from "@noble/hashes/sha2.js";
import Database from "better-sqlite3";
import { type Block, buildBlock, decodeBlock, encodeBlock } from "../ledger/block.js";
import { type Genesis, parseGenesis } from "../ledger/genesis.js";
import { toHex } from "../ledger/hash.js";
import { NodeSigner, NodeVerifier, publicKeyObject } from "../ledger/keys.js";
import { Ledger, ledgerPath } from "../ledger/ledger.js";
import { merkleRoot } from "../ledger/merkle.js";
import { type ApplyResult, type Chain, type LedgerState, ResultCode, applyBlock, checkBlock, genesisState, makeChain } from "../ledger/state.js";
import { LedgerStore } from "../ledger/store.js";
import { Quality, type SignatureVerifier, type SignedTx, decodeTx, encodeUnsignedTx, signTx, signatureOf, txId, txSigningMessage } from "../ledger/tx.js";
import { seededSigner, solarW } from "../sim/profiles.js";
import { type Row, fmtInt, hostInfo, measuredCommit, positiveInt, printTable, readOptions } from "./bench-common.js";
import { Rng } from "../sim/rng.js";

// ---------------------------------------------------------------- options

interface Options {
  readonly quick: boolean;
  readonly boxes: number;
  readonly metersPerBox: number;
  readonly applyBlocks: number; // blocks in one verify+apply pass
  readonly reps: number;
  readonly storeReadings: number;
  readonly dir: string;
  readonly keep: boolean;
  readonly seed: number;
}

const USAGE = `usage: node dist/scripts/bench-ledger.js [options]
  --quick                 short run (~30 s): fewer repetitions, smaller stores
  --boxes N               meter boxes (default 60)
  --meters N              meter channels per box, one reading each per second (default 120)
  --apply-blocks N        blocks per verify+apply pass (default 3; quick 1)
  --reps N                measured repetitions, median reported (default 7; quick 3)
  --store-readings N      readings appended to the store (default 300000; quick 36000)
  --dir PATH              parent directory of the temporary store (default the OS temp dir)
  --keep                  keep the temporary store
  --seed N                seed of keys and readings (default 1)`;

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: "boolean", default: false },
      boxes: { type: "string" },
      meters: { type: "string" },
      "apply-blocks": { type: "string" },
      reps: { type: "string" },
      "store-readings": { type: "string" },
      dir: { type: "string" },
      keep: { type: "boolean", default: false },
      seed: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help === true) return null;
  const quick = values.quick === true;
  const opts: Options = {
    quick,
    boxes: positiveInt(values.boxes, 60, "boxes"),
    metersPerBox: positiveInt(values.meters, 120, "meters"),
    applyBlocks: positiveInt(values["apply-blocks"], quick ? 1 : 3, "apply-blocks"),
    reps: positiveInt(values.reps, quick ? 3 : 7, "reps"),
    storeReadings: positiveInt(values["store-readings"], quick ? 36_000 : 300_000, "store-readings"),
    dir: resolve(values.dir ?? os.tmpdir()),
    keep: values.keep === true,
    seed: positiveInt(values.seed, 1, "seed"),
  };
  if (opts.metersPerBox > 256) throw new Error("--meters: a box has at most 256 meter channels (meterId 0..255)");
  return opts;
}

// ---------------------------------------------------------------- timing

function nowNs(): bigint {
  return process.hrtime.bigint();
}

function timeNs(fn: () => void): number {
  const t0 = nowNs();
  fn();
  return Number(nowNs() - t0);
}

function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error("median of nothing");
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Median time of `reps` runs of fn after `warmups` unmeasured ones. */
function medianNs(reps: number, warmups: number, fn: () => void): number {
  for (let i = 0; i < warmups; i++) fn();
  const samples: number[] = [];
  for (let i = 0; i < reps; i++) samples.push(timeNs(fn));
  return median(samples);
}

interface Rate {
  readonly usPerOp: number;
  readonly opsPerSec: number;
}

function rate(ns: number, ops: number): Rate {
  return { usPerOp: ns / ops / 1000, opsPerSec: (ops * 1e9) / ns };
}

// Results feed a sink so that no measured call can be optimised away.
let sink = 0;

// ---------------------------------------------------------------- the neighbourhood

const START_MS = Date.UTC(2026, 5, 21, 11, 0, 0); // midsummer, late morning: the panels produce
const BLOCK_INTERVAL_MS = 1_000;

/** Signs nothing and checks nothing: for building fixtures and timing everything but verification. */
export const ACCEPT_ALL: SignatureVerifier = { verify: () => true };

interface MeterSim {
  readonly solarPeakW: number;
  readonly baseLoadW: number;
  importMilliWh: number;
  exportMilliWh: number;
}

export interface BuiltBlock {
  readonly block: Block;
  readonly bytes: Uint8Array;
  readonly before: LedgerState;
  readonly applied: ApplyResult; // applied with ACCEPT_ALL (signatures are checked in the apply phase)
}


/** A neighbourhood that produces the chain's next block on demand, like daemon/demo.ts. */
export class Neighbourhood {
  readonly genesis: Genesis;
  readonly chain: Chain;
  readonly signers: readonly NodeSigner[];
  private readonly meters: MeterSim[][];
  private readonly seqs: number[];
  private readonly rng: Rng;
  private state: LedgerState;
  private clockS = 0; // seconds since START_MS of the newest reading

  constructor(
    readonly boxes: number,
    readonly metersPerBox: number,
    seed: number,
  ) {
    this.rng = new Rng(seed);
    this.signers = Array.from({ length: boxes }, () => seededSigner(this.rng));
    this.genesis = parseGenesis({
      chainId: "bench-neighbourhood",
      genesisTimeMs: START_MS,
      members: this.signers.map((s, i) => ({ name: `box-${i + 1}`, publicKey: toHex(s.publicKey), roles: i === 0 ? ["box", "admin"] : ["box"] })),
    });
    const readingsPerBlock = boxes * metersPerBox;
    if (readingsPerBlock > this.genesis.ledger.txsPerBlockMax) {
      throw new Error(`${boxes} boxes x ${metersPerBox} meters = ${readingsPerBlock} readings a block, over txsPerBlockMax ${this.genesis.ledger.txsPerBlockMax}`);
    }
    this.chain = makeChain(this.genesis);
    this.state = genesisState(this.chain);
    this.meters = this.signers.map(() =>
      Array.from({ length: metersPerBox }, (_, m) => ({
        solarPeakW: m % 2 === 0 ? this.rng.int(3_000, 6_000) : 0, // every other meter is a prosumer's
        baseLoadW: this.rng.int(250, 900),
        importMilliWh: this.rng.int(1_000_000, 9_000_000) * 1000,
        exportMilliWh: this.rng.int(0, 2_000_000) * 1000,
      })),
    );
    this.seqs = this.signers.map(() => 0);
  }

  /** One reading per meter channel (the first `meters` of each box), boxes interleaved; each box's sequence still grows. */
  private readings(secondMs: number, meters: number): SignedTx[] {
    const txs: SignedTx[] = [];
    for (let m = 0; m < meters; m++) {
      for (let box = 0; box < this.boxes; box++) {
        const meter = this.meters[box]![m]!;
        const powerW = meter.baseLoadW + this.rng.int(0, 400) - solarW(meter.solarPeakW, secondMs, this.rng);
        if (powerW >= 0) meter.importMilliWh += Math.round((powerW * 1000) / 3600);
        else meter.exportMilliWh += Math.round((-powerW * 1000) / 3600);
        const seq = ++this.seqs[box]!;
        txs.push(
          signTx(
            {
              author: box,
              seq,
              body: {
                type: "reading",
                meterId: m,
                timeMs: secondMs,
                importWh: Math.floor(meter.importMilliWh / 1000),
                exportWh: Math.floor(meter.exportMilliWh / 1000),
                powerW,
                voltagesDeciV: [2300 + this.rng.int(-40, 40), 2300 + this.rng.int(-40, 40), 2300 + this.rng.int(-40, 40)],
                frequencyMilliHz: 50_000 + this.rng.int(-50, 50),
                quality: Quality.good,
              },
            },
            this.signers[box]!,
            this.chain.hash,
          ),
        );
      }
    }
    return txs;
  }

  /**
   * Sign the next `seconds` seconds of readings (of every channel, or of the
   * first `meters` of each box), build and sign the block, and apply it
   * (ACCEPT_ALL) for the next state root. One second is a normal 1-second
   * block; more is a box catching up (readings stay inside the age window).
   */
  next(meters = this.metersPerBox, seconds = 1): BuiltBlock {
    const before = this.state;
    const height = before.height + 1;
    const txs: SignedTx[] = [];
    for (let s = 0; s < seconds; s++) txs.push(...this.readings(START_MS + ++this.clockS * BLOCK_INTERVAL_MS, meters));
    const proposer = (height - 1) % this.boxes;
    const timeMs = START_MS + this.clockS * BLOCK_INTERVAL_MS + 250;
    const block = buildBlock(
      { height, parentHash: before.blockHash, timeMs, stateRoot: before.tree.root, proposer, raftTerm: 1, raftIndex: height, txs },
      this.signers[proposer]!,
      this.chain.hash,
    );
    const applied = applyBlock(before, block, ACCEPT_ALL);
    this.state = applied.state;
    return { block, bytes: encodeBlock(block), before, applied };
  }
}

// ---------------------------------------------------------------- 1 + 2: codec and crypto

interface SignedMessage {
  readonly publicKey: Uint8Array;
  readonly message: Uint8Array;
  readonly signature: Uint8Array;
}

function signedMessages(hood: Neighbourhood, txs: readonly SignedTx[]): SignedMessage[] {
  return txs.map((t) => ({
    publicKey: hood.signers[t.tx.author]!.publicKey,
    message: txSigningMessage(hood.chain.txSignPrefix, t.bytes, true),
    signature: signatureOf(t.bytes),
  }));
}

function verifyAll(verifier: SignatureVerifier, msgs: readonly SignedMessage[]): void {
  let ok = 0;
  for (const m of msgs) if (verifier.verify(m.publicKey, m.message, m.signature)) ok++;
  if (ok !== msgs.length) throw new Error(`bare verify: ${msgs.length - ok} of ${msgs.length} signatures failed`);
  sink += ok;
}

function sizeStats(txs: readonly SignedTx[]): { min: number; median: number; max: number; mean: number } {
  const sizes = txs.map((t) => t.bytes.length);
  return { min: Math.min(...sizes), median: median(sizes), max: Math.max(...sizes), mean: sizes.reduce((a, b) => a + b, 0) / sizes.length };
}

function benchCodec(txs: readonly SignedTx[], reps: number) {
  const n = txs.length;
  const encodeNs = medianNs(reps, 2, () => {
    for (const t of txs) sink += encodeUnsignedTx(t.tx).length;
  });
  const decodeNs = medianNs(reps, 2, () => {
    for (const t of txs) sink += decodeTx(t.bytes).tx.seq;
  });
  const txIdNs = medianNs(reps, 2, () => {
    for (const t of txs) sink += txId(t.bytes)[0]!;
  });
  return { encode: rate(encodeNs, n), decode: rate(decodeNs, n), decodeTxIdShare: rate(txIdNs, n), size: sizeStats(txs) };
}

function benchSign(hood: Neighbourhood, msgs: readonly SignedMessage[], txs: readonly SignedTx[], reps: number) {
  const count = Math.min(msgs.length, 2_000);
  const sample = msgs.slice(0, count);
  const signers = txs.slice(0, count).map((t) => hood.signers[t.tx.author]!);
  const ns = medianNs(reps, 1, () => {
    for (let i = 0; i < count; i++) sink += signers[i]!.sign(sample[i]!.message)[0]!;
  });
  return rate(ns, count);
}

/** node:crypto verify with ready KeyObjects: what NodeVerifier adds on top is its key-cache lookup. */
function benchRawVerify(msgs: readonly SignedMessage[], reps: number): Rate {
  const keys = new Map<Uint8Array, ReturnType<typeof publicKeyObject>>();
  const prepared = msgs.map((m) => {
    let key = keys.get(m.publicKey);
    if (key === undefined) keys.set(m.publicKey, (key = publicKeyObject(m.publicKey)));
    return { key, message: m.message, signature: m.signature };
  });
  const ns = medianNs(reps, 1, () => {
    for (const p of prepared) if (nodeCrypto.verify(null, p.message, p.key, p.signature)) sink++;
  });
  return rate(ns, prepared.length);
}

/**
 * SHA-256 of @noble/hashes (what ledger/hash.ts uses) on a tx-sized and a
 * state-tree-node-sized input, against node:crypto (createHash, and the
 * one-shot crypto.hash of Node >= 20.12) on the node-sized one.
 */
function benchHash(reps: number) {
  const count = 20_000;
  const tx = new Uint8Array(109).fill(7); // tag + a ~108-byte signed reading
  const node = new Uint8Array(65).fill(9); // tag + two child hashes
  const run = (fn: () => Uint8Array) =>
    rate(
      medianNs(reps, 1, () => {
        for (let i = 0; i < count; i++) sink += fn()[0]!;
      }),
      count,
    );
  const oneShot = (nodeCrypto as { hash?: (algorithm: string, data: Uint8Array, encoding: "buffer") => Buffer }).hash;
  return {
    noble109B: run(() => sha256(tx)),
    noble65B: run(() => sha256(node)),
    createHash65B: run(() => nodeCrypto.createHash("sha256").update(node).digest()),
    cryptoHash65B: oneShot === undefined ? null : run(() => oneShot("sha256", node, "buffer")),
  };
}

// ---------------------------------------------------------------- 3: verify + apply

function applyPass(start: LedgerState, encoded: readonly Uint8Array[], verifier: SignatureVerifier): LedgerState {
  let state = start;
  for (const bytes of encoded) state = applyBlock(state, decodeBlock(bytes), verifier).state;
  sink += state.height;
  return state;
}

function checkAllAccepted(start: LedgerState, encoded: readonly Uint8Array[], verifier: SignatureVerifier, expectedRoot: Uint8Array): void {
  let state = start;
  for (const bytes of encoded) {
    const r = applyBlock(state, decodeBlock(bytes), verifier);
    const bad = r.results.filter((c) => c !== ResultCode.ok).length;
    if (bad > 0) throw new Error(`block ${r.state.height}: ${bad} transactions rejected; the fixture is wrong`);
    state = r.state;
  }
  if (toHex(state.tree.root) !== toHex(expectedRoot)) throw new Error("verify+apply reached another state root than the fixture");
}

function benchVerifyApply(built: readonly BuiltBlock[], msgs: readonly SignedMessage[], reps: number) {
  const verifier = new NodeVerifier();
  const start = built[0]!.before;
  const encoded = built.map((b) => b.bytes);
  const readings = built.reduce((n, b) => n + b.block.txs.length, 0);
  checkAllAccepted(start, encoded, verifier, built[built.length - 1]!.applied.state.tree.root);
  // Interleave the two measurements rep by rep (alternating which goes first)
  // so that a change in machine load hits both alike; the ratio is the median
  // of the per-rep ratios.
  const verifyNs: number[] = [];
  const applyNs: number[] = [];
  const ratios: number[] = [];
  const warmups = 1;
  for (let rep = 0; rep < warmups + reps; rep++) {
    let tv = 0;
    let ta = 0;
    if (rep % 2 === 0) {
      tv = timeNs(() => verifyAll(verifier, msgs));
      ta = timeNs(() => applyPass(start, encoded, verifier));
    } else {
      ta = timeNs(() => applyPass(start, encoded, verifier));
      tv = timeNs(() => verifyAll(verifier, msgs));
    }
    if (rep < warmups) continue;
    verifyNs.push(tv);
    applyNs.push(ta);
    ratios.push(tv / msgs.length / (ta / readings));
  }
  return {
    readings,
    bareVerify: rate(median(verifyNs), msgs.length),
    verifyApply: rate(median(applyNs), readings),
    ratio: median(ratios),
  };
}

/** Where the time goes when verification is free: every term per transaction. */
function benchBreakdown(built: readonly BuiltBlock[], reps: number) {
  const n = built.reduce((k, b) => k + b.block.txs.length, 0);
  const decoded = built.map((b) => decodeBlock(b.bytes));
  const perTx = (ns: number) => ns / n / 1000;
  const decodeNs = medianNs(reps, 1, () => {
    for (const b of built) sink += decodeBlock(b.bytes).txs.length;
  });
  const txIdNs = medianNs(reps, 1, () => {
    for (const b of decoded) for (const t of b.txs) sink += txId(t.bytes)[0]!;
  });
  const applyNs = medianNs(reps, 1, () => {
    built.forEach((b, i) => (sink += applyBlock(b.before, decoded[i]!, ACCEPT_ALL).results.length));
  });
  const checkNs = medianNs(reps, 1, () => {
    built.forEach((b, i) => checkBlock(b.before, decoded[i]!, ACCEPT_ALL));
  });
  const merkleNs = medianNs(reps, 1, () => {
    for (const b of decoded) sink += merkleRoot(b.txs.map((t) => t.id))[0]!;
  });
  const treeNs = medianNs(reps, 1, () => {
    for (const b of built) sink += b.before.tree.withUpdates(b.applied.changes).size;
  });
  const rulesNs = Math.max(0, applyNs - checkNs - treeNs);
  const changedKeysPerBlock = median(built.map((b) => b.applied.changes.size));
  return {
    txs: n,
    changedKeysPerBlock,
    usPerTx: {
      decodeBlock: perTx(decodeNs),
      decodeTxIdHashing: perTx(txIdNs),
      decodeParse: perTx(Math.max(0, decodeNs - txIdNs)),
      applyBlockAcceptAll: perTx(applyNs),
      checkBlock: perTx(checkNs),
      checkBlockMerkleRoot: perTx(merkleNs),
      txRules: perTx(rulesNs),
      stateTreeRoot: perTx(treeNs),
      totalNonVerify: perTx(decodeNs + applyNs),
    },
  };
}

// ---------------------------------------------------------------- 4 + 5: store

function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** Bytes this process has passed to write() so far (Linux /proc/self/io "wchar"), or null elsewhere. */
function writtenBytes(): number | null {
  try {
    const match = /^wchar: (\d+)$/m.exec(readFileSync("/proc/self/io", "utf8"));
    return match === null ? null : Number(match[1]);
  } catch {
    return null;
  }
}

function benchStore(hood: Neighbourhood, built: readonly BuiltBlock[], opts: Options, log: (s: string) => void) {
  const dir = mkdtempSync(join(opts.dir, "peergrid-bench-"));
  const path = ledgerPath(dir);
  const readingsPerBlock = hood.boxes * hood.metersPerBox;
  const blockCount = Math.max(4, Math.ceil(opts.storeReadings / readingsPerBlock));
  try {
    const store = LedgerStore.create(path, hood.genesis);
    const blockNs: number[] = [];
    const blockWritten: number[] = []; // bytes written (WAL frames and checkpoint copies) per block
    let payloadBytes = 0;
    let readings = 0;
    for (let i = 0; i < blockCount; i++) {
      const b = i < built.length ? built[i]! : hood.next();
      const written0 = writtenBytes();
      blockNs.push(timeNs(() => store.appendBlock(b.block, b.applied.results, b.applied.state, b.applied.changes)));
      const written1 = writtenBytes();
      if (written0 !== null && written1 !== null) blockWritten.push(written1 - written0);
      readings += b.block.txs.length;
      for (const t of b.block.txs) payloadBytes += t.bytes.length;
      if ((i + 1) % 10 === 0) log(`  store: ${i + 1}/${blockCount} blocks`);
    }
    const beforeCheckpoint = { dbBytes: fileBytes(path), walBytes: fileBytes(`${path}-wal`) };
    // A second connection checkpoints the WAL into the main file, as the
    // brief asks; the store stays open so that nothing else happens on close.
    const side = new Database(path);
    const checkpoint = side.pragma("wal_checkpoint(TRUNCATE)") as { busy: number; log: number; checkpointed: number }[];
    const afterCheckpoint = { dbBytes: fileBytes(path), walBytes: fileBytes(`${path}-wal`) };
    const tables = side.prepare("SELECT name, SUM(pgsize) AS bytes FROM dbstat GROUP BY name ORDER BY bytes DESC").all() as { name: string; bytes: number }[];
    const pageSize = side.pragma("page_size", { simple: true }) as number;
    const freelist = side.pragma("freelist_count", { simple: true }) as number;
    side.close();
    store.close();
    const warm = blockNs.slice(Math.min(2, blockNs.length - 1)); // the first blocks prepare statements and grow the file
    const tenth = Math.max(1, Math.floor(blockNs.length / 10));
    const rateOf = (ns: readonly number[]) => (ns.length * readingsPerBlock * 1e9) / ns.reduce((a, b) => a + b, 0);
    const append = {
      blocks: blockCount,
      readings,
      readingsPerBlock,
      medianBlockMs: median(warm) / 1e6,
      maxBlockMs: Math.max(...blockNs) / 1e6,
      readingsPerSecMedian: (readingsPerBlock * 1e9) / median(warm),
      readingsPerSecOverall: (readings * 1e9) / blockNs.reduce((a, b) => a + b, 0),
      readingsPerSecFirstTenth: rateOf(blockNs.slice(0, tenth)),
      readingsPerSecLastTenth: rateOf(blockNs.slice(-tenth)),
    };
    const perReading = (xs: readonly number[]) => (xs.length === 0 ? null : xs.reduce((p, q) => p + q, 0) / (xs.length * readingsPerBlock));
    const written = {
      bytesPerReading: perReading(blockWritten),
      bytesPerReadingFirstTenth: perReading(blockWritten.slice(0, tenth)),
      bytesPerReadingLastTenth: perReading(blockWritten.slice(-tenth)),
    };
    const disk = {
      beforeCheckpoint,
      afterCheckpoint,
      checkpoint: checkpoint[0] ?? null,
      pageSize,
      freelistPages: freelist,
      bytesPerReading: (afterCheckpoint.dbBytes + afterCheckpoint.walBytes) / readings,
      bytesPerReadingBeforeCheckpoint: (beforeCheckpoint.dbBytes + beforeCheckpoint.walBytes) / readings,
      payloadBytesPerReading: payloadBytes / readings,
      tables: Object.fromEntries(tables.map((t) => [t.name, t.bytes])),
    };
    const open = benchOpen(dir, path, afterCheckpoint.dbBytes, opts);
    return { path, append, written, disk, open };
  } finally {
    if (opts.keep) log(`  store kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The load of DESIGN.md: 60 boxes, one meter each, read once a second, so 60
 * readings a block: what a box writes all day. A store of its own, first
 * filled (catch-up blocks of 120 seconds each) so that its indexes are
 * bigger than one block's worth of pages, then appended block by block:
 * how long each small block takes and how many bytes SQLite writes for it.
 */
function benchDesignLoad(opts: Options, log: (s: string) => void) {
  const fillReadings = opts.quick ? 21_600 : 108_000;
  const blockCount = opts.quick ? 20 : 60;
  const hood = new Neighbourhood(opts.boxes, 1, opts.seed + 1);
  const dir = mkdtempSync(join(opts.dir, "peergrid-bench-design-"));
  const blockNs: number[] = [];
  const written: number[] = [];
  let filled = 0;
  try {
    const store = LedgerStore.create(ledgerPath(dir), hood.genesis);
    try {
      const append = (b: BuiltBlock) => store.appendBlock(b.block, b.applied.results, b.applied.state, b.applied.changes);
      while (filled < fillReadings) {
        const b = hood.next(1, 120);
        append(b);
        filled += b.block.txs.length;
      }
      log(`  design load: store filled with ${filled} readings of ${opts.boxes} meters`);
      for (let i = 0; i < blockCount; i++) {
        const b = hood.next(1, 1);
        const w0 = writtenBytes();
        blockNs.push(timeNs(() => append(b)));
        const w1 = writtenBytes();
        if (w0 !== null && w1 !== null) written.push(w1 - w0);
      }
    } finally {
      store.close();
    }
  } finally {
    if (opts.keep) log(`  design-load store kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
  const warm = blockNs.slice(2);
  const writtenPerBlock = written.length === 0 ? null : median(written.slice(2));
  return {
    filledReadings: filled,
    blocks: blockCount,
    readingsPerBlock: opts.boxes,
    medianBlockMs: median(warm) / 1e6,
    maxBlockMs: Math.max(...blockNs) / 1e6,
    writtenBytesPerBlock: writtenPerBlock,
    writtenBytesPerReading: writtenPerBlock === null ? null : writtenPerBlock / opts.boxes,
  };
}

/** Open cost on a warm page cache (the file was just written): an SD card with a cold cache is slower. */
function benchOpen(dir: string, path: string, dbBytes: number, opts: Options) {
  const reps = Math.max(3, Math.min(opts.reps, 5));
  const openNs = medianNs(reps, 1, () => LedgerStore.open(path).close());
  const openSkipNs = medianNs(reps, 1, () => LedgerStore.open(path, { skipQuickCheck: true }).close());
  const ledgerOpenNs = medianNs(reps, 1, () => Ledger.open(dir, ACCEPT_ALL).close());
  const quickCheckNs = Math.max(1, openNs - openSkipNs);
  const mb = dbBytes / 1e6;
  return {
    fileMB: mb,
    storeOpenMs: openNs / 1e6,
    storeOpenSkipQuickCheckMs: openSkipNs / 1e6,
    quickCheckMs: quickCheckNs / 1e6,
    quickCheckMBps: mb / (quickCheckNs / 1e9),
    storeOpenMBps: mb / (openNs / 1e9),
    ledgerOpenMs: ledgerOpenNs / 1e6,
  };
}

// ---------------------------------------------------------------- machine and report

const FS_TYPES: Record<number, string> = { 0xef53: "ext4", 0x01021994: "tmpfs", 0x794c7630: "overlayfs", 0x58465342: "xfs", 0x9123683e: "btrfs", 0x4d44: "vfat", 0x6969: "nfs" };

function machine(opts: Options) {
  let fsType = "unknown";
  try {
    const t = statfsSync(opts.dir).type;
    fsType = FS_TYPES[t] ?? `0x${t.toString(16)}`;
  } catch {
    // informative only
  }
  const db = new Database(":memory:");
  const sqlite = (db.prepare("SELECT sqlite_version() AS v").get() as { v: string }).v;
  db.close();
  return {
    ...hostInfo(),
    sqlite,
    benchDir: opts.dir,
    benchDirFs: fsType,
    commit: measuredCommit(["ledger"], "(ledger/ has uncommitted changes)"),
  };
}

const fmt = (n: number, digits: number) => n.toFixed(digits);

const verdict = (ok: boolean) => (ok ? "PASS" : "FAIL");

// ---------------------------------------------------------------- main

function main(): void {
  const opts = readOptions(parseOptions, USAGE);
  if (opts === null) return;
  const log = (s: string) => console.error(s);
  const startedNs = nowNs();
  const m = machine(opts);
  console.log(`peergrid ledger benchmark${opts.quick ? " (--quick)" : ""}`);
  console.log(`machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGB} GB, node ${m.node}, OpenSSL ${m.openssl}, SQLite ${m.sqlite}, ${m.platform}`);
  console.log(`store dir: ${m.benchDir} (${m.benchDirFs}); commit ${m.commit}; load average at start ${m.loadAvgStart.join(" ")}`);
  console.log(`blocks: ${opts.boxes} boxes x ${opts.metersPerBox} meters = ${opts.boxes * opts.metersPerBox} signed readings per 1-second block; one core (main thread)`);

  log("building the neighbourhood and its first blocks (signing every reading)…");
  const hood = new Neighbourhood(opts.boxes, opts.metersPerBox, opts.seed);
  const built: BuiltBlock[] = [];
  for (let i = 0; i < opts.applyBlocks; i++) built.push(hood.next());
  const applyTxs = built.flatMap((b) => b.block.txs);
  const firstBlockTxs = built[0]!.block.txs;
  const msgs = signedMessages(hood, applyTxs);

  log("codec, sign, verify, hash…");
  const codec = benchCodec(firstBlockTxs, opts.reps);
  const sign = benchSign(hood, msgs, applyTxs, opts.reps);
  const rawVerify = benchRawVerify(msgs.slice(0, 3_000), opts.reps);
  const hashes = benchHash(opts.reps);
  log("verify + apply (interleaved with bare verify)…");
  const va = benchVerifyApply(built, msgs, opts.reps);
  log("non-verify breakdown (always-true verifier)…");
  const bd = benchBreakdown(built, opts.reps);
  log(`store append (${opts.storeReadings} readings, synchronous=FULL, WAL)…`);
  const store = benchStore(hood, built, opts, log);
  log("design load (60 readings a block)…");
  const dl = benchDesignLoad(opts, log);
  const loadAvgEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const elapsedS = Number(nowNs() - startedNs) / 1e9;

  const u = bd.usPerTx;
  const blockBytesPerReading = built[0]!.bytes.length / firstBlockTxs.length;
  printTable("codec", [
    ["signed reading size (min / median / max)", `${codec.size.min} / ${codec.size.median} / ${codec.size.max} B`, "<= 120 B", verdict(codec.size.max <= 120)],
    ["  in a block (with length prefix, header shared)", `${fmt(blockBytesPerReading, 1)} B`, "", ""],
    ["encode reading (encodeUnsignedTx)", `${fmt(codec.encode.usPerOp, 2)} µs  ${fmtInt(codec.encode.opsPerSec)}/s`, "", ""],
    ["decode reading (decodeTx, incl. txId)", `${fmt(codec.decode.usPerOp, 2)} µs  ${fmtInt(codec.decode.opsPerSec)}/s`, "", ""],
    ["  of which txId (SHA-256, @noble/hashes)", `${fmt(codec.decodeTxIdShare.usPerOp, 2)} µs`, "", ""],
  ]);
  printTable("crypto (node:crypto Ed25519)", [
    ["sign (NodeSigner.sign)", `${fmt(sign.usPerOp, 1)} µs  ${fmtInt(sign.opsPerSec)}/s`, "", ""],
    ["verify, bare (NodeVerifier.verify) BASELINE", `${fmt(va.bareVerify.usPerOp, 1)} µs  ${fmtInt(va.bareVerify.opsPerSec)}/s`, "", ""],
    ["verify, raw crypto.verify with a KeyObject", `${fmt(rawVerify.usPerOp, 1)} µs  ${fmtInt(rawVerify.opsPerSec)}/s`, "", ""],
    ["SHA-256 of 109 B, @noble/hashes", `${fmt(hashes.noble109B.usPerOp, 2)} µs`, "", ""],
    ["SHA-256 of 65 B, @noble/hashes", `${fmt(hashes.noble65B.usPerOp, 2)} µs`, "", ""],
    [
      "  node:crypto createHash / crypto.hash",
      `${fmt(hashes.createHash65B.usPerOp, 2)} / ${hashes.cryptoHash65B === null ? "n/a" : fmt(hashes.cryptoHash65B.usPerOp, 2)} µs`,
      "",
      "",
    ],
  ]);
  printTable(`verify + apply (decodeBlock + applyBlock, ${built.length} x ${firstBlockTxs.length}-reading blocks)`, [
    ["verify + apply", `${fmt(va.verifyApply.usPerOp, 1)} µs  ${fmtInt(va.verifyApply.opsPerSec)} readings/s`, "", ""],
    ["bare verify, same run, same messages", `${fmt(va.bareVerify.usPerOp, 1)} µs  ${fmtInt(va.bareVerify.opsPerSec)} /s`, "", ""],
    ["ratio verify+apply / bare verify", `${fmt(va.ratio * 100, 1)} %`, ">= 80 %", verdict(va.ratio >= 0.8)],
  ]);
  printTable(`where the non-verify time goes (always-true verifier; µs per reading; ${fmtInt(bd.changedKeysPerBlock)} state keys changed per block)`, [
    ["decodeBlock", fmt(u.decodeBlock, 2), "", ""],
    ["  txId hashing (SHA-256 of each tx)", fmt(u.decodeTxIdHashing, 2), "", ""],
    ["  parsing and copying", fmt(u.decodeParse, 2), "", ""],
    ["applyBlock", fmt(u.applyBlockAcceptAll, 2), "", ""],
    ["  checkBlock (header, sizes, tx Merkle root)", fmt(u.checkBlock, 2), "", ""],
    ["    of which the tx Merkle root", fmt(u.checkBlockMerkleRoot, 2), "", ""],
    ["  per-tx rules, signing message, overlay (remainder)", fmt(u.txRules, 2), "", ""],
    ["  state tree update and root (withUpdates)", fmt(u.stateTreeRoot, 2), "", ""],
    ["total non-verify overhead", fmt(u.totalNonVerify, 2), "", ""],
    ["  ratio it allows: verify / (verify + overhead)", `${fmt((100 * va.bareVerify.usPerOp) / (va.bareVerify.usPerOp + u.totalNonVerify), 1)} %`, "", ""],
  ]);
  const a = store.append;
  const d = store.disk;
  const o = store.open;
  const w = store.written;
  printTable(`store (LedgerStore.appendBlock, ${a.blocks} blocks, ${fmtInt(a.readings)} readings, ${m.benchDirFs})`, [
    ["append, median block", `${fmt(a.medianBlockMs, 1)} ms  ${fmtInt(a.readingsPerSecMedian)} readings/s`, ">= 20,000/s", verdict(a.readingsPerSecMedian >= 20_000)],
    ["append, all blocks", `${fmtInt(a.readingsPerSecOverall)} readings/s`, "", ""],
    ["append, first tenth / last tenth of blocks", `${fmtInt(a.readingsPerSecFirstTenth)} / ${fmtInt(a.readingsPerSecLastTenth)} /s`, "", ""],
    ["slowest block append", `${fmt(a.maxBlockMs, 1)} ms`, "< 1000 ms", verdict(a.maxBlockMs < 1000)],
    ...(w.bytesPerReading === null
      ? []
      : ([
          ["bytes written per reading (WAL + checkpoints)", `${fmt(w.bytesPerReading, 0)} B`, "", ""],
          ["  first tenth / last tenth of blocks", `${fmt(w.bytesPerReadingFirstTenth ?? 0, 0)} / ${fmt(w.bytesPerReadingLastTenth ?? 0, 0)} B`, "", ""],
        ] as Row[])),
    ["bytes on disk per reading (after checkpoint)", `${fmt(d.bytesPerReading, 1)} B`, "", ""],
    ["  before checkpoint (file + WAL)", `${fmt(d.bytesPerReadingBeforeCheckpoint, 1)} B`, "", ""],
    ["  raw signed reading, for comparison", `${fmt(d.payloadBytesPerReading, 1)} B`, "", ""],
    ...Object.entries(d.tables).slice(0, 6).map(([name, bytes]): Row => [`  ${name}`, `${fmt(bytes / a.readings, 1)} B`, "", ""]),
  ]);
  printTable(`open (the ${fmt(o.fileMB, 1)} MB store above, warm page cache)`, [
    ["LedgerStore.open (quick_check)", `${fmt(o.storeOpenMs, 1)} ms  ${fmt(o.storeOpenMBps, 0)} MB/s`, "", ""],
    ["  of which quick_check", `${fmt(o.quickCheckMs, 1)} ms  ${fmt(o.quickCheckMBps, 0)} MB/s`, "", ""],
    ["Ledger.open (store open + state reload)", `${fmt(o.ledgerOpenMs, 1)} ms`, "", ""],
  ]);
  printTable(`design load (${dl.readingsPerBlock} readings a block, store holding ${fmtInt(dl.filledReadings)} readings)`, [
    ["append, median block / slowest", `${fmt(dl.medianBlockMs, 1)} / ${fmt(dl.maxBlockMs, 1)} ms`, "", ""],
    ...(dl.writtenBytesPerBlock === null
      ? []
      : ([["bytes written per block / per reading", `${fmtInt(dl.writtenBytesPerBlock)} / ${fmtInt(dl.writtenBytesPerReading ?? 0)} B`, "", ""]] as Row[])),
  ]);
  console.log(`\nload average at end ${loadAvgEnd.join(" ")}; ${fmt(elapsedS, 0)} s; sink ${sink % 10}`);
  const json = {
    bench: "peergrid-ledger",
    version: 1,
    machine: { ...m, loadAvgEnd },
    options: { quick: opts.quick, boxes: opts.boxes, metersPerBox: opts.metersPerBox, applyBlocks: opts.applyBlocks, reps: opts.reps, storeReadings: opts.storeReadings, seed: opts.seed },
    codec: { ...codec, blockBytesPerReading },
    crypto: { sign, bareVerify: va.bareVerify, rawVerify, sha256: hashes },
    verifyApply: va,
    breakdown: bd,
    store: { append: a, written: w, disk: d, open: o },
    designLoad: dl,
    targets: {
      readingBytesMax120: codec.size.max <= 120,
      verifyApplyRatioMin80: va.ratio >= 0.8,
      storeAppendMin20k: a.readingsPerSecMedian >= 20_000,
    },
    elapsedS,
  };
  console.log(JSON.stringify(json));
}

// Run only as a program, so that a profiler harness can import the fixtures.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) main();

// Fuzzing the decoders and the state machine with hostile bytes.
//
// For every input: decodeTx returns or throws DecodeError (nothing else); a
// decoded transaction whose bytes are not one of the valid originals must not
// be accepted when applied (its signature cannot verify); applyBlock throws
// nothing but BlockRejectedError. Mutated encoded blocks decode or throw
// DecodeError, and a decoded mutant block is never applied.
//
// Seeded: the seed is printed; PEERGRID_FUZZ_SEED=<n> replays a run.
import assert from "node:assert/strict";
import { test } from "node:test";
import { type Block, buildBlock, decodeBlock, encodeBlock } from "../../ledger/block.js";
import { BlockRejectedError, DecodeError } from "../../ledger/errors.js";
import { hash, toHex, utf8 } from "../../ledger/hash.js";
import { NodeVerifier } from "../../ledger/keys.js";
import { type LedgerState, ResultCode, applyBlock, genesisState, makeChain, resultName } from "../../ledger/state.js";
import { parseGenesis } from "../../ledger/genesis.js";
import { type SignedTx, type Tx, OrderFlag, Quality, Role, decodeTx, signTx } from "../../ledger/tx.js";
import { INTERVAL_MS, Rng, T0, type TestMember, genesisJson, keyFor, order, reading } from "./fixtures.js";

const DEFAULT_SEED = 0x5eed2026;
const TX_INPUTS = 100_000;
const BLOCK_INPUTS = 5_000;
const BATCH_TXS = 2_500; // decoded mutants per block: one header check per batch

function seedFromEnv(): number {
  const text = process.env.PEERGRID_FUZZ_SEED;
  if (text === undefined || text === "") return DEFAULT_SEED;
  const seed = Number(text);
  assert.ok(Number.isSafeInteger(seed) && seed >= 0, `PEERGRID_FUZZ_SEED must be a non-negative integer, got ${text}`);
  return seed >>> 0;
}

// The neighbourhood: keys are fixed so a seed replays exactly.
const MEMBERS: TestMember[] = [
  { name: "box A", signer: keyFor("fuzz-box-a"), roles: ["box", "admin"] },
  { name: "Ann", signer: keyFor("fuzz-ann"), roles: ["user"] },
  { name: "box B", signer: keyFor("fuzz-box-b"), roles: ["box", "user"] },
];
const genesis = parseGenesis(genesisJson(MEMBERS, { ledger: { txsPerBlockMax: 100_000, blockBytesMax: 16 * 1024 * 1024 } }));
const chain = makeChain(genesis);
const s0: LedgerState = genesisState(chain);
const BLOCK_TIME = T0 + 1_000;
const NEXT_INTERVAL = BLOCK_TIME - (BLOCK_TIME % INTERVAL_MS) + INTERVAL_MS;

function sign(tx: Tx): SignedTx {
  return signTx(tx, (MEMBERS[tx.author] as TestMember).signer, chain.hash);
}

/** Valid signed transactions of every type and shape, as mutation seeds. */
function originals(): SignedTx[] {
  const t = BLOCK_TIME - 300;
  const interval = { intervalStartMs: NEXT_INTERVAL, expiresAtMs: NEXT_INTERVAL + INTERVAL_MS };
  return [
    sign({ author: 0, seq: 1, body: reading(t, 48_211_337, 1_290_455, { powerW: -3_250 }) }),
    sign({ author: 0, seq: 128, body: reading(t, 5, 0, { meterId: 1, voltagesDeciV: [2304], quality: Quality.estimated }) }),
    sign({ author: 2, seq: 1_000, body: reading(t, 2 ** 40, 2 ** 33, { meterId: 255, powerW: 2 ** 31 - 1, frequencyMilliHz: 100_000 }) }),
    sign({ author: 1, seq: 1, body: order({ ...interval }) }),
    sign({ author: 1, seq: 2, body: order({ ...interval, side: "sell", counterparty: 2, flags: OrderFlag.localRenewableOnly }) }),
    sign({ author: 2, seq: 1_001, body: order({ ...interval, side: "sell", energyWh: 1_000_000, priceMicroPerKWh: 2_000_000 }) }),
    sign({ author: 2, seq: 1_002, body: order({ ...interval, counterparty: 0 }) }),
    sign({ author: 1, seq: 3, body: { type: "cancel", orderId: hash(utf8("an order")) } }),
    sign({ author: 0, seq: 129, body: { type: "member", action: "enrol", publicKey: keyFor("fuzz-new").publicKey, roles: Role.user | Role.box, name: "new box ⚡" } }),
    sign({ author: 0, seq: 130, body: { type: "member", action: "remove", subject: 1 } }),
    sign({ author: 0, seq: 131, body: { type: "member", action: "setRoles", subject: 2, roles: Role.box | Role.controller } }),
  ];
}

const INTERESTING = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x3f, 0x40, 0x7f, 0x80, 0x81, 0xfe, 0xff];

function mutateOnce(rng: Rng, input: Uint8Array, pool: readonly Uint8Array[]): Uint8Array {
  const n = input.length;
  const at = rng.int(n + 1);
  // Weighted: flips and replacements keep the length, so they often still decode
  // and reach the signature check; the others mostly test the decoder.
  switch (rng.pick([0, 0, 0, 1, 1, 1, 2, 3, 4, 5, 6])) {
    case 0: {
      // bit flip
      if (n === 0) return input;
      const out = input.slice();
      const i = rng.int(n);
      out[i] = (out[i] as number) ^ (1 << rng.int(8));
      return out;
    }
    case 1: {
      // byte replacement, often with a boundary value
      if (n === 0) return input;
      const out = input.slice();
      out[rng.int(n)] = rng.int(2) === 0 ? rng.pick(INTERESTING) : rng.int(256);
      return out;
    }
    case 2: {
      // insertion of 1..4 bytes
      const extra = rng.bytes(rng.range(1, 4));
      return concat(input.subarray(0, at), extra, input.subarray(at));
    }
    case 3: {
      // deletion of 1..4 bytes
      return concat(input.subarray(0, at), input.subarray(Math.min(n, at + rng.range(1, 4))));
    }
    case 4:
      // truncation
      return input.slice(0, rng.int(n + 1));
    case 5: {
      // duplication of a segment somewhere else
      const a = rng.int(n + 1);
      const b = Math.min(n, a + rng.range(1, 16));
      const where = rng.int(n + 1);
      return concat(input.subarray(0, where), input.subarray(a, b), input.subarray(where));
    }
    default: {
      // splice: the head of this input and the tail of another valid encoding
      const other = rng.pick(pool);
      return concat(input.subarray(0, at), other.subarray(rng.int(other.length + 1)));
    }
  }
}

function mutate(rng: Rng, input: Uint8Array, pool: readonly Uint8Array[]): Uint8Array {
  let out = input;
  const rounds = rng.pick([1, 1, 1, 1, 1, 1, 2, 2, 2, 3]);
  for (let i = 0; i < rounds; i++) out = mutateOnce(rng, out, pool);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function batchBlock(txs: readonly SignedTx[]): Block {
  return buildBlock(
    { height: 1, parentHash: s0.blockHash, timeMs: BLOCK_TIME, stateRoot: s0.tree.root, proposer: 0, raftTerm: 1, raftIndex: 1, txs },
    (MEMBERS[0] as TestMember).signer,
    chain.hash,
  );
}

test("fuzz: hostile transactions and blocks", () => {
  const seed = seedFromEnv();
  console.log(`fuzz seed ${seed} (replay with PEERGRID_FUZZ_SEED=${seed})`);
  const started = performance.now();
  const rng = new Rng(seed);
  const verifier = new NodeVerifier();
  const valid = originals();
  const validHex = new Set(valid.map((t) => toHex(t.bytes)));
  const pool = valid.map((t) => t.bytes);

  // The originals themselves are accepted (but the cancel, whose order does not exist),
  // so a rejection below is the mutation's doing.
  assert.deepEqual(
    applyBlock(s0, batchBlock(valid), verifier).results.map(resultName),
    valid.map((t) => (t.tx.body.type === "cancel" ? "orderNotFound" : "ok")),
  );

  const stats = { random: 0, mutants: 0, decoded: 0, applied: 0, verdicts: new Map<string, number>(), reasons: new Map<string, number>() };
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  let pending: { tx: SignedTx; input: string; i: number }[] = [];

  const flush = (): void => {
    if (pending.length === 0) return;
    const block = batchBlock(pending.map((p) => p.tx));
    let results: readonly ResultCode[];
    try {
      results = applyBlock(s0, block, verifier).results;
    } catch (err) {
      assert.ok(err instanceof BlockRejectedError, `applyBlock threw ${String(err)} (seed ${seed})`);
      assert.fail(`a well-formed batch block was rejected: ${err.message} (seed ${seed})`);
    }
    results.forEach((code, k) => {
      const p = pending[k] as (typeof pending)[number];
      bump(stats.verdicts, resultName(code));
      assert.notEqual(code, ResultCode.ok, `mutated tx accepted (seed ${seed}, input ${p.i}): ${p.input}`);
    });
    stats.applied += pending.length;
    pending = [];
  };

  for (let i = 0; i < TX_INPUTS; i++) {
    let input: Uint8Array;
    const kind = rng.int(10);
    if (kind < 2) {
      input = rng.bytes(rng.int(251)); // pure noise, 0..250 bytes
      stats.random++;
    } else if (kind < 3) {
      input = concat(Uint8Array.of(1, rng.range(1, 4)), rng.bytes(rng.range(60, 140))); // noise behind a plausible envelope
      stats.random++;
    } else {
      input = mutate(rng, rng.pick(pool), pool);
      stats.mutants++;
    }
    let decoded: SignedTx;
    try {
      decoded = decodeTx(input);
    } catch (err) {
      if (!(err instanceof DecodeError)) assert.fail(`decodeTx threw ${String(err)} (seed ${seed}, input ${i}): ${toHex(input)}`);
      bump(stats.reasons, err.reason);
      continue;
    }
    stats.decoded++;
    assert.deepEqual(decoded.bytes, input, "a decoded tx keeps its exact bytes");
    if (validHex.has(toHex(decoded.bytes))) continue; // unchanged after all (e.g. a flip undone)
    pending.push({ tx: decoded, input: toHex(input), i });
    if (pending.length >= BATCH_TXS) flush();
  }
  flush();

  // Blocks: mutants of encoded valid blocks, and noise.
  const blocks = [batchBlock([]), batchBlock(valid.slice(0, 1)), batchBlock(valid.slice(3, 8)), batchBlock(valid)];
  const blockBytes = blocks.map(encodeBlock);
  const blockHex = new Set(blockBytes.map(toHex));
  const blockStats = { decoded: 0, rejected: 0 };
  for (let i = 0; i < BLOCK_INPUTS; i++) {
    const input = i % 10 === 0 ? rng.bytes(rng.int(400)) : mutate(rng, rng.pick(blockBytes), blockBytes);
    let block: Block;
    try {
      block = decodeBlock(input);
    } catch (err) {
      if (!(err instanceof DecodeError)) assert.fail(`decodeBlock threw ${String(err)} (seed ${seed}, block input ${i}): ${toHex(input)}`);
      continue;
    }
    blockStats.decoded++;
    assert.deepEqual(encodeBlock(block), input, "a decoded block re-encodes to its bytes");
    if (blockHex.has(toHex(input))) continue;
    assert.throws(
      () => applyBlock(s0, block, verifier),
      (err: unknown) => err instanceof BlockRejectedError,
      `a mutated block was applied or threw something else (seed ${seed}, block input ${i}): ${toHex(input)}`,
    );
    blockStats.rejected++;
  }

  const elapsedMs = Math.round(performance.now() - started);
  console.log(
    `fuzz: ${TX_INPUTS} tx inputs (${stats.random} noise, ${stats.mutants} mutants), ${stats.decoded} decoded, ` +
      `${stats.applied} applied in ${Math.ceil(stats.applied / BATCH_TXS)} blocks, ${verifier.count} signatures verified`,
  );
  console.log(`fuzz: verdicts ${JSON.stringify(Object.fromEntries(stats.verdicts))}`);
  console.log(`fuzz: decode refusals ${JSON.stringify(Object.fromEntries(stats.reasons))}`);
  console.log(`fuzz: ${BLOCK_INPUTS} block inputs, ${blockStats.decoded} decoded, ${blockStats.rejected} mutants rejected by applyBlock`);
  console.log(`fuzz: ${elapsedMs} ms`);

  // The fuzzer must actually reach the deep paths, or it proves nothing.
  assert.ok(stats.applied >= 10_000, `only ${stats.applied} mutants decoded into a block`);
  assert.ok((stats.verdicts.get("badSignature") ?? 0) >= 5_000, "signature checks were reached");
  assert.ok(blockStats.rejected >= 500, `only ${blockStats.rejected} mutant blocks decoded`);
});

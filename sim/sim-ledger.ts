// The ledger side of the Raft fault simulation (sim/raft-sim.ts, block mode):
// a genesis with one box member per simulated node and a few users, a cheap
// stand-in signature scheme, and generators of signed readings and orders.
//
// The stand-in signer: 64 bytes mixed from the public key and the message
// (simSignature), and the verifier recomputes them. It is NOT a signature
// (anyone who knows the public key can make one); it only stands in for
// Ed25519, which at ~50 µs a signature and ~100 µs a verification per
// transaction and block on every node would make the hundreds of seeds of CI
// (and `peergrid sim`'s day of a neighbourhood) far too slow. Everything else (encodings, hashes, Merkle roots, the state
// machine, signature checks failing on a wrong key or message) is the real
// ledger code.
import { createHash } from "node:crypto";
import { bytesEqual } from "../ledger/assert.js";
import { parseGenesis } from "../ledger/genesis.js";
import { toHex, utf8 } from "../ledger/hash.js";
import { memberKey } from "../ledger/records.js";
import { type Chain, type LedgerState, genesisState, makeChain } from "../ledger/state.js";
import { type SignatureVerifier, type SignedTx, type Signer, type Tx, signTx } from "../ledger/tx.js";

/**
 * 64 bytes that depend on every byte of the key and the message: two 32-bit mixes (FNV and murmur
 * multipliers) over key | message four bytes at a time, stretched by xorshift. Well under a
 * microsecond for a reading; a wrong key or message gives other bytes, so a check against the wrong
 * key fails. Not a signature: anyone who knows the public key can make one.
 */
function simSignature(publicKey: Uint8Array, message: Uint8Array): Uint8Array {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  const mix = (x: number) => {
    a = Math.imul(a ^ x, 0x01000193);
    b = Math.imul(b ^ x, 0x5bd1e995);
    b ^= b >>> 15;
  };
  const words = (bytes: Uint8Array) => {
    const n = bytes.length;
    let i = 0;
    for (; i + 4 <= n; i += 4) mix((bytes[i] as number) | ((bytes[i + 1] as number) << 8) | ((bytes[i + 2] as number) << 16) | ((bytes[i + 3] as number) << 24));
    for (; i < n; i++) mix(bytes[i] as number);
    mix(n | 0x40000000); // the length, so key | message boundaries cannot move
  };
  words(publicKey);
  words(message);
  a ^= a >>> 16;
  b ^= b >>> 13;
  const sig = new Uint8Array(64);
  let x = (a ^ Math.imul(b, 0x85ebca6b)) >>> 0 || 1;
  let y = (b ^ Math.imul(a, 0xc2b2ae35)) >>> 0 || 1;
  for (let i = 0; i < 64; i += 8) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    y ^= y << 13;
    y ^= y >>> 17;
    y ^= y << 5;
    for (let k = 0; k < 4; k++) {
      sig[i + k] = (x >>> (8 * k)) & 0xff;
      sig[i + 4 + k] = (y >>> (8 * k)) & 0xff;
    }
  }
  return sig;
}

export class SimSigner implements Signer {
  constructor(readonly publicKey: Uint8Array) {}
  sign(message: Uint8Array): Uint8Array {
    return simSignature(this.publicKey, message);
  }
}

export const simVerifier: SignatureVerifier = {
  verify: (publicKey, message, signature) => signature.length === 64 && bytesEqual(simSignature(publicKey, message), signature),
};

/** Genesis time of the simulated chain: simulated time 0. */
export const SIM_GENESIS_MS = 1_700_000_000_000;
export const SIM_USERS = 3;
export const SIM_READING_BOXES = 2; // boxes (members 0 and 1) that also submit meter readings

export interface SimChain {
  readonly chain: Chain;
  readonly genesis: LedgerState;
  readonly signers: readonly SimSigner[]; // by member index
  readonly boxes: number; // members 0..boxes-1 are the boxes (node id = member index + 1)
}

const chains = new Map<number, SimChain>();

/** The chain for `boxes` nodes (cached: it depends on nothing else, so replays are unaffected). */
export function simChain(boxes: number): SimChain {
  const cached = chains.get(boxes);
  if (cached !== undefined) return cached;
  const signers: SimSigner[] = [];
  const members = [];
  for (let i = 0; i < boxes + SIM_USERS; i++) {
    const key = createHash("sha256").update(utf8(`peergrid-sim-member-${i}`)).digest();
    signers.push(new SimSigner(new Uint8Array(key)));
    const box = i < boxes;
    members.push({ name: box ? `box${i + 1}` : `user${i - boxes + 1}`, publicKey: toHex(key), roles: box ? (i === 0 ? ["box", "admin"] : ["box"]) : ["user"] });
  }
  const genesis = parseGenesis({
    chainId: "peergrid-sim",
    genesisTimeMs: SIM_GENESIS_MS,
    members,
    market: { openOrdersPerMemberMax: 10_000 },
    ledger: { blockIntervalMs: 1_000 },
  });
  const chain = makeChain(genesis);
  const sc: SimChain = { chain, genesis: genesisState(chain), signers, boxes };
  chains.set(boxes, sc);
  return sc;
}

export function lastSeqOf(state: LedgerState, author: number): number {
  const rec = state.tree.get(memberKey(author));
  return rec !== undefined && rec.kind === "member" ? rec.lastSeq : 0;
}

/** Makes the simulated clients' transactions: readings from two boxes, orders from the users, each author's seq counting up. */
export class TxFactory {
  private readonly seqs = new Map<number, number>();
  private readonly meterWh = new Map<number, number>();
  constructor(private readonly sc: SimChain) {}

  /** A signed transaction at simulated time nowMs; `pick` in [0, 1) chooses the author. */
  make(nowMs: number, pick: number): SignedTx {
    const authors = SIM_READING_BOXES + SIM_USERS;
    const k = Math.min(authors - 1, Math.floor(pick * authors));
    const author = k < SIM_READING_BOXES ? k : this.sc.boxes + (k - SIM_READING_BOXES);
    const seq = (this.seqs.get(author) ?? 0) + 1;
    this.seqs.set(author, seq);
    const t = SIM_GENESIS_MS + nowMs;
    let tx: Tx;
    if (k < SIM_READING_BOXES) {
      const wh = (this.meterWh.get(author) ?? 0) + 1 + (seq % 7);
      this.meterWh.set(author, wh);
      tx = {
        author,
        seq,
        body: { type: "reading", meterId: 0, timeMs: t + seq, importWh: wh, exportWh: 0, powerW: 500, voltagesDeciV: [2300], frequencyMilliHz: 50_000, quality: 0 },
      };
    } else {
      const interval = this.sc.chain.genesis.market.intervalMs;
      tx = {
        author,
        seq,
        body: {
          type: "order",
          side: seq % 2 === 0 ? "buy" : "sell",
          energyWh: 100 + seq,
          priceMicroPerKWh: 100_000 + (seq % 13) * 1_000,
          intervalStartMs: t - (t % interval) + 2 * interval,
          expiresAtMs: t + 3_600_000,
          flags: 0,
          counterparty: null,
        },
      };
    }
    return signTx(tx, this.sc.signers[author] as SimSigner, this.sc.chain.hash);
  }
}

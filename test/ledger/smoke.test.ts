import { test } from "node:test";
import assert from "node:assert/strict";
import { NodeSigner, NodeVerifier } from "../../ledger/keys.js";
import { parseGenesis } from "../../ledger/genesis.js";
import { makeChain, genesisState, applyBlock, ResultCode } from "../../ledger/state.js";
import { signTx, decodeTx } from "../../ledger/tx.js";
import { buildBlock, decodeBlock, encodeBlock } from "../../ledger/block.js";
import { toHex } from "../../ledger/hash.js";

test("smoke: genesis, readings, block, apply", () => {
  const box = NodeSigner.generate();
  const genesis = parseGenesis({ chainId: "t", genesisTimeMs: 1_700_000_000_000, members: [{ name: "b", publicKey: toHex(box.publicKey), roles: ["box", "admin"] }] });
  const chain = makeChain(genesis);
  const s0 = genesisState(chain);
  const t0 = 1_700_000_001_000;
  const tx = signTx({ author: 0, seq: 1, body: { type: "reading", meterId: 0, timeMs: t0, importWh: 123456, exportWh: 7890, powerW: -1500, voltagesDeciV: [2301, 2299, 2310], frequencyMilliHz: 50010, quality: 0 } }, box, chain.hash);
  console.log("reading bytes", tx.bytes.length);
  assert.deepEqual(decodeTx(tx.bytes).tx, tx.tx);
  const block = buildBlock({ height: 1, parentHash: s0.blockHash, timeMs: t0 + 500, stateRoot: s0.tree.root, proposer: 0, raftTerm: 1, raftIndex: 1, txs: [tx] }, box, chain.hash);
  const decoded = decodeBlock(encodeBlock(block));
  const { state, results } = applyBlock(s0, decoded, new NodeVerifier());
  assert.deepEqual(results, [ResultCode.ok]);
  assert.equal(state.height, 1);
  assert.notEqual(toHex(state.tree.root), toHex(s0.tree.root));
});

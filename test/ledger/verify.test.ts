// The auditor's check, against a real chain in SQLite: a good chain passes
// with the right counts, and each kind of tampering with the file is found at
// the right block with the right code. Then the `peergrid` CLI end to end.
//
// One template chain is built once; every test tampers with its own copy in
// its own temp dir.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { type Block, blockHash, decodeHeader, encodeHeader } from "../../ledger/block.js";
import { parseGenesis } from "../../ledger/genesis.js";
import { toHex } from "../../ledger/hash.js";
import { readKeyFile } from "../../ledger/keys.js";
import { Ledger, ledgerPath } from "../../ledger/ledger.js";
import { type MeterRecord, decodeRecord, encodeRecord } from "../../ledger/records.js";
import { ResultCode } from "../../ledger/state.js";
import { LedgerStore } from "../../ledger/store.js";
import { type SignedTx, signTx } from "../../ledger/tx.js";
import { type VerifyReport, verifyChain } from "../../ledger/verify.js";
import { type Fixture, blockTimeMs, makeFixture, nextBlock, readingFor, tempDir } from "../helpers/chain-fixture.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const CLI = join(ROOT, "bin", "peergrid.js");
const HEAD = 6;
const REJECTED_AT = { height: 3, index: 0 }; // a replayed reading, rejected as stale

const fx: Fixture = makeFixture({ boxes: 4 });
let templateDir = "";
let blocks: Block[] = []; // blocks[h - 1] is block h
let finalRoot = "";
let stateRecords = 0;

before(() => {
  templateDir = mkdtempSync(join(tmpdir(), "peergrid-verify-template-"));
  const ledger = Ledger.create(templateDir, fx.genesis, fx.verifier);
  for (let h = 1; h <= HEAD; h++) {
    let block = nextBlock(ledger, fx, { readings: 20 + h });
    if (h === REJECTED_AT.height) {
      const replay = blocks[0]?.txs[4] as SignedTx;
      block = ledger.propose([replay, ...block.txs], fx.signers[h % fx.boxes]!, h % fx.boxes, blockTimeMs(h), 1, h);
    }
    const { results } = ledger.append(block);
    assert.deepEqual(
      results.map((r, i) => (h === REJECTED_AT.height && i === REJECTED_AT.index ? r === ResultCode.staleSequence : r === ResultCode.ok)),
      results.map(() => true),
    );
    blocks.push(block);
  }
  finalRoot = toHex(ledger.state.tree.root);
  stateRecords = [...ledger.state.tree.entries()].length;
  ledger.close(); // checkpoints: the template is one self-contained file
  assert.equal(existsSync(`${ledgerPath(templateDir)}-wal`), false);
});

after(() => rmSync(templateDir, { recursive: true, force: true }));

/** A copy of the template chain in a fresh data dir, tampered with by `sql` (or a function). */
function tamperedCopy(t: { after(fn: () => void): void }, tamper: ((db: Database.Database) => void) | null): string {
  const dir = tempDir(t, "verify");
  copyFileSync(ledgerPath(templateDir), ledgerPath(dir));
  if (tamper !== null) {
    const db = new Database(ledgerPath(dir));
    try {
      tamper(db);
    } finally {
      db.close();
    }
  }
  return dir;
}

function verifyDir(dir: string): VerifyReport {
  const store = LedgerStore.open(ledgerPath(dir), { readonly: true });
  try {
    return verifyChain(store, fx.verifier);
  } finally {
    store.close();
  }
}

function txRowid(db: Database.Database, height: number, index: number): number {
  const row = db.prepare("SELECT first_tx FROM blocks WHERE height = ?").get(height) as { first_tx: number };
  return row.first_tx + index;
}

function updateTxRaw(db: Database.Database, height: number, index: number, edit: (raw: Uint8Array) => void): void {
  const rowid = txRowid(db, height, index);
  const raw = new Uint8Array((db.prepare("SELECT raw FROM txs WHERE rowid = ?").get(rowid) as { raw: Buffer }).raw);
  edit(raw);
  assert.equal(db.prepare("UPDATE txs SET raw = ? WHERE rowid = ?").run(Buffer.from(raw), rowid).changes, 1);
}

function updateHeader(db: Database.Database, height: number, edit: (header: Uint8Array) => Uint8Array, rehash = false): void {
  const row = db.prepare("SELECT header FROM blocks WHERE height = ?").get(height) as { header: Buffer };
  const header = edit(new Uint8Array(row.header));
  db.prepare("UPDATE blocks SET header = ? WHERE height = ?").run(Buffer.from(header), height);
  if (rehash) db.prepare("UPDATE blocks SET hash = ? WHERE height = ?").run(Buffer.from(blockHash(decodeHeader(header).header)), height);
}

function expectFault(report: VerifyReport, height: number, code: string, txIndex: number | null = null): void {
  assert.equal(report.ok, false, `expected ${code} at block ${height}, the chain verified`);
  assert.ok(report.fault !== null);
  assert.deepEqual({ height: report.fault.height, code: report.fault.code, txIndex: report.fault.txIndex }, { height, code, txIndex }, report.fault.message);
  assert.equal(report.blocks, height, "every block before the fault was checked, none after");
}

describe("verifyChain on a good chain", () => {
  test("ok, with the counts of blocks, transactions by type, rejections, head and state", (t) => {
    const dir = tamperedCopy(t, null);
    const seen: number[] = [];
    const store = LedgerStore.open(ledgerPath(dir), { readonly: true });
    t.after(() => store.close());
    const report = verifyChain(store, fx.verifier, (h, head) => {
      assert.equal(head, HEAD);
      seen.push(h);
    });
    assert.equal(report.ok, true, report.fault?.message);
    assert.equal(report.fault, null);
    assert.equal(report.blocks, HEAD + 1);
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6]);
    const all = blocks.flatMap((b) => b.txs);
    assert.equal(report.transactions, all.length);
    const byType: Record<string, number> = {};
    for (const x of all) byType[x.tx.body.type] = (byType[x.tx.body.type] ?? 0) + 1;
    assert.deepEqual(report.byType, byType);
    assert.equal(byType.reading, 21 + 22 + 23 + 24 + 25 + 26 + 1);
    assert.equal(byType.cancel, 2 * (HEAD - 1));
    assert.deepEqual(report.rejected, { staleSequence: 1 });
    assert.equal(report.headHeight, HEAD);
    assert.equal(report.headHash, toHex(blocks[HEAD - 1]!.hash));
    assert.equal(report.stateRoot, finalRoot);
    assert.equal(report.stateRecords, stateRecords);
    assert.equal(report.chainId, fx.genesis.chainId);
    assert.equal(report.chainHash, toHex(store.chain.hash));
  });
});

describe("verifyChain finds tampering at the right block with the right code", () => {
  test("a flipped byte in a stored transaction's signature: PG_ERR_VERIFY_TX_TAMPERED with its index", (t) => {
    const dir = tamperedCopy(t, (db) => updateTxRaw(db, 4, 7, (raw) => void (raw[raw.length - 1]! ^= 0x01)));
    const report = verifyDir(dir);
    expectFault(report, 4, "PG_ERR_VERIFY_TX_TAMPERED", 7);
    assert.notEqual(report.fault?.txId, toHex(blocks[3]!.txs[7]!.id), "the id reported is the tampered bytes' id");
  });

  test("a flipped byte in a stored transaction's body (a reading's quality): PG_ERR_VERIFY_TX_TAMPERED", (t) => {
    const tx = blocks[1]!.txs[10]!;
    assert.equal(tx.tx.body.type, "reading");
    const dir = tamperedCopy(t, (db) => updateTxRaw(db, 2, 10, (raw) => void (raw[raw.length - 65]! ^= 0x01))); // quality: the byte before the signature
    expectFault(verifyDir(dir), 2, "PG_ERR_VERIFY_TX_TAMPERED", 10);
  });

  test("a stored transaction that no longer decodes: PG_ERR_VERIFY_DECODE", (t) => {
    const dir = tamperedCopy(t, (db) => db.prepare("UPDATE txs SET raw = x'01ff' WHERE rowid = ?").run(txRowid(db, 5, 2)));
    expectFault(verifyDir(dir), 5, "PG_ERR_VERIFY_DECODE", 2);
  });

  test("a changed result code: PG_ERR_VERIFY_RESULT, either way (ok -> rejected, rejected -> ok)", (t) => {
    const a = tamperedCopy(t, (db) => db.prepare("UPDATE txs SET result = ? WHERE rowid = ?").run(ResultCode.badSignature, txRowid(db, 2, 3)));
    expectFault(verifyDir(a), 2, "PG_ERR_VERIFY_RESULT", 3);
    const b = tamperedCopy(t, (db) => db.prepare("UPDATE txs SET result = ? WHERE rowid = ?").run(ResultCode.ok, txRowid(db, REJECTED_AT.height, REJECTED_AT.index)));
    expectFault(verifyDir(b), REJECTED_AT.height, "PG_ERR_VERIFY_RESULT", REJECTED_AT.index);
  });

  test("a changed blocks.state_root: PG_ERR_VERIFY_STATE_ROOT at that block (genesis included)", (t) => {
    for (const height of [5, 0, HEAD]) {
      const dir = tamperedCopy(t, (db) => db.prepare("UPDATE blocks SET state_root = zeroblob(32) WHERE height = ?").run(height));
      expectFault(verifyDir(dir), height, "PG_ERR_VERIFY_STATE_ROOT");
    }
  });

  test("a changed header byte: the hash mismatch, or (re-hashed) the proposer's signature, or a header that does not decode", (t) => {
    // txRoot starts after version (1), height (1), parent hash (32) and timeMs (6 bytes as a varint here).
    const hashed = tamperedCopy(t, (db) => updateHeader(db, 3, (h) => ((h[45]! ^= 0x80), h)));
    expectFault(verifyDir(hashed), 3, "PG_ERR_VERIFY_HASH");
    const signature = tamperedCopy(t, (db) => updateHeader(db, 4, (h) => ((h[h.length - 1]! ^= 0x01), h)));
    expectFault(verifyDir(signature), 4, "PG_ERR_BLOCK_SIGNATURE");
    // A forger who also rewrites the hash column: the signature still gives it away.
    const forged = tamperedCopy(t, (db) =>
      updateHeader(
        db,
        2,
        (h) => {
          const d = decodeHeader(h);
          return encodeHeader({ ...d.header, timeMs: d.header.timeMs + 1 }, d.signature);
        },
        true,
      ),
    );
    expectFault(verifyDir(forged), 2, "PG_ERR_BLOCK_SIGNATURE");
    const truncated = tamperedCopy(t, (db) => updateHeader(db, 5, (h) => h.subarray(0, h.length - 3)));
    expectFault(verifyDir(truncated), 5, "PG_ERR_VERIFY_DECODE");
  });

  test("the query columns must agree with the bytes: blocks.time_ms, a tx's author, latest_readings (PG_ERR_VERIFY_COLUMNS / _LATEST_READINGS)", (t) => {
    const time = tamperedCopy(t, (db) => db.prepare("UPDATE blocks SET time_ms = 0 WHERE height = 5").run());
    expectFault(verifyDir(time), 5, "PG_ERR_VERIFY_COLUMNS");
    const author = tamperedCopy(t, (db) => db.prepare("UPDATE txs SET author = author + 1 WHERE rowid = ?").run(txRowid(db, 3, 4)));
    expectFault(verifyDir(author), 3, "PG_ERR_VERIFY_COLUMNS", 4);
    const latest = tamperedCopy(t, (db) => db.prepare("UPDATE latest_readings SET import_wh = import_wh + 1 WHERE author = (SELECT MIN(author) FROM latest_readings)").run());
    const report = verifyDir(latest); // found after every block checked out
    assert.deepEqual([report.ok, report.blocks, report.fault?.height, report.fault?.code], [false, HEAD + 1, HEAD, "PG_ERR_VERIFY_LATEST_READINGS"]);
  });

  test("a cell of the wrong type is reported as an unreadable store, not thrown", (t) => {
    const dir = tamperedCopy(t, (db) => db.prepare("UPDATE txs SET raw = 1e12 WHERE rowid = ?").run(txRowid(db, 4, 0)));
    const report = verifyDir(dir);
    assert.equal(report.ok, false);
    assert.equal(report.fault?.height, 4);
    assert.ok(["PG_ERR_VERIFY_UNREADABLE", "PG_ERR_VERIFY_DECODE"].includes(report.fault?.code ?? ""), report.fault?.code);
  });

  test("two transactions of a block swapped: the Merkle root no longer matches (PG_ERR_BLOCK_TX_ROOT)", (t) => {
    const dir = tamperedCopy(t, (db) => {
      const a = txRowid(db, 4, 1);
      const b = txRowid(db, 4, 2);
      db.prepare("UPDATE txs SET rowid = -1 WHERE rowid = ?").run(a);
      db.prepare("UPDATE txs SET rowid = ? WHERE rowid = ?").run(a, b);
      db.prepare("UPDATE txs SET rowid = ? WHERE rowid = -1").run(b);
    });
    expectFault(verifyDir(dir), 4, "PG_ERR_BLOCK_TX_ROOT");
  });

  test("a deleted transaction row: PG_ERR_VERIFY_MISSING at its block", (t) => {
    const middle = tamperedCopy(t, (db) => db.prepare("DELETE FROM txs WHERE rowid = ?").run(txRowid(db, 3, 5)));
    const report = verifyDir(middle);
    expectFault(report, 3, "PG_ERR_VERIFY_MISSING");
    assert.match(report.fault?.message ?? "", /transaction/);
    const lastOfHead = tamperedCopy(t, (db) => db.prepare("DELETE FROM txs WHERE rowid = ?").run(txRowid(db, HEAD, blocks[HEAD - 1]!.txs.length - 1)));
    expectFault(verifyDir(lastOfHead), HEAD, "PG_ERR_VERIFY_MISSING");
  });

  test("a deleted block in the middle: PG_ERR_VERIFY_MISSING; a deleted head: the saved state no longer matches", (t) => {
    const middle = tamperedCopy(t, (db) => db.prepare("DELETE FROM blocks WHERE height = 3").run());
    expectFault(verifyDir(middle), 3, "PG_ERR_VERIFY_MISSING");
    const head = tamperedCopy(t, (db) => db.prepare("DELETE FROM blocks WHERE height = ?").run(HEAD));
    const report = verifyDir(head);
    assert.equal(report.ok, false);
    assert.deepEqual([report.fault?.height, report.fault?.code], [HEAD - 1, "PG_ERR_VERIFY_SAVED_STATE"]);
  });

  test("a changed, deleted or added saved state record: PG_ERR_VERIFY_SAVED_STATE at the head", (t) => {
    const changed = tamperedCopy(t, (db) => {
      const row = db.prepare("SELECT value FROM state WHERE key = 'r/2/3'").get() as { value: Buffer };
      const rec = decodeRecord(new Uint8Array(row.value)) as MeterRecord;
      db.prepare("UPDATE state SET value = ? WHERE key = 'r/2/3'").run(Buffer.from(encodeRecord({ ...rec, exportWh: rec.exportWh + 100 })));
    });
    let report = verifyDir(changed);
    assert.equal(report.ok, false);
    assert.deepEqual([report.fault?.height, report.fault?.code], [HEAD, "PG_ERR_VERIFY_SAVED_STATE"]);
    assert.match(report.fault?.message ?? "", /r\/2\/3/);
    assert.equal(report.blocks, HEAD + 1, "every block re-verified before the saved state was compared");
    report = verifyDir(tamperedCopy(t, (db) => db.prepare("DELETE FROM state WHERE key = 'm/1'").run()));
    assert.deepEqual([report.fault?.height, report.fault?.code], [HEAD, "PG_ERR_VERIFY_SAVED_STATE"]);
    report = verifyDir(tamperedCopy(t, (db) => db.prepare("INSERT INTO state (key, value) VALUES ('m/99', (SELECT value FROM state WHERE key = 'm/1'))").run()));
    assert.deepEqual([report.fault?.height, report.fault?.code], [HEAD, "PG_ERR_VERIFY_SAVED_STATE"]);
    assert.match(report.fault?.message ?? "", /m\/99/);
  });
});

interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function cli(...args: string[]): CliRun {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("the peergrid CLI, end to end", () => {
  test("verify exits 0 on a good chain and 1 with FAULT at block H on a tampered one", (t) => {
    const good = cli("verify", tamperedCopy(t, null));
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, new RegExp(`OK: every block from genesis to ${HEAD} re-verified`));
    const bad = tamperedCopy(t, (db) => db.prepare("UPDATE txs SET result = 5 WHERE rowid = ?").run(txRowid(db, 4, 2)));
    const run = cli("verify", bad);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stdout, /FAULT at block 4, transaction 2 .*PG_ERR_VERIFY_RESULT/);
    const json = cli("verify", "--json", ledgerPath(bad));
    assert.equal(json.code, 1);
    const report = JSON.parse(json.stdout) as VerifyReport;
    assert.deepEqual([report.ok, report.fault?.height, report.fault?.code], [false, 4, "PG_ERR_VERIFY_RESULT"]);
    const missing = cli("verify", join(tempDir(t, "verify"), "nothing-here"));
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /does not exist/);
    // A file that is not a ledger at all is the auditor's finding: exit 1 with the reason.
    const junkDir = tempDir(t, "verify");
    writeFileSync(join(junkDir, "ledger.sqlite"), "this is not a database, it is a grocery list\n");
    const junk = cli("verify", junkDir);
    assert.equal(junk.code, 1, junk.stderr);
    assert.match(junk.stdout, /FAULT: PG_ERR_STORE_CORRUPT/);
  });

  test("keygen writes a key file with mode 0600 and refuses to overwrite it", (t) => {
    const file = join(tempDir(t, "cli"), "box.key");
    const run = cli("keygen", "--out", file);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const signer = readKeyFile(file);
    assert.equal(run.stdout.trim(), toHex(signer.publicKey));
    const before = readFileSync(file, "utf8");
    const again = cli("keygen", "--out", file);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already exists/);
    assert.equal(readFileSync(file, "utf8"), before);
  });

  test("genesis + init + verify round trip, and the chain takes blocks signed with the generated key", (t) => {
    const dir = tempDir(t, "cli");
    const k1 = join(dir, "box-1.key");
    const k2 = join(dir, "alice.key");
    assert.equal(cli("keygen", "--out", k1).code, 0);
    const alicePub = cli("keygen", "--out", k2).stdout.trim();
    const genesisFile = join(dir, "genesis.json");
    const gen = cli("genesis", "--chain-id", "cli-grid", "--member", `box-1:box+admin:${k1}`, "--member", `alice:user:${alicePub}`, "--time-ms", String(blockTimeMs(0)), "--out", genesisFile);
    assert.equal(gen.code, 0, gen.stderr);
    assert.match(gen.stdout, /cli-grid/);
    assert.equal(cli("genesis", "--chain-id", "cli-grid", "--member", `box-1:box+admin:${k1}`, "--out", genesisFile).code, 2, "genesis refuses to overwrite");
    const genesis = parseGenesis(JSON.parse(readFileSync(genesisFile, "utf8")));
    assert.deepEqual(genesis.members.map((m) => [m.name, m.roles]), [["box-1", ["box", "admin"]], ["alice", ["user"]]]);

    const dataDir = join(dir, "data");
    const init = cli("init", "--genesis", genesisFile, "--data-dir", dataDir);
    assert.equal(init.code, 0, init.stderr);
    assert.deepEqual(JSON.parse(readFileSync(join(dataDir, "genesis.json"), "utf8")), genesis);
    const again = cli("init", "--genesis", genesisFile, "--data-dir", dataDir);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already exists/);
    const v0 = cli("verify", dataDir);
    assert.equal(v0.code, 0, v0.stderr);
    assert.match(v0.stdout, /blocks\s+1 checked \(head 0\)/);

    // The box appends a block with a reading signed by its key file, then the CLI audits it.
    const box = readKeyFile(k1);
    const ledger = Ledger.open(dataDir, fx.verifier, { genesis });
    const reading = signTx({ author: 0, seq: 1, body: readingFor(0, 0, 1) }, box, ledger.state.chain.hash);
    const { results } = ledger.append(ledger.propose([reading], box, 0, blockTimeMs(1), 1, 1));
    ledger.close();
    assert.deepEqual(results, [ResultCode.ok]);
    const v1 = cli("verify", dataDir);
    assert.equal(v1.code, 0, v1.stdout + v1.stderr);
    assert.match(v1.stdout, /blocks\s+2 checked \(head 1\)/);
  });

  test("init with a malformed genesis exits 2 and names the bad key", (t) => {
    const dir = tempDir(t, "cli");
    const member = { name: "box-1", publicKey: toHex(fx.signers[0]!.publicKey), roles: ["box", "admin"] };
    const cases: [string, string, RegExp][] = [
      ["bad-time.json", JSON.stringify({ chainId: "g", genesisTimeMs: "soon", members: [member] }), /\/genesisTimeMs/],
      ["unknown-key.json", JSON.stringify({ chainId: "g", genesisTimeMs: 1, members: [member], colour: "red" }), /\/colour/],
      ["bad-member.json", JSON.stringify({ chainId: "g", genesisTimeMs: 1, members: [{ ...member, publicKey: "xyz" }] }), /\/members\/0\/publicKey/],
      ["no-admin.json", JSON.stringify({ chainId: "g", genesisTimeMs: 1, members: [{ ...member, roles: ["box"] }] }), /admin/],
      ["not-json.json", '{ "chainId": "g", ', /not valid JSON/],
    ];
    for (const [name, text, expected] of cases) {
      const file = join(dir, name);
      writeFileSync(file, text);
      const dataDir = join(dir, `data-${name}`);
      const run = cli("init", "--genesis", file, "--data-dir", dataDir);
      assert.equal(run.code, 2, `${name}: ${run.stdout} ${run.stderr}`);
      assert.match(run.stderr, expected, name);
      assert.equal(existsSync(ledgerPath(dataDir)), false, `${name}: no ledger was created`);
    }
  });

  test("every subcommand's --help exits 0 and prints Usage", () => {
    for (const command of [[], ["keygen"], ["genesis"], ["init"], ["verify"], ["demo"]]) {
      const run = cli(...command, "--help");
      assert.equal(run.code, 0, `${command.join(" ")} --help: ${run.stderr}`);
      assert.match(run.stdout, new RegExp(`Usage: peergrid${command.length > 0 ? ` ${command[0]}` : ""}`));
    }
  });
});

// `peergrid market replay`: a past interval re-derived from the chain's
// transactions and checked against what the box recorded.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import { NodeSigner } from "../../ledger/keys.js";
import { Ledger, ledgerPath } from "../../ledger/ledger.js";
import { type SignedTx, OrderFlag, Role } from "../../ledger/tx.js";
import { intervalStartOf } from "../../market/interval.js";
import { runCli } from "../helpers/cli.js";
import { Harness, Rng, type TestMember, order, reading, verifier } from "../ledger/fixtures.js";

const I = 60_000;
const MEMBERS: TestMember[] = [
  { name: "box 0", signer: NodeSigner.generate(), roles: ["box", "admin", "renewable"] },
  { name: "box 1", signer: NodeSigner.generate(), roles: ["box"] },
  { name: "box 2", signer: NodeSigner.generate(), roles: ["box", "renewable"] },
  { name: "Ann", signer: NodeSigner.generate(), roles: ["user"] },
];
const LATE = NodeSigner.generate(); // enrolled mid-chain as member 4, a renewable seller

/** A chain on disk in `dir` for `members`: the harness that signs, the ledger, and `go`, which appends a block at a time. */
function chainOnDisk(dir: string, members: TestMember[], genesis: Record<string, unknown> = {}) {
  const h = new Harness(members, { market: { intervalMs: I }, ...genesis });
  const ledger = Ledger.create(dir, h.genesis, verifier);
  const go = (timeMs: number, txs: SignedTx[]) => {
    ledger.append(h.block(txs, { timeMs }));
    h.state = ledger.state;
  };
  return { h, ledger, go };
}

let dir: string;
let cleared: number[] = [];

/** A chain of a few one-minute intervals with everything that shapes a book: random orders, a cancel, an expiry, an enrolment, a removal. */
before(() => {
  dir = mkdtempSync(join(tmpdir(), "pg-replay-"));
  const { h, ledger, go } = chainOnDisk(dir, [...MEMBERS]);
  const rng = new Rng(11);
  const counters = [0, 0, 0].map(() => ({ importWh: 1_000, exportWh: 2_000 }));
  let authors = [0, 1, 2, 3];
  const enrolLate = (timeMs: number) => {
    const t = h.tx(0, { type: "member", action: "enrol", publicKey: LATE.publicKey, roles: Role.user | Role.renewable, name: "late solar" });
    go(timeMs, [t]);
    (h.members as TestMember[]).push({ name: "late solar", signer: LATE, roles: ["user", "renewable"] });
    authors = [...authors, 4];
  };
  let t = intervalStartOf(h.state.timeMs, I) + I + 1_000;
  for (let k = 0; k < 6; k++) {
    const next = intervalStartOf(t, I) + I;
    const txs: SignedTx[] = [];
    counters.forEach((c, box) => {
      c.importWh += rng.range(0, 300);
      c.exportWh += rng.range(0, 300);
      txs.push(h.tx(box, reading(t - 500, c.importWh, c.exportWh)));
    });
    for (let n = 0; n < 12; n++) {
      const author = rng.pick(authors);
      txs.push(h.tx(author, order({
        side: rng.int(2) === 0 ? "buy" : "sell",
        energyWh: rng.range(50, 800),
        priceMicroPerKWh: rng.range(50_000, 250_000),
        intervalStartMs: next,
        expiresAtMs: rng.int(6) === 0 ? t + 5_000 : next + I, // some expire before their interval
        flags: rng.int(3) === 0 ? OrderFlag.localRenewableOnly : 0,
      })));
    }
    // The cheapest sell of its interval, then cancelled: had it stayed, it would have traded first.
    const cheap = k === 1 ? h.tx(2, order({ side: "sell", energyWh: 800, priceMicroPerKWh: 1_000, intervalStartMs: next, expiresAtMs: next + I })) : null;
    go(t, cheap === null ? txs : [...txs, cheap]);
    if (cheap !== null) go(t + 1_000, [h.tx(2, { type: "cancel", orderId: cheap.id })]);
    if (k === 2) enrolLate(t + 2_000);
    if (k === 3) {
      go(t + 3_000, [h.tx(0, { type: "member", action: "remove", subject: 3 })]); // Ann's open orders close unfilled
      authors = authors.filter((a) => a !== 3);
    }
    go(t + 10_000, []);
    t = next + 1_000;
  }
  go(t, []);
  cleared = ledger.store.marketIntervals(Number.MAX_SAFE_INTEGER, 100).map((r) => r.startMs);
  ledger.close();
});

after(() => rmSync(dir, { recursive: true, force: true }));

describe("market replay", () => {
  test("every recorded interval re-derives exactly from the chain, clearing and settlement", async () => {
    assert.ok(cleared.length >= 6);
    let traded = 0;
    for (const start of cleared) {
      const r = await runCli("market", "replay", dir, "--interval", String(start));
      const report = JSON.parse(r.out) as { matches: boolean; differences: string[]; derived: { trades: number }; recorded: { trades: number } };
      assert.equal(r.code, 0, r.out);
      assert.deepEqual(report.differences, []);
      assert.equal(report.derived.trades, report.recorded.trades);
      traded += report.recorded.trades;
    }
    assert.ok(traded > 5, `the chain has trades to check (${traded})`);
    const iso = new Date(cleared[1] as number).toISOString();
    assert.equal((await runCli("market", "replay", dir, "--interval", iso)).code, 0, "an ISO time names the interval too");
  });

  test("a recorded trade that the chain does not give, and a tampered transfer, are reported (exit 1)", async () => {
    const copy = mkdtempSync(join(tmpdir(), "pg-replay-tamper-"));
    try {
      const db0 = new Database(ledgerPath(dir), { readonly: true });
      await db0.backup(ledgerPath(copy));
      db0.close();
      const db = new Database(ledgerPath(copy));
      const row = db.prepare("SELECT interval_start_ms AS s, idx FROM market_trades WHERE delivered_wh IS NOT NULL LIMIT 1").get() as { s: number; idx: number };
      db.prepare("UPDATE market_trades SET energy_wh = energy_wh + 1 WHERE interval_start_ms = ? AND idx = ?").run(row.s, row.idx);
      const period = db.prepare("SELECT period_end_ms AS e FROM market_settlements WHERE trades_interval_start_ms = ?").get(row.s) as { e: number };
      db.prepare("UPDATE market_transfers SET amount_micro = amount_micro + 1 WHERE period_end_ms = ? AND idx = 0").run(period.e);
      db.close();
      const r = await runCli("market", "replay", copy, "--interval", String(row.s));
      assert.equal(r.code, 1);
      const report = JSON.parse(r.out) as { matches: boolean; differences: string[] };
      assert.equal(report.matches, false);
      assert.ok(report.differences.some((d) => d.startsWith(`trade ${row.idx} energyWh`)), report.differences.join("\n"));
      assert.ok(report.differences.some((d) => d.includes("hash")), "the trades no longer hash to what the state committed to");
      assert.ok(report.differences.some((d) => d.startsWith("settlement transfer 0")), report.differences.join("\n"));
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  test("peergrid verify re-applies every market step and finds a tampered metered figure, closed order or order count that replay cannot", async () => {
    assert.equal((await runCli("verify", dir)).code, 0);
    const tampers: [string, (db: Database.Database) => void][] = [
      ["a metered figure", (db) => {
        const row = db.prepare("SELECT period_end_ms AS e, member FROM market_metered WHERE import_wh > 0 LIMIT 1").get() as { e: number; member: number };
        db.prepare("UPDATE market_metered SET import_wh = import_wh + 1 WHERE period_end_ms = ? AND member = ?").run(row.e, row.member);
      }, ],
      ["a closed order's reason", (db) => void db.prepare("UPDATE market_closed_orders SET reason = 'expired' WHERE id IN (SELECT id FROM market_closed_orders WHERE reason = 'cleared' LIMIT 1)").run()],
      ["an interval's order count", (db) => void db.prepare("UPDATE market_intervals SET buy_orders = buy_orders + 1 WHERE start_ms IN (SELECT start_ms FROM market_intervals LIMIT 1)").run()],
    ];
    for (const [what, tamper] of tampers) {
      const copy = mkdtempSync(join(tmpdir(), "pg-verify-market-"));
      try {
        const db0 = new Database(ledgerPath(dir), { readonly: true });
        await db0.backup(ledgerPath(copy));
        db0.close();
        const db = new Database(ledgerPath(copy));
        tamper(db);
        db.close();
        const r = await runCli("verify", copy);
        assert.equal(r.code, 1, `${what}: ${r.out}`);
        assert.match(r.out, /PG_ERR_VERIFY_MARKET/, what);
      } finally {
        rmSync(copy, { recursive: true, force: true });
      }
    }
  });

  test("member transactions of one block are replayed in block order, not in the store's author order", async () => {
    const d = mkdtempSync(join(tmpdir(), "pg-replay-order-"));
    try {
      // Admin 2 enrols a renewable seller, then admin 0 enrols a neighbour, in one block: indexes 4 and 5 by block order.
      const admins: TestMember[] = [
        { name: "a0", signer: NodeSigner.generate(), roles: ["box", "admin"] },
        { name: "b1", signer: NodeSigner.generate(), roles: ["box"] },
        { name: "a2", signer: NodeSigner.generate(), roles: ["box", "admin"] },
        { name: "u3", signer: NodeSigner.generate(), roles: ["user"] },
      ];
      const { h, ledger, go } = chainOnDisk(d, admins);
      const solar = NodeSigner.generate();
      const other = NodeSigner.generate();
      let t = intervalStartOf(h.state.timeMs, I) + I + 1_000;
      go(t, [
        h.tx(2, { type: "member", action: "enrol", publicKey: solar.publicKey, roles: Role.user | Role.renewable, name: "solar" }),
        h.tx(0, { type: "member", action: "enrol", publicKey: other.publicKey, roles: Role.user, name: "other" }),
      ]);
      (h.members as TestMember[]).push({ name: "solar", signer: solar, roles: ["user", "renewable"] }, { name: "other", signer: other, roles: ["user"] });
      const next = intervalStartOf(t, I) + I;
      t += 1_000;
      go(t, [
        h.tx(4, order({ side: "sell", energyWh: 500, priceMicroPerKWh: 100_000, intervalStartMs: next, expiresAtMs: next + I })),
        h.tx(3, order({ side: "buy", energyWh: 500, priceMicroPerKWh: 200_000, intervalStartMs: next, expiresAtMs: next + I, flags: OrderFlag.localRenewableOnly })),
      ]);
      go(next + 1_000, []);
      assert.equal(ledger.store.marketInterval(next)?.trades.length, 1, "the renewable-only buy traded with member 4");
      ledger.close();
      const r = await runCli("market", "replay", d, "--interval", String(next));
      assert.equal(r.code, 0, r.out);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test("members enrolled and removed by a vote are replayed: the ledger's governance rules run on the proposal and vote transactions", async () => {
    const d = mkdtempSync(join(tmpdir(), "pg-replay-vote-"));
    try {
      const people: TestMember[] = [
        { name: "a0", signer: NodeSigner.generate(), roles: ["box", "admin"] },
        { name: "b1", signer: NodeSigner.generate(), roles: ["box"] },
        { name: "u2", signer: NodeSigner.generate(), roles: ["user"] },
        { name: "u3", signer: NodeSigner.generate(), roles: ["user"] },
      ];
      const { h, ledger, go } = chainOnDisk(d, people, { governance: { votingBlocksMin: 1 } });
      const solar = NodeSigner.generate();
      let t = intervalStartOf(h.state.timeMs, I) + I + 1_000;
      const next = intervalStartOf(t, I) + I;
      // u2 bids high for the next interval; the community then votes a solar neighbour in and u2 out.
      go(t, [h.tx(2, order({ side: "buy", energyWh: 500, priceMicroPerKWh: 250_000, intervalStartMs: next, expiresAtMs: next + I }))]);
      const height = h.state.height;
      const enrol = h.tx(0, { type: "proposal", action: { kind: "enrol", publicKey: solar.publicKey, roles: Role.user | Role.renewable, name: "solar" }, votingEndsHeight: height + 2, effectiveHeight: height + 3 });
      const remove = h.tx(1, { type: "proposal", action: { kind: "remove", subject: 2 }, votingEndsHeight: height + 2, effectiveHeight: height + 3 });
      go((t += 1_000), [enrol, remove]);
      go((t += 1_000), [0, 1, 3].flatMap((voter) => [enrol, remove].map((p) => h.tx(voter, { type: "vote", proposal: p.id, approve: true }))));
      go((t += 1_000), []);
      go((t += 1_000), []); // the effective height: member 4 enrolled, member 2 removed (its order closes)
      (h.members as TestMember[]).push({ name: "solar", signer: solar, roles: ["user", "renewable"] });
      go((t += 1_000), [
        h.tx(4, order({ side: "sell", energyWh: 500, priceMicroPerKWh: 100_000, intervalStartMs: next, expiresAtMs: next + I })),
        h.tx(3, order({ side: "buy", energyWh: 300, priceMicroPerKWh: 200_000, intervalStartMs: next, expiresAtMs: next + I, flags: OrderFlag.localRenewableOnly })),
      ]);
      go(next + 1_000, []);
      const trades = ledger.store.marketInterval(next)?.trades ?? [];
      assert.deepEqual(trades.map((x) => [x.trade.seller, x.trade.buyer, x.trade.energyWh]), [[4, 3, 300]], "the voted-in seller sells to the renewable-only buyer; the voted-out bidder's order is gone");
      ledger.close();
      const r = await runCli("market", "replay", d, "--interval", String(next));
      assert.equal(r.code, 0, r.out);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test("an interval that is not a boundary, or was never cleared, is a usage error naming the fix", async () => {
    const start = cleared[0] as number;
    const off = await runCli("market", "replay", dir, "--interval", String(start + 1_000));
    assert.equal(off.code, 2);
    assert.match(off.out, /not the start of a market interval .* try /);
    const never = await runCli("market", "replay", dir, "--interval", String(start + 1_000 * I));
    assert.equal(never.code, 2);
    assert.match(never.out, /no clearing .* is recorded .* last cleared interval starts/);
    const bad = await runCli("market", "replay", dir, "--interval", "yesterday");
    assert.equal(bad.code, 2);
    assert.match(bad.out, /neither epoch milliseconds nor an ISO 8601 time/);
  });
});

// Islanding dispatch (market/dispatch.ts): worked examples read as
// transcripts (a state, a step, the commands and figures expected), then
// fast-check properties over runs of many steps in which each step's
// targets and switch records are fed back as the next step's breaker
// states, some commands do not take and some read-backs are lost. Runs of
// steps are driven by a seed that fast-check reports: a failure replays
// from it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import {
  type BreakerReadBack,
  type DispatchInput,
  type DispatchParams,
  type DispatchStep,
  type PremiseInput,
  type SwitchRecord,
  checkDispatchInput,
  checkDispatchParams,
  checkShellDispatchParams,
  dispatch,
  storageOpenSustainMs,
  storageTiers,
} from "../../market/dispatch.js";

const T0 = 1_700_000_000_000;
const PARAMS: DispatchParams = { hysteresisPermille: 100, minOnMs: 30_000, minOffMs: 60_000, closesPerStepMax: 2, demandFreshMs: 10_000 };

/** A premise with a fresh reading at nowMs (importing demandW), last switched long ago (or never). */
function premise(id: number, critical: boolean, demandW: number, breaker: BreakerReadBack, lastSwitch: SwitchRecord | null = null, nowMs = T0): PremiseInput {
  return { id, critical, demandW, generationW: 0, readingAtMs: nowMs, fallbackDemandW: 9_000, breaker, lastSwitch };
}

/** A premise whose fresh reading shows it exporting generationW (its PV beyond its own load). */
function exporter(id: number, critical: boolean, generationW: number, breaker: BreakerReadBack, lastSwitch: SwitchRecord | null = null, nowMs = T0): PremiseInput {
  return { ...premise(id, critical, 0, breaker, lastSwitch, nowMs), generationW };
}

/** One islanded step with `supplyW` of open storage tier (no reserve, no unswitched generation) unless `over` says otherwise. */
function step(premises: PremiseInput[], supplyW: number, over: Partial<DispatchInput> = {}, params = PARAMS): DispatchStep {
  return dispatch(params, { nowMs: T0, islanded: true, unswitchedGenerationW: 0, storageOpenW: supplyW, storageReserveW: 0, premises, ...over });
}

/**
 * The rule before premises carried their own generation, for the record: each premise in turn fits on its
 * demand alone against a supply that was every metered export plus storage, whichever breakers were closed.
 * The number of premises it kept on.
 */
function oldRuleClosedCount(premises: readonly PremiseInput[], supplyW: number): number {
  let servedW = 0;
  const k = premises.findIndex((p) => (servedW += p.demandW) > supplyW);
  return k === -1 ? premises.length : k;
}
/** What the premises [0, k) need from the island besides their own export: their net demand. */
const netOf = (premises: readonly PremiseInput[], k: number) => premises.slice(0, k).reduce((a, p) => a + p.demandW - p.generationW, 0);

const targetsOf = (s: DispatchStep) => s.targets.map((t) => `${t.id}:${t.target}:${t.reason}`);
const commandsOf = (s: DispatchStep) => s.commands.map((c) => `${c.action} ${c.id} ${c.reason}${c.repeat ? " repeat" : ""}${c.overridesMinOn ? " overridesMinOn" : ""}`);

/** The breakers after the shell carried out every command (all of them took, every read-back good). */
function fedBack(premises: PremiseInput[], s: DispatchStep, nowMs: number): PremiseInput[] {
  return premises.map((p, i) => {
    const t = s.targets[i];
    assert.ok(t !== undefined && t.id === p.id);
    return { ...p, breaker: t.target, lastSwitch: t.lastSwitch, readingAtMs: t.target === "closed" ? nowMs : p.readingAtMs };
  });
}

describe("islanding dispatch: worked examples", () => {
  it("a deficit sheds from the lowest priority, as many as needed, opens first from the bottom", () => {
    // 0 and 1 critical (shelter, clinic), 2 and 3 homes; all on when the supply falls to 3,600 W.
    const ps = [premise(10, true, 1_000, "closed"), premise(11, true, 2_000, "closed"), premise(12, false, 1_500, "closed"), premise(13, false, 800, "closed")];
    const s = step(ps, 3_600);
    assert.deepEqual(targetsOf(s), ["10:closed:supplied", "11:closed:supplied", "12:open:deficit", "13:open:deficit"]);
    assert.deepEqual(commandsOf(s), ["open 13 deficit", "open 12 deficit"]);
    assert.deepEqual(s.figures, { supplyW: 3_600, generationW: 0, servedW: 3_000, shedW: 2_300, criticalServedW: 3_000, criticalDemandW: 3_000, criticalCoveragePermille: 1000, criticalOpenCount: 0, unconfirmedW: 2_300 });
    assert.deepEqual(s.targets[2]?.lastSwitch, { to: "open", atMs: T0 });
    // 100 W less and the clinic goes too: still from the end, the shelter kept.
    assert.deepEqual(targetsOf(step(ps, 2_999)), ["10:closed:supplied", "11:open:deficit", "12:open:deficit", "13:open:deficit"]);
  });

  it("a shed right after a restore overrides min-on, and says so", () => {
    const ps = [premise(1, true, 1_000, "closed"), premise(2, false, 1_000, "closed", { to: "closed", atMs: T0 - 5_000 })];
    assert.deepEqual(commandsOf(step(ps, 1_500)), ["open 2 deficit overridesMinOn"]);
    const later = ps.map((p) => ({ ...p, readingAtMs: T0 + 25_000 }));
    assert.deepEqual(commandsOf(step(later, 1_500, { nowMs: T0 + 25_000 })), ["open 2 deficit"], "on for 30 s: min-on passed");
  });

  it("restores in priority order, at most closesPerStepMax closes a step", () => {
    const shed: SwitchRecord = { to: "open", atMs: T0 - 600_000 };
    let ps = [1, 2, 3, 4, 5].map((id) => premise(id, id <= 2, 500, "open", shed));
    const transcript: string[][] = [];
    for (let k = 0; k < 3; k++) {
      const nowMs = T0 + k * 1_000;
      const s = step(ps, 10_000, { nowMs }, { ...PARAMS, demandFreshMs: 10_000_000 });
      transcript.push(commandsOf(s));
      ps = fedBack(ps, s, nowMs);
    }
    assert.deepEqual(transcript, [["close 1 restore", "close 2 restore"], ["close 3 restore", "close 4 restore"], ["close 5 restore"]]);
  });

  it("hysteresis: switches on only with headroom of demand x (1 + h)", () => {
    const ps = [premise(1, true, 2_000, "closed"), premise(2, false, 1_000, "open", { to: "open", atMs: T0 - 600_000 })];
    assert.deepEqual(targetsOf(step(ps, 3_099)), ["1:closed:supplied", "2:open:headroom"], "1,099 W of headroom < 1,100");
    assert.deepEqual(targetsOf(step(ps, 3_100)), ["1:closed:supplied", "2:closed:restore"]);
    // Once on it stays on down to exactly its demand: the band between is the hysteresis.
    const on = [ps[0] as PremiseInput, { ...(ps[1] as PremiseInput), breaker: "closed" as const, lastSwitch: { to: "closed" as const, atMs: T0 - 600_000 } }];
    assert.deepEqual(targetsOf(step(on, 3_000)), ["1:closed:supplied", "2:closed:supplied"]);
    assert.deepEqual(targetsOf(step(on, 2_999)), ["1:closed:supplied", "2:open:deficit"]);
  });

  it("min-off: a premise shed stays off for minOffMs even when the supply is back, and holds the ones behind it", () => {
    const at = (nowMs: number) => [premise(1, true, 1_000, "open", { to: "open", atMs: T0 }, nowMs), premise(2, false, 500, "open", { to: "open", atMs: T0 - 600_000 }, nowMs)];
    assert.deepEqual(targetsOf(step(at(T0 + 59_999), 9_000, { nowMs: T0 + 59_999 })), ["1:open:minOff", "2:open:order"]);
    assert.deepEqual(targetsOf(step(at(T0 + 60_000), 9_000, { nowMs: T0 + 60_000 })), ["1:closed:restore", "2:closed:restore"]);
  });

  it("a premise on behind one that is off is opened to keep the order", () => {
    // Premise 1 tripped on its own a moment ago (the shell recorded it); 2 and 3 are on.
    const ps = [premise(1, true, 1_000, "open", { to: "open", atMs: T0 - 1_000 }), premise(2, false, 500, "closed"), premise(3, false, 500, "closed")];
    const s = step(ps, 9_000);
    assert.deepEqual(targetsOf(s), ["1:open:minOff", "2:open:order", "3:open:order"]);
    assert.deepEqual(commandsOf(s), ["open 3 order", "open 2 order"]);
  });

  it("an unknown read-back counts as drawing and is commanded again; a lost read-back never switches anything", () => {
    const old = T0 - 600_000;
    const ps = [
      premise(1, true, 1_000, "unknown", { to: "closed", atMs: old }), // believed on: counted, close repeated
      premise(2, false, 1_000, "open", { to: "open", atMs: old }),
      premise(3, false, 700, "unknown", { to: "open", atMs: old }), // believed off, may still draw
    ];
    const s = step(ps, 2_500);
    assert.deepEqual(targetsOf(s), ["1:closed:supplied", "2:open:headroom", "3:open:order"], "1,500 W - 700 W that 3 may draw < 1,100 W");
    assert.deepEqual(commandsOf(s), ["open 3 order repeat", "close 1 supplied repeat"]);
    assert.equal(s.figures.unconfirmedW, 700);
    assert.deepEqual(s.targets.map((t) => t.lastSwitch), ps.map((p) => p.lastSwitch), "no switch: the records stand");
    // With 3 confirmed open, 2 fits (and 3, 700 W, not in the 500 W left).
    assert.deepEqual(targetsOf(step(ps.map((p) => (p.id === 3 ? { ...p, breaker: "open" as const } : p)), 2_500)), ["1:closed:supplied", "2:closed:restore", "3:open:headroom"]);
    // No record at all (the box just started): unknown counts as closed, and a deficit sheds it.
    assert.deepEqual(commandsOf(step([premise(1, true, 1_000, "unknown"), premise(2, false, 800, "unknown")], 1_500)), ["open 2 deficit", "close 1 supplied repeat"]);
  });

  it("a stale or missing reading: the fallback demand", () => {
    const stale = { ...premise(1, true, 500, "open", { to: "open", atMs: T0 - 600_000 }), readingAtMs: T0 - 10_001, fallbackDemandW: 3_000 };
    assert.deepEqual(targetsOf(step([stale], 3_299)), ["1:open:headroom"]);
    assert.deepEqual(step([stale], 3_300).targets[0]?.demandW, 3_000);
    assert.deepEqual(step([{ ...stale, readingAtMs: T0 - 10_000 }], 600).targets[0]?.demandW, 500, "10 s old: fresh");
    assert.deepEqual(step([{ ...stale, readingAtMs: null }], 9_000).targets[0]?.demandW, 3_000);
    assert.deepEqual(step([{ ...stale, readingAtMs: T0 + 1 }], 9_000).targets[0]?.demandW, 3_000, "a stamp ahead of now is not trusted");
  });

  it("own generation: counted only for a premise on, with a fresh reading, whose read-back is not open; never assumed", () => {
    // A clinic of 1,000 W carried by the 1,500 W export of the prosumer behind it, with no storage at all.
    const on = (p: PremiseInput) => ({ ...p, lastSwitch: { to: "closed" as const, atMs: T0 - 600_000 } });
    const ps = [on(premise(1, true, 1_000, "closed")), on(exporter(2, false, 1_500, "closed"))];
    const accounted = (s: DispatchStep) => s.targets.map((t) => `${t.id}:${t.target}:${t.generationW}`);
    assert.deepEqual(accounted(step(ps, 0)), ["1:closed:0", "2:closed:1500"]);
    assert.deepEqual(accounted(step(ps.map((p) => ({ ...p, breaker: "unknown" as const })), 0)), ["1:closed:0", "2:closed:1500"], "a read-back lost for a second sheds nothing");
    // The export reading is 10,001 ms old: stale, so no generation, and the clinic cannot be carried.
    assert.deepEqual(accounted(step(ps.map((p) => (p.id === 2 ? { ...p, readingAtMs: T0 - 10_001 } : p)), 0)), ["1:open:0", "2:open:0"]);
    // Believed on but read back open (its close did not take, or it tripped): its export is not on the island.
    assert.deepEqual(accounted(step(ps.map((p) => (p.id === 2 ? { ...p, breaker: "open" as const } : p)), 0)), ["1:open:0", "2:open:0"]);
    // Believed off: switched on on its fallback demand (its PV waits out its reconnection delay; its reading said nothing of its load).
    const off = [premise(1, true, 1_000, "closed"), { ...exporter(2, false, 1_500, "open", { to: "open", atMs: T0 - 600_000 }), fallbackDemandW: 4_000 }];
    assert.deepEqual(targetsOf(step(off, 5_399)), ["1:closed:supplied", "2:open:headroom"], "4,399 W of headroom < 4,000 W x 1.1");
    const restored = step(off, 5_400);
    assert.deepEqual(targetsOf(restored), ["1:closed:supplied", "2:closed:restore"]);
    assert.deepEqual([restored.targets[1]?.demandW, restored.targets[1]?.generationW], [4_000, 0]);
  });

  // The rule before: each premise fitted on its demand alone against generationW + storage, where generationW was
  // the export of every metered premise whatever its breaker. Two ways that went wrong, and a third for a fix that
  // would only have taken the export of shed premises out of the supply.
  it("an exporter behind a critical site carries it: the prefix through the exporter fits though the site alone does not", () => {
    const ps = [premise(1, true, 1_000, "closed"), exporter(2, false, 2_000, "closed"), premise(3, false, 1_500, "closed")];
    const s = step(ps, 200);
    // [1] needs 1,000 W of 200; [1, 2] needs -1,000 W; [1, 2, 3] needs 500 W, more than 200: shed 3, keep the clinic and its carrier.
    assert.deepEqual(targetsOf(s), ["1:closed:supplied", "2:closed:supplied", "3:open:deficit"]);
    assert.deepEqual(s.figures, { supplyW: 2_200, generationW: 2_000, servedW: 1_000, shedW: 1_500, criticalServedW: 1_000, criticalDemandW: 1_000, criticalCoveragePermille: 1000, criticalOpenCount: 0, unconfirmedW: 1_500 });
    // Fitting each premise as the walk reaches it on the supply that stays whatever is shed (200 W): the clinic first, then everything.
    assert.equal(oldRuleClosedCount(ps, 200), 0);
  });

  it("an exporter carries the household ahead of it: when the supply falls the cut lands after the exporter, not between", () => {
    const ps = [premise(1, true, 500, "closed"), premise(2, false, 1_200, "closed"), exporter(3, false, 1_500, "closed"), premise(4, false, 900, "closed")];
    // Net demand of the prefixes: 500, 1,700, 200, 1,100. With 800 W of storage the longest that fits is [1, 2, 3].
    const s = step(ps, 800);
    assert.deepEqual(targetsOf(s), ["1:closed:supplied", "2:closed:supplied", "3:closed:supplied", "4:open:deficit"]);
    assert.deepEqual(commandsOf(s), ["open 4 deficit"]);
    assert.equal(oldRuleClosedCount(ps, 800), 1, "fitting premise by premise would shed 2, and 3 with it");
    assert.ok(netOf(ps, 1) <= 800 && netOf(ps, 2) > 800 && netOf(ps, 3) <= 800);
    // At 199 W [1, 2, 3] (200 W) no longer fits, and the critical site alone needs 500 W: nothing does.
    assert.deepEqual(targetsOf(step(ps, 199)), ["1:open:deficit", "2:open:deficit", "3:open:deficit", "4:open:deficit"]);
  });

  it("shedding an exporter sheds its export: what stays on must fit without it", () => {
    const ps = [premise(1, true, 1_000, "closed"), premise(2, false, 1_000, "closed"), premise(3, false, 600, "closed"), exporter(4, false, 1_500, "closed")];
    const s = step(ps, 1_000);
    // All four need 1,100 W net, more than the 1,000 W of storage; without 4's export [1, 2] needs 2,000 W: only the clinic fits.
    assert.deepEqual(targetsOf(s), ["1:closed:supplied", "2:open:deficit", "3:open:deficit", "4:open:deficit"]);
    assert.equal(s.figures.supplyW, 1_000);
    // The old rule counted 4's export in the supply (2,500 W), kept [1, 2] on and shed 4: 2,000 W on 1,000 W, an overload.
    const kept = oldRuleClosedCount(ps, 1_000 + 1_500);
    assert.equal(kept, 2);
    assert.ok(netOf(ps, kept) > 1_000, "the old rule's island drew more than it had");
  });

  it("storage tiers: the reserve carries only an all-critical prefix; a household fits within generation and the open tier", () => {
    const ps = [premise(1, true, 1_000, "closed"), premise(2, true, 1_000, "closed"), premise(3, false, 500, "closed")];
    const tiers = (open: number, reserve: number, gen = 0) => ({ storageOpenW: open, storageReserveW: reserve, unswitchedGenerationW: gen });
    const s = step(ps, 0, tiers(1_500, 1_000));
    assert.deepEqual(targetsOf(s), ["1:closed:supplied", "2:closed:supplied", "3:open:deficit"], "2,500 W offered, but the household would draw on the reserve");
    assert.equal(s.figures.supplyW, 2_500);
    assert.deepEqual(targetsOf(step(ps, 0, tiers(1_500, 1_000, 1_000))), ["1:closed:supplied", "2:closed:supplied", "3:closed:supplied"], "with 1,000 W of unswitched generation it fits without the reserve");
    assert.equal(step(ps, 0, tiers(1_500, 1_000, 1_000)).figures.supplyW, 2_500, "the supply the closed premises may draw: no reserve once a household is on");
    // Restoring: a critical site within generation + open + reserve, a household only within generation + open.
    const shed: SwitchRecord = { to: "open", atMs: T0 - 600_000 };
    const off = [premise(1, true, 1_000, "open", shed), premise(2, false, 500, "open", shed)];
    assert.deepEqual(targetsOf(step(off, 0, tiers(500, 2_000))), ["1:closed:restore", "2:open:headroom"]);
    assert.deepEqual(targetsOf(step(off, 0, tiers(2_100, 0))), ["1:closed:restore", "2:closed:restore"]);
  });

  it("storageTiers: the open tier only above the reserve, tapering to it over 15 minutes; the rest of the limit is the reserve tier", () => {
    const battery = { dischargeMaxW: 100_000, reserveWh: 62_600 };
    assert.equal(storageOpenSustainMs, 900_000);
    assert.deepEqual(storageTiers(battery, 200_000), { openW: 100_000, reserveW: 0 }, "137.4 kWh above the reserve: the whole limit is open");
    assert.deepEqual(storageTiers(battery, 62_600 + 25_000), { openW: 100_000, reserveW: 0 }, "25 kWh above: 100 kW for 15 minutes");
    assert.deepEqual(storageTiers(battery, 62_600 + 7_400), { openW: 29_600, reserveW: 70_400 }, "7.4 kWh above: 29.6 kW would take it to the reserve in 15 minutes");
    assert.deepEqual(storageTiers(battery, 62_600), { openW: 0, reserveW: 100_000 }, "at the reserve: critical premises only");
    assert.deepEqual(storageTiers(battery, 10), { openW: 0, reserveW: 36_000 }, "never more than it holds for one second");
    assert.deepEqual(storageTiers(battery, 0), { openW: 0, reserveW: 0 });
    assert.deepEqual(storageTiers(battery, null), { openW: 0, reserveW: 100_000 }, "a charge nobody can see: the critical premises keep the battery");
    assert.deepEqual(storageTiers({ dischargeMaxW: 5_000, reserveWh: 0 }, 1_000), { openW: 4_000, reserveW: 1_000 }, "no reserve: the open tier still tapers as it empties");
  });

  it("when even the first critical premise does not fit, everything is off and the coverage says so", () => {
    const ps = [premise(1, true, 5_000, "closed"), premise(2, true, 500, "closed"), premise(3, false, 200, "closed")];
    const s = step(ps, 4_000);
    assert.deepEqual(targetsOf(s), ["1:open:deficit", "2:open:deficit", "3:open:deficit"]);
    assert.deepEqual(s.figures, { supplyW: 4_000, generationW: 0, servedW: 0, shedW: 5_700, criticalServedW: 0, criticalDemandW: 5_500, criticalCoveragePermille: 0, criticalOpenCount: 2, unconfirmedW: 5_700 });
  });

  it("supply is unswitched generation plus the open storage tier, plus the closed premises' own generation", () => {
    const ps = [premise(1, true, 1_000, "closed"), premise(2, false, 1_000, "closed"), exporter(3, false, 300, "closed")];
    const s = step(ps, 0, { unswitchedGenerationW: 1_000, storageOpenW: 700 });
    assert.equal(s.figures.supplyW, 2_000);
    assert.equal(s.figures.generationW, 300);
    assert.deepEqual(targetsOf(s), ["1:closed:supplied", "2:closed:supplied", "3:closed:supplied"]);
  });

  it("grid up: every breaker closes, in order, within the close budget, after its min-off, none ahead of one still waiting; nothing opens", () => {
    const ps = [
      premise(1, true, 1_000, "open", { to: "open", atMs: T0 - 600_000 }),
      premise(2, false, 1_000, "open", { to: "open", atMs: T0 - 1_000 }),
      premise(3, false, 1_000, "open", { to: "open", atMs: T0 - 600_000 }),
      premise(4, false, 1_000, "closed"),
      premise(5, false, 1_000, "open", { to: "open", atMs: T0 - 600_000 }),
    ];
    const s = step(ps, 0, { islanded: false });
    // Premise 2 waits out its min-off: 3 and 5 wait behind it (4 is on already and stays on).
    assert.deepEqual(targetsOf(s), ["1:closed:gridUp", "2:open:minOff", "3:open:order", "4:closed:gridUp", "5:open:order"]);
    assert.deepEqual(commandsOf(s), ["close 1 gridUp"]);
    const later = step(fedBack(ps, s, T0), 0, { islanded: false, nowMs: T0 + 59_000 });
    assert.deepEqual(commandsOf(later), ["close 2 gridUp", "close 3 gridUp"]);
  });

  it("refuses input that breaks the rule's preconditions, naming the field", () => {
    const ok = premise(1, true, 100, "closed");
    const bad = [premise(1, false, 100, "closed"), { ...premise(2, true, -1, "closed"), generationW: 0.5 }, { ...ok, breaker: "tripped" as BreakerReadBack }];
    assert.deepEqual(checkDispatchInput({ nowMs: T0, islanded: true, unswitchedGenerationW: 1.5, storageOpenW: 0, storageReserveW: -1, premises: bad }), [
      "unswitchedGenerationW: whole watts from 0 to 1000000000",
      "storageReserveW: whole watts from 0 to 1000000000",
      "premises[1].demandW: whole watts from 0 to 1000000000",
      "premises[1].generationW: whole watts from 0 to 1000000000",
      "premises[1]: critical, after a non-critical premise (critical premises come first)",
      "premises[2].breaker: closed, open or unknown",
      "premises[2].id: 1 appears twice",
      "premises[2]: critical, after a non-critical premise (critical premises come first)",
    ]);
    assert.deepEqual(checkDispatchParams({ ...PARAMS, closesPerStepMax: 0, hysteresisPermille: 10_001 }), ["hysteresisPermille: at most 10000", "closesPerStepMax: from 1 to 10000"]);
    assert.deepEqual(checkShellDispatchParams(PARAMS), []);
    assert.deepEqual(checkShellDispatchParams({ ...PARAMS, minOffMs: 10_000 }), [
      "minOffMs: 10000 must be above demandFreshMs (10000), so that a shed premise comes back on its fallback demand, not on a reading taken while its PV covered part of its load",
    ]);
    assert.throws(() => step([premise(1, false, 1, "closed"), premise(2, true, 1, "closed")], 10), /critical premises come first/);
  });

  it("is a pure core: imports only the assertions, reads no clock and no randomness", () => {
    const src = readFileSync(fileURLToPath(new URL("../../../market/dispatch.ts", import.meta.url)), "utf8");
    const code = src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    assert.deepEqual([...code.matchAll(/\bfrom\s+"([^"]+)"/g)].map((m) => m[1]), ["../ledger/assert.js"]);
    for (const bad of [/\bDate\b/, /\bMath\s*\.\s*random\b/, /\bset(Timeout|Interval|Immediate)\b/, /\bprocess\s*\./, /\bperformance\b/, /\bimport\s*\(/]) assert.doesNotMatch(code, bad);
  });
});

// ---- Properties ------------------------------------------------------------

/** mulberry32: a small seeded generator for the step scripts (the seed comes from fast-check). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
const below = (r: () => number, n: number) => Math.floor(r() * n);

interface World {
  premises: PremiseInput[];
  /** What the breakers really are. */
  physical: ("closed" | "open")[];
  /** Each premise's net power at its meter before the swing: import positive, export (its PV beyond its load) negative. */
  baseNetW: number[];
}

interface Faults {
  /** Share (of 1,000) of read-backs lost (unknown). */
  readonly lostPermille: number;
  /** Share (of 1,000) of commands that do not take this step. */
  readonly ignoredPermille: number;
  /** Share (of 1,000) of steps at which a premise's meter is offline (its reading goes stale). */
  readonly meterOfflinePermille: number;
}

const arbParams: fc.Arbitrary<DispatchParams> = fc.record({
  hysteresisPermille: fc.integer({ min: 0, max: 500 }),
  minOnMs: fc.integer({ min: 0, max: 120_000 }),
  minOffMs: fc.integer({ min: 0, max: 120_000 }),
  closesPerStepMax: fc.integer({ min: 1, max: 4 }),
  demandFreshMs: fc.integer({ min: 0, max: 30_000 }),
});

/** Premises in a random starting state: any mix of breakers, records, readings, critical ones first. */
const arbWorld: fc.Arbitrary<World> = fc
  .array(
    fc.record({
      netW: fc.oneof(fc.integer({ min: 0, max: 3_000 }), fc.integer({ min: -4_000, max: 0 })), // a consumer, or a prosumer exporting
      fallbackDemandW: fc.integer({ min: 0, max: 6_000 }),
      physical: fc.constantFrom("closed" as const, "open" as const),
      record: fc.option(fc.record({ to: fc.constantFrom("closed" as const, "open" as const), agoMs: fc.integer({ min: 0, max: 200_000 }) }), { nil: null }),
      reading: fc.option(fc.integer({ min: 0, max: 60_000 }), { nil: null }),
    }),
    { minLength: 0, maxLength: 10 },
  )
  .chain((rows) => fc.tuple(fc.constant(rows), fc.integer({ min: 0, max: rows.length })))
  .map(([rows, criticalCount]) => ({
    premises: rows.map((r, i) => ({
      id: 100 + i * 7,
      critical: i < criticalCount,
      demandW: Math.max(0, r.netW),
      generationW: Math.max(0, -r.netW),
      readingAtMs: r.reading === null ? null : T0 - r.reading,
      fallbackDemandW: r.fallbackDemandW,
      breaker: r.physical,
      lastSwitch: r.record === null ? null : { to: r.record.to, atMs: T0 - r.record.agoMs },
    })),
    physical: rows.map((r) => r.physical),
    baseNetW: rows.map((r) => r.netW),
  }));

/** Carries out a step's commands on the world (some do not take) and builds the next input's premises (some read-backs lost). */
function advance(w: World, s: DispatchStep, nextMs: number, r: () => number, f: Faults, demandSwingW: number): void {
  for (const c of s.commands) {
    const i = w.premises.findIndex((p) => p.id === c.id);
    if (below(r, 1000) >= f.ignoredPermille) w.physical[i] = c.action === "close" ? "closed" : "open";
  }
  w.premises = w.premises.map((p, i) => {
    const physical = w.physical[i] as "closed" | "open";
    const metered = physical === "closed" && below(r, 1000) >= f.meterOfflinePermille;
    const netW = (w.baseNetW[i] as number) + below(r, 2 * demandSwingW + 1) - demandSwingW;
    return {
      ...p,
      demandW: metered ? Math.max(0, netW) : p.demandW,
      generationW: metered ? Math.max(0, -netW) : p.generationW,
      readingAtMs: metered ? nextMs : p.readingAtMs,
      breaker: below(r, 1000) < f.lostPermille ? "unknown" : physical,
      lastSwitch: (s.targets[i] as { lastSwitch: SwitchRecord | null }).lastSwitch,
    };
  });
}

/** The header's accounting, written out again: a premise's demand, generation and whether it may draw. */
function accounted(params: DispatchParams, nowMs: number, p: PremiseInput) {
  const fresh = p.readingAtMs !== null && nowMs >= p.readingAtMs && nowMs - p.readingAtMs <= params.demandFreshMs;
  const on = p.lastSwitch === null ? p.breaker !== "open" : p.lastSwitch.to === "closed";
  const demandW = fresh && (on || p.generationW === 0) ? p.demandW : p.fallbackDemandW;
  return { on, demandW, generationW: fresh && on && p.breaker !== "open" ? p.generationW : 0, mayDrawW: on || p.breaker !== "open" ? demandW : 0 };
}

/**
 * The header's island rule the dumb way: the largest K such that the prefix [0, K) fits (its net demand within
 * unswitched generation + open tier, + reserve tier if all of it is critical) and every premise off in it may come on
 * (min-off passed, within the close budget, headroom for its demand x (1 + h) after the net demand ahead of it and
 * the demand of every later premise that may draw). No walk, no early exit: a different shape from dispatch's.
 */
function referenceClosedCount(params: DispatchParams, input: DispatchInput): number {
  const ps = input.premises.map((p) => ({ p, ...accounted(params, input.nowMs, p) }));
  const net = (k: number) => ps.slice(0, k).reduce((a, x) => a + x.demandW - x.generationW, 0);
  const usable = (k: number) => input.unswitchedGenerationW + input.storageOpenW + (ps.slice(0, k).every((x) => x.p.critical) ? input.storageReserveW : 0);
  const budget = Math.max(0, params.closesPerStepMax - ps.filter((x) => x.on && x.p.breaker !== "closed").length);
  const mayComeOn = (j: number, nth: number) => {
    const x = ps[j] as (typeof ps)[number];
    if (nth > budget || (x.p.lastSwitch !== null && input.nowMs - x.p.lastSwitch.atMs < params.minOffMs)) return false;
    const headroomW = usable(j + 1) - net(j) - ps.slice(j + 1).reduce((a, y) => a + y.mayDrawW, 0);
    return headroomW >= 0 && headroomW * 1000 >= x.demandW * (1000 + params.hysteresisPermille);
  };
  for (let k = ps.length; k > 0; k--) {
    let nth = 0;
    if (net(k) <= usable(k) && ps.slice(0, k).every((x, j) => x.on || mayComeOn(j, ++nth))) return k;
  }
  return 0;
}

/** Every invariant of one step (the header's I1 to I4, the figures, the commands). */
function checkStep(params: DispatchParams, input: DispatchInput, s: DispatchStep): void {
  const ps = input.premises;
  assert.equal(s.targets.length, ps.length);
  const closed = s.targets.map((t) => t.target === "closed");
  ps.forEach((p, i) => {
    const a = accounted(params, input.nowMs, p);
    assert.deepEqual([s.targets[i]?.demandW, s.targets[i]?.generationW], [a.demandW, a.generationW], `premise ${i}: the accounted demand and generation`);
  });
  // I2's right-hand side, from the inputs and the targets.
  const closedGenerationW = s.targets.reduce((a, t) => a + (t.target === "closed" ? t.generationW : 0), 0);
  const allClosedCritical = ps.every((p, i) => p.critical || !closed[i]);
  const supplyW = input.unswitchedGenerationW + input.storageOpenW + (allClosedCritical ? input.storageReserveW : 0) + closedGenerationW;
  assert.equal(s.figures.supplyW, supplyW);
  assert.equal(s.figures.generationW, closedGenerationW);
  if (input.islanded) {
    const k = closed.indexOf(false) === -1 ? closed.length : closed.indexOf(false);
    assert.ok(closed.every((c, i) => c === i < k), `I1: the closed premises are a prefix: ${closed.join(",")}`);
    const criticalOpen = ps.some((p, i) => p.critical && !closed[i]);
    assert.ok(!(criticalOpen && ps.some((p, i) => !p.critical && closed[i])), "I1: no critical premise off while a non-critical one is on");
    assert.ok(s.figures.servedW <= supplyW, `I2: served ${s.figures.servedW} W within supply ${supplyW} W`);
    // Shed no more than needed, restore no more than allowed: exactly the reference's prefix.
    assert.equal(k, referenceClosedCount(params, input), "the closed prefix is the reference rule's");
  } else {
    assert.ok(!s.commands.some((c) => c.action === "open" && !c.repeat), "connected: nothing is switched open");
  }
  const served = s.targets.reduce((sum, t) => sum + (t.target === "closed" ? t.demandW : 0), 0);
  const all = s.targets.reduce((sum, t) => sum + t.demandW, 0);
  assert.equal(s.figures.servedW, served);
  assert.equal(s.figures.servedW + s.figures.shedW, all);
  assert.ok(s.figures.criticalServedW <= s.figures.criticalDemandW && s.figures.criticalServedW <= s.figures.servedW);
  assert.equal(s.figures.criticalOpenCount, ps.filter((p, i) => p.critical && !closed[i]).length);
  let switchedClosed = 0;
  ps.forEach((p, i) => {
    const t = s.targets[i];
    assert.ok(t !== undefined && t.id === p.id);
    const switched = t.lastSwitch !== p.lastSwitch;
    if (switched) assert.deepEqual(t.lastSwitch, { to: t.target, atMs: input.nowMs });
    if (switched && t.target === "closed") {
      switchedClosed += 1;
      assert.ok(p.lastSwitch === null || input.nowMs - p.lastSwitch.atMs >= params.minOffMs, "I3: min-off before every close");
    }
    // A command exactly where the read-back does not show the target; a lost read-back is always commanded again.
    const c = s.commands.find((x) => x.id === p.id);
    assert.equal(c !== undefined, p.breaker !== t.target);
    if (c !== undefined) assert.equal(c.repeat, !switched);
  });
  const closing = s.commands.filter((c) => c.action === "close").length + s.targets.filter((t, i) => t.target === "closed" && t.lastSwitch !== ps[i]?.lastSwitch && ps[i]?.breaker === "closed").length;
  if (switchedClosed > 0) assert.ok(closing <= params.closesPerStepMax, `I4: ${closing} closes in a step that switched one on`);
  const firstClose = s.commands.findIndex((c) => c.action === "close");
  assert.ok(firstClose === -1 || s.commands.slice(firstClose).every((c) => c.action === "close"), "every open before any close");
}

describe("islanding dispatch: properties", () => {
  it("(1, 2) after every step: the closed premises are a prefix, no critical premise off while a non-critical is on, served within supply; the reference rule's prefix", () => {
    const faults = fc.record({ lostPermille: fc.integer({ min: 0, max: 300 }), ignoredPermille: fc.integer({ min: 0, max: 200 }), meterOfflinePermille: fc.integer({ min: 0, max: 200 }) });
    fc.assert(
      fc.property(arbParams, arbWorld, faults, fc.integer(), (params, start, f, seed) => {
        const world = structuredClone(start); // advance() changes it; fast-check's value must stay as generated
        const r = rng(seed);
        let supplyW = below(r, 15_000);
        let islanded = true;
        for (let k = 0; k < 120; k++) {
          const nowMs = T0 + k * 1_000;
          supplyW = Math.max(0, supplyW + below(r, 3_001) - 1_500);
          if (below(r, 40) === 0) islanded = !islanded;
          // Some of the supply is unswitched generation, some the open tier; a reserve tier now and then.
          const unswitchedGenerationW = below(r, supplyW + 1);
          const storageReserveW = below(r, 3) === 0 ? below(r, 4_000) : 0;
          const input: DispatchInput = { nowMs, islanded, unswitchedGenerationW, storageOpenW: supplyW - unswitchedGenerationW, storageReserveW, premises: world.premises };
          const s = dispatch(params, input);
          checkStep(params, input, s);
          advance(world, s, nowMs + 1_000, r, f, 300);
        }
      }),
      { numRuns: 300, includeErrorInReport: true },
    );
  });

  it("(3) chatter: a breaker switches at most 2 x ceil(H / (minOffMs + 1000)) times in any H ms under a wobbling supply", () => {
    const hourMs = 3_600_000;
    const bound = (windowMs: number, minOffMs: number) => 2 * Math.ceil(windowMs / (minOffMs + 1_000));
    fc.assert(
      fc.property(arbParams, arbWorld, fc.integer(), (params, start, seed) => {
        const world = structuredClone(start);
        const r = rng(seed);
        // Thresholds where premises come and go: the net demand of each prefix.
        const edges = world.baseNetW.map((_, i) => world.baseNetW.slice(0, i + 1).reduce((a, b) => a + b, 0));
        const switches: number[][] = world.premises.map(() => []);
        for (let k = 0; k < 3_600; k++) {
          const nowMs = T0 + k * 1_000;
          const edge = edges.length === 0 ? 0 : (edges[below(r, edges.length)] as number);
          const storageOpenW = Math.max(0, edge + below(r, 801) - 400); // around a threshold, every second
          const input: DispatchInput = { nowMs, islanded: below(r, 600) !== 0, unswitchedGenerationW: 0, storageOpenW, storageReserveW: 0, premises: world.premises };
          const s = dispatch(params, input);
          s.targets.forEach((t, i) => {
            if (t.lastSwitch !== world.premises[i]?.lastSwitch) switches[i]?.push(nowMs);
          });
          advance(world, s, nowMs + 1_000, r, { lostPermille: 100, ignoredPermille: 50, meterOfflinePermille: 20 }, 100);
        }
        for (const times of switches) {
          assert.ok(times.length <= bound(hourMs, params.minOffMs), `${times.length} switches in an hour, bound ${bound(hourMs, params.minOffMs)}`);
          const windowMs = 600_000;
          times.forEach((t0, i) => {
            const inWindow = times.slice(i).filter((t) => t < t0 + windowMs).length;
            assert.ok(inWindow <= bound(windowMs, params.minOffMs), `${inWindow} switches in 10 min from ${t0 - T0} ms`);
          });
        }
      }),
      { numRuns: 25, includeErrorInReport: true },
    );
  });

  it("(3) hysteresis: a supply that stays in a band of width B, 1000 x B <= h x demand + 1000 x generation of every premise, switches each breaker at most once", () => {
    const importing = fc.integer({ min: 1, max: 3_000 }).map((demandW) => ({ demandW, generationW: 0 }));
    const exporting = fc.integer({ min: 1, max: 3_000 }).map((generationW) => ({ demandW: 0, generationW }));
    fc.assert(
      fc.property(
        fc.array(fc.oneof(importing, importing, exporting), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 1, max: 500 }),
        fc.integer({ min: 0, max: 20_000 }),
        fc.integer(),
        (readings, hysteresisPermille, lowW, seed) => {
          const r = rng(seed);
          const params: DispatchParams = { ...PARAMS, hysteresisPermille, minOffMs: 0, minOnMs: 0 };
          const bandW = Math.min(...readings.map((x) => Math.floor((hysteresisPermille * x.demandW) / 1000) + x.generationW));
          let premises = readings.map((x, i) => ({ ...premise(i, i === 0, x.demandW, "closed"), generationW: x.generationW }));
          const switches = premises.map(() => 0);
          for (let k = 0; k < 300; k++) {
            const nowMs = T0 + k * 1_000;
            premises = premises.map((p) => ({ ...p, readingAtMs: nowMs })); // readings hold still and stay fresh
            const s = step(premises, lowW + below(r, bandW + 1), { nowMs }, params);
            s.targets.forEach((t, i) => {
              if (t.lastSwitch !== premises[i]?.lastSwitch) switches[i] = (switches[i] as number) + 1;
            });
            premises = fedBack(premises, s, nowMs);
          }
          assert.ok(switches.every((n) => n <= 1), `switches per breaker: ${switches.join(",")}, band ${bandW} W`);
        },
      ),
      { numRuns: 300, includeErrorInReport: true },
    );
  });

  it("(4) same inputs, same outputs; the input is not touched", () => {
    const deepFreeze = <T>(o: T): T => {
      if (typeof o === "object" && o !== null) for (const v of Object.values(o)) deepFreeze(v);
      return Object.freeze(o);
    };
    fc.assert(
      fc.property(arbParams, arbWorld, fc.boolean(), fc.integer({ min: 0, max: 20_000 }), fc.array(fc.nat(9), { maxLength: 10 }), (params, world, islanded, storageOpenW, lost) => {
        const premises = world.premises.map((p, i) => (lost[i] === 0 ? { ...p, breaker: "unknown" as const } : p));
        const input: DispatchInput = deepFreeze({ nowMs: T0, islanded, unswitchedGenerationW: 300, storageOpenW, storageReserveW: 500, premises });
        const copy = structuredClone(input);
        const a = dispatch(params, input);
        assert.deepEqual(dispatch(params, copy), a);
        assert.deepEqual(input, copy, "input unchanged");
      }),
      { numRuns: 500, includeErrorInReport: true },
    );
  });
});

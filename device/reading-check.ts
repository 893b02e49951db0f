// Every value a meter gives is checked before it becomes a reading, and
// every reading carries a quality flag (ledger/tx.ts Quality). A wrong
// reading that reaches the ledger as good is worse than a missing one: the
// market settles money on it. Pure: the poll loop hands in what it read and
// when, and keeps the MeterMemory this returns for the next call.
//
// The checks, each setting its Quality bit (a reading is good only with
// none set):
//   commsError        the poll failed: no values at all. The reading still
//                     goes to the ledger (the outage is a fact worth
//                     recording), with the last good counters.
//   outOfRange        a value is missing (a counter, or every phase
//                     voltage), not finite, or outside what the
//                     installation can physically show (limits below).
//   counterBackwards  an energy counter below its last good value.
//   counterJump       a counter advanced more than powerMaxW could deliver
//                     since the last good reading (the ledger's own rule,
//                     ledger/state.ts energyBoundWh, with this meter's
//                     limit, which is usually stricter than the chain's).
//   stale             the counters were read longer ago than staleAfterMs
//                     (a slow bus polls energy less often than power).
// Invariant: among good readings of one meter, counters never decrease and
// never advance faster than powerMaxW allows; the memory moves only on a
// good reading.
import { energyBoundWh } from "../ledger/state.js";
import { Quality } from "../ledger/tx.js";
import type { Quantity } from "./register-map.js";

export interface MeterLimits {
  /** The grid's nominal phase voltage (230 in Europe, 120 in North America). */
  readonly nominalVoltageV: number;
  /** Per phase. */
  readonly currentMaxA: number;
  /** Through the whole meter, either way. */
  readonly powerMaxW: number;
  readonly frequencyMinHz: number;
  readonly frequencyMaxHz: number;
  /** Counters read longer ago than this make the reading stale. */
  readonly staleAfterMs: number;
}

/** A three-phase 100 A connection on a 230 V / 50 Hz grid. */
export const DEFAULT_METER_LIMITS: MeterLimits = {
  nominalVoltageV: 230,
  currentMaxA: 100,
  powerMaxW: 82_800, // 3 x 230 V x 100 A, and a fifth more
  frequencyMinHz: 40,
  frequencyMaxHz: 70,
  staleAfterMs: 60_000,
};

/** A voltage above this share of nominal is not a reading but a fault (1.5 x: far past any trip setting). */
const VOLTAGE_MAX_PER_NOMINAL = 1.5;

/** What one poll gave: decoded values (register-map.ts), or nothing if it failed. */
export interface Sample {
  readonly timeMs: number;
  readonly values: Partial<Record<Quantity, number>> | null;
  /** When the energy counters in `values` were read (a slow bus reads them less often). */
  readonly countersTimeMs: number;
}

/** What the check remembers of a meter between polls. */
export interface MeterMemory {
  readonly goodTimeMs: number;
  readonly goodImportWh: number;
  readonly goodExportWh: number;
}

export interface CheckedReading {
  readonly timeMs: number;
  readonly importWh: number;
  readonly exportWh: number;
  readonly powerW: number; // + importing, - exporting
  readonly voltagesDeciV: readonly number[];
  readonly frequencyMilliHz: number;
  readonly quality: number;
  /** Why the reading is not good, one phrase per problem (empty when good). */
  readonly problems: readonly string[];
}

const PHASES = [
  ["voltageL1", "currentL1", "powerL1"],
  ["voltageL2", "currentL2", "powerL2"],
  ["voltageL3", "currentL3", "powerL3"],
] as const;

/** Check one sample against the limits and the meter's memory; the new memory comes back with the reading. */
export function checkReading(sample: Sample, memory: MeterMemory | null, limits: MeterLimits = DEFAULT_METER_LIMITS): { reading: CheckedReading; memory: MeterMemory | null } {
  const v = sample.values;
  if (v === null) {
    const reading = { timeMs: sample.timeMs, importWh: memory?.goodImportWh ?? 0, exportWh: memory?.goodExportWh ?? 0, powerW: 0, voltagesDeciV: [], frequencyMilliHz: 0, quality: Quality.commsError, problems: ["the meter did not answer"] };
    return { reading, memory };
  }
  const problems: string[] = [];
  let quality = 0;
  const flag = (bit: number, why: string) => {
    quality |= bit;
    problems.push(why);
  };
  const inRange = (name: Quantity, min: number, max: number, required: boolean): number | null => {
    const x = v[name];
    if (x === undefined) {
      if (required) flag(Quality.outOfRange, `${name} missing`);
      return null;
    }
    if (!Number.isFinite(x) || x < min || x > max) {
      flag(Quality.outOfRange, `${name} ${x} outside ${min}..${max}`);
      return null;
    }
    return x;
  };

  const voltageMaxV = limits.nominalVoltageV * VOLTAGE_MAX_PER_NOMINAL;
  const voltagesDeciV: number[] = [];
  for (const [vName, aName, pName] of PHASES) {
    const volts = inRange(vName, 0, voltageMaxV, false); // 0 V is a real reading: the grid is down
    if (v[vName] !== undefined) voltagesDeciV.push(volts === null ? 0 : Math.round(volts * 10)); // one per phase the meter has, in order
    inRange(aName, -limits.currentMaxA, limits.currentMaxA, false);
    inRange(pName, -limits.powerMaxW, limits.powerMaxW, false);
  }
  if (voltagesDeciV.length === 0) flag(Quality.outOfRange, "no phase voltage read"); // a meter always has one: the map or the device is wrong
  const total = inRange("powerTotal", -limits.powerMaxW, limits.powerMaxW, false);
  const phaseSum = PHASES.reduce((s, [, , p]) => s + (Number.isFinite(v[p]) ? (v[p] as number) : 0), 0);
  const powerW = Math.round(Math.min(limits.powerMaxW, Math.max(-limits.powerMaxW, total ?? phaseSum))); // flagged if out of range; bounded either way
  const hz = v.frequency;
  // No voltage, no frequency: a dead grid reads 0 Hz, which is not a fault.
  const frequencyMilliHz = hz === 0 && voltagesDeciV.every((d) => d === 0) ? 0 : Math.round((inRange("frequency", limits.frequencyMinHz, limits.frequencyMaxHz, false) ?? 0) * 1_000);

  const counterMaxWh = Number.MAX_SAFE_INTEGER / 2;
  const importRaw = inRange("importEnergy", 0, counterMaxWh, true);
  const exportRaw = inRange("exportEnergy", 0, counterMaxWh, true);
  const importWh = importRaw === null ? (memory?.goodImportWh ?? 0) : Math.floor(importRaw);
  const exportWh = exportRaw === null ? (memory?.goodExportWh ?? 0) : Math.floor(exportRaw);

  if (sample.timeMs - sample.countersTimeMs > limits.staleAfterMs) flag(Quality.stale, `counters read ${sample.timeMs - sample.countersTimeMs} ms before the reading`);
  if (memory !== null && importRaw !== null && exportRaw !== null) {
    if (importWh < memory.goodImportWh || exportWh < memory.goodExportWh) {
      flag(Quality.counterBackwards, `counters went back: import ${memory.goodImportWh} -> ${importWh} Wh, export ${memory.goodExportWh} -> ${exportWh} Wh`);
    } else {
      const boundWh = energyBoundWh(Math.max(0, sample.countersTimeMs - memory.goodTimeMs), limits.powerMaxW) + 1; // +1: whole Wh
      if (importWh - memory.goodImportWh > boundWh || exportWh - memory.goodExportWh > boundWh) {
        flag(Quality.counterJump, `counters advanced more than ${boundWh} Wh in ${sample.countersTimeMs - memory.goodTimeMs} ms (import +${importWh - memory.goodImportWh}, export +${exportWh - memory.goodExportWh})`);
      }
    }
  }
  const reading: CheckedReading = { timeMs: sample.timeMs, importWh, exportWh, powerW, voltagesDeciV, frequencyMilliHz, quality, problems };
  const good = quality === Quality.good;
  return { reading, memory: good ? { goodTimeMs: sample.countersTimeMs, goodImportWh: importWh, goodExportWh: exportWh } : memory };
}

// A home battery behind a prosumer's meter, pure and deterministic, with
// self-consumption control: charge from the premise's surplus, discharge to
// cover its import, never charge from the grid and never export from the
// battery. One call, step(netW, dtMs) -> gridW, runs it for dtMs at the power
// the premise's net demand asks for (within its limits and its state of
// charge) and says what the grid sees.
//
// Energy is accounted in integers: watt-milliseconds (mJ; 1 Wh = 3,600,000),
// so a one-second step of a few watts is exact and nothing is lost to
// rounding except what the efficiency takes, which is booked as loss:
//   Invariant: socMJ - initialMJ == chargedMJ - dischargedMJ - lossMJ.
//   Invariant: minMJ <= socMJ <= maxMJ.
// The round-trip efficiency is split evenly: each direction sqrt(round
// trip), in parts per thousand; charging stores floor(AC in x eta), and
// discharging takes ceil(AC out / eta) from the cells.
//
// Default figures are a Tesla Powerwall 2's published ones: 13.5 kWh usable,
// 5 kW continuous, 90 % round trip (sim/README.md); premise.ts draws smaller
// ones too.
import { assert, divCeil, divFloor } from "../ledger/assert.js";

export const MJ_PER_WH = 3_600_000;
/** The longest single step: a premise sub-steps longer gaps (premise.ts). */
export const BATTERY_STEP_MS_MAX = 3_600_000;
/** Limits that keep every product below 2^53 (1 MW x 1 h x 1000). */
export const BATTERY_POWER_W_MAX = 1_000_000;
export const BATTERY_CAPACITY_WH_MAX = 1_000_000;

export interface BatterySpec {
  /** Usable capacity, Wh. */
  readonly capacityWh: number;
  readonly maxChargeW: number;
  readonly maxDischargeW: number;
  /** AC to AC, parts per thousand. */
  readonly roundTripPermille: number;
  /** State-of-charge bounds as shares of the capacity, parts per thousand (a backup reserve below, a longevity margin above). */
  readonly socMinPermille: number;
  readonly socMaxPermille: number;
  readonly initialSocPermille: number;
}

export const POWERWALL_2: BatterySpec = { capacityWh: 13_500, maxChargeW: 5_000, maxDischargeW: 5_000, roundTripPermille: 900, socMinPermille: 100, socMaxPermille: 1_000, initialSocPermille: 500 };

export function checkBatterySpec(s: BatterySpec): string[] {
  const p: string[] = [];
  const whole = (x: number, lo: number, hi: number) => Number.isSafeInteger(x) && x >= lo && x <= hi;
  if (!whole(s.capacityWh, 1, BATTERY_CAPACITY_WH_MAX)) p.push(`capacityWh: 1..${BATTERY_CAPACITY_WH_MAX}`);
  if (!whole(s.maxChargeW, 0, BATTERY_POWER_W_MAX)) p.push(`maxChargeW: 0..${BATTERY_POWER_W_MAX}`);
  if (!whole(s.maxDischargeW, 0, BATTERY_POWER_W_MAX)) p.push(`maxDischargeW: 0..${BATTERY_POWER_W_MAX}`);
  if (!whole(s.roundTripPermille, 1, 1_000)) p.push("roundTripPermille: 1..1000");
  if (!whole(s.socMinPermille, 0, 1_000) || !whole(s.socMaxPermille, 0, 1_000) || s.socMinPermille > s.socMaxPermille) p.push("soc bounds: 0 <= min <= max <= 1000");
  if (!whole(s.initialSocPermille, 0, 1_000)) p.push("initialSocPermille: 0..1000");
  return p;
}

export class HomeBattery {
  /** Stored energy, mJ. */
  private socMJ: number;
  readonly minMJ: number;
  readonly maxMJ: number;
  readonly initialMJ: number;
  /** Each direction's efficiency, parts per thousand. */
  readonly etaPermille: number;
  /** AC energy taken in, given out, and lost in conversion, mJ (only ever grow). */
  chargedMJ = 0;
  dischargedMJ = 0;
  lossMJ = 0;
  /** The last step's power: + charging, - discharging, W. */
  lastW = 0;

  constructor(readonly spec: BatterySpec) {
    const problems = checkBatterySpec(spec);
    assert(problems.length === 0, `bad battery: ${problems.join("; ")}`);
    const capMJ = spec.capacityWh * MJ_PER_WH;
    this.minMJ = divFloor(capMJ * spec.socMinPermille, 1_000);
    this.maxMJ = divFloor(capMJ * spec.socMaxPermille, 1_000);
    this.initialMJ = Math.min(this.maxMJ, Math.max(this.minMJ, divFloor(capMJ * spec.initialSocPermille, 1_000)));
    this.socMJ = this.initialMJ;
    this.etaPermille = Math.round(1_000 * Math.sqrt(spec.roundTripPermille / 1_000));
  }

  get socMilliJ(): number {
    return this.socMJ;
  }

  get socWh(): number {
    return divFloor(this.socMJ, MJ_PER_WH);
  }

  /**
   * Run for dtMs with the premise's net demand netW (+ import, - export,
   * whole W) and return what the grid then sees, whole W. dtMs 0 chooses the
   * power without moving energy (a premise's first reading).
   */
  step(netW: number, dtMs: number): number {
    assert(Number.isSafeInteger(netW) && Math.abs(netW) <= 100 * BATTERY_POWER_W_MAX, "net power: whole W");
    assert(Number.isSafeInteger(dtMs) && dtMs >= 0 && dtMs <= BATTERY_STEP_MS_MAX, "a battery step: 0..1 h in whole ms");
    const eta = this.etaPermille;
    let w = 0;
    if (netW < 0) {
      const room = this.maxMJ - this.socMJ;
      const byEnergy = dtMs === 0 ? (room > 0 ? Infinity : 0) : divFloor(room * 1_000, eta * dtMs);
      w = Math.min(-netW, this.spec.maxChargeW, byEnergy);
      if (dtMs > 0 && w > 0) {
        const acIn = w * dtMs;
        const stored = divFloor(acIn * eta, 1_000);
        this.socMJ += stored;
        this.chargedMJ += acIn;
        this.lossMJ += acIn - stored;
      }
    } else if (netW > 0) {
      const available = this.socMJ - this.minMJ;
      const byEnergy = dtMs === 0 ? (available > 0 ? Infinity : 0) : divFloor(available * eta, 1_000 * dtMs);
      const out = Math.min(netW, this.spec.maxDischargeW, byEnergy);
      if (dtMs > 0 && out > 0) {
        const acOut = out * dtMs;
        const taken = divCeil(acOut * 1_000, eta);
        this.socMJ -= taken;
        this.dischargedMJ += acOut;
        this.lossMJ += taken - acOut;
      }
      w = -out;
    }
    assert(this.minMJ <= this.socMJ && this.socMJ <= this.maxMJ, "the battery stays within its bounds");
    this.lastW = w;
    return netW + w;
  }
}

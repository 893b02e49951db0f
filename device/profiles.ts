// Stand-in power profiles for simulated meters (sim-meter.ts), pure and
// deterministic: a solar array's output and a household's demand over the
// day. Simple on purpose: a half-sine between sunrise and sunset (the shape
// of clear-sky output on a fixed panel, without the atmosphere's air-mass
// loss), and a base load with a morning and an evening peak (the two humps
// of every published residential load curve). The realistic models (a
// clear-sky sun with weather, diverse households with cited shapes, home
// batteries) are in sim/ (sim/premise.ts, sources in sim/README.md); a
// simulated meter takes one through SimulatedMeterOptions.power.

const MS_PER_HOUR = 3_600_000;
const MS_PER_DAY = 24 * MS_PER_HOUR;

export interface SolarProfile {
  readonly peakW: number;
  readonly sunriseHour: number; // local solar time
  readonly sunsetHour: number;
  /** Local time = UTC + this. */
  readonly utcOffsetHours: number;
}

export interface LoadProfile {
  readonly baseW: number;
  readonly morningPeakW: number; // on top of the base, around 07:30
  readonly eveningPeakW: number; // on top of the base, around 19:00
  readonly utcOffsetHours: number;
}

/** The hour of the local day, in [0, 24). */
export function localHour(timeMs: number, utcOffsetHours: number): number {
  const ms = (((timeMs + utcOffsetHours * MS_PER_HOUR) % MS_PER_DAY) + MS_PER_DAY) % MS_PER_DAY;
  return ms / MS_PER_HOUR;
}

export function solarPowerW(timeMs: number, p: SolarProfile): number {
  const h = localHour(timeMs, p.utcOffsetHours);
  if (h <= p.sunriseHour || h >= p.sunsetHour) return 0;
  return p.peakW * Math.sin((Math.PI * (h - p.sunriseHour)) / (p.sunsetHour - p.sunriseHour));
}

export function householdLoadW(timeMs: number, p: LoadProfile): number {
  const h = localHour(timeMs, p.utcOffsetHours);
  const bump = (centre: number, widthH: number) => Math.exp(-(((h - centre) / widthH) ** 2));
  return p.baseW + p.morningPeakW * bump(7.5, 1.2) + p.eveningPeakW * bump(19, 2);
}

// Simple deterministic generators for the demonstration chain and the
// benchmarks. The realistic solar and household profiles of the simulator
// milestone will replace solarW.
import { localHour, solarPowerW } from "../device/profiles.js";
import { NodeSigner } from "../ledger/keys.js";
import type { Rng } from "./rng.js";

/** A key whose 32-byte seed comes from the RNG: the same seed, the same keys, the same chain. */
export function seededSigner(rng: Rng): NodeSigner {
  const seed = new Uint8Array(32);
  for (let i = 0; i < 32; i++) seed[i] = rng.int(0, 255);
  return new NodeSigner(seed);
}

/** Solar output: device/profiles.ts's half sine from 06:00 to 20:00 UTC, with some cloud. */
export function solarW(peakW: number, timeMs: number, rng: Rng): number {
  const hour = localHour(timeMs, 0);
  if (hour < 6 || hour > 20) return 0; // no cloud is drawn at night: the same seed, the same chain
  return Math.round(solarPowerW(timeMs, { peakW, sunriseHour: 6, sunsetHour: 20, utcOffsetHours: 0 }) * (0.85 + 0.15 * rng.next()));
}

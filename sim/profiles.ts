// Simple deterministic generators for the demonstration chain and the
// benchmarks. The realistic solar and household profiles of the simulator
// milestone will replace solarW.
import { NodeSigner } from "../ledger/keys.js";
import type { Rng } from "./rng.js";

/** A key whose 32-byte seed comes from the RNG: the same seed, the same keys, the same chain. */
export function seededSigner(rng: Rng): NodeSigner {
  const seed = new Uint8Array(32);
  for (let i = 0; i < 32; i++) seed[i] = rng.int(0, 255);
  return new NodeSigner(seed);
}

/** Solar output for the hour of day: a half sine from 06:00 to 20:00 UTC with some cloud. */
export function solarW(peakW: number, timeMs: number, rng: Rng): number {
  const hour = (timeMs % 86_400_000) / 3_600_000;
  if (hour < 6 || hour > 20) return 0;
  const clearSky = Math.sin((Math.PI * (hour - 6)) / 14);
  return Math.round(peakW * clearSky * (0.85 + 0.15 * rng.next()));
}

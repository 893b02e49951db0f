// How numbers are shown. Floats only here, at the display (STYLE: integers
// everywhere near consensus): the ledger's micro-currency and Wh stay integers
// until they are printed.

const MICRO_DIGITS = 6;

/**
 * Integer micro-units as a decimal with `places` places (0..6), rounded half away from zero on the
 * integers themselves: a float would show 1_005_000 micro as "1.00" (1.005 is 1.00499… in binary) and
 * -2_500 as "-0.00".
 */
export function decimalOfMicro(micro: number, places: number): string {
  if (!Number.isSafeInteger(micro) || !Number.isInteger(places) || places < 0 || places > MICRO_DIGITS) return "?";
  const step = 10 ** (MICRO_DIGITS - places);
  const abs = Math.abs(micro);
  const rest = abs % step;
  const q = (abs - rest) / step + (rest * 2 >= step ? 1 : 0); // in units of 10^-places
  const scale = 10 ** places;
  const fraction = places === 0 ? "" : `.${String(q % scale).padStart(places, "0")}`;
  return `${micro < 0 && q > 0 ? "-" : ""}${Math.floor(q / scale)}${fraction}`;
}

export function price(microPerKWh: number | null | undefined): string {
  if (microPerKWh === null || microPerKWh === undefined) return "–";
  return `${decimalOfMicro(microPerKWh, 3)} /kWh`;
}

export function money(micro: number): string {
  return decimalOfMicro(micro, 2);
}

export function energy(wh: number): string {
  return Math.abs(wh) >= 10_000 ? `${(wh / 1000).toFixed(1)} kWh` : `${Math.round(wh)} Wh`;
}

export function power(w: number): string {
  return Math.abs(w) >= 10_000 ? `${(w / 1000).toFixed(1)} kW` : `${Math.round(w)} W`;
}

/** HH:MM in the browser's time zone. */
export function clock(ms: number): string {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

export function shortId(hex: string): string {
  return `${hex.slice(0, 8)}…`;
}

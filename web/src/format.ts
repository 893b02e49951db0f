// How numbers are shown. Floats only here, at the display (STYLE: integers
// everywhere near consensus): the ledger's micro-currency and Wh stay integers
// until they are printed.

export function price(microPerKWh: number | null | undefined): string {
  if (microPerKWh === null || microPerKWh === undefined) return "–";
  return `${(microPerKWh / 1_000_000).toFixed(3)} /kWh`;
}

export function money(micro: number): string {
  return (micro / 1_000_000).toFixed(2);
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

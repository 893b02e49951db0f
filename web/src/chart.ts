// A power chart as inline SVG (no chart library, nothing fetched): the
// meter's power over a time window, import above the zero line and export
// below it. Drawn in viewBox units; CSS scales it to the screen width.
import type { HistoryPoint } from "./api.js";
import { clock, power } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 360;
const H = 160;
const PAD = { left: 44, right: 8, top: 10, bottom: 22 } as const;
/** A chart draws at most this many points (a day at 5-minute steps is 288). */
export const CHART_POINTS_MAX = 2_000;

function el(name: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

export function powerChart(points: readonly HistoryPoint[], fromMs: number, toMs: number, label: string): SVGSVGElement {
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart" }) as SVGSVGElement;
  const pts = points.slice(-CHART_POINTS_MAX).map((p) => ({ t: p.timeMs, w: p.meanPowerW ?? p.powerW }));
  const maxW = Math.max(100, ...pts.map((p) => p.w));
  const minW = Math.min(0, ...pts.map((p) => p.w));
  const span = Math.max(1, toMs - fromMs);
  const x = (t: number) => PAD.left + ((t - fromMs) / span) * (W - PAD.left - PAD.right);
  const y = (w: number) => PAD.top + ((maxW - w) / (maxW - minW)) * (H - PAD.top - PAD.bottom);
  svg.append(el("line", { x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0), class: "axis" }));
  svg.append(el("text", { x: PAD.left - 4, y: y(maxW) + 8, "text-anchor": "end", class: "tick" }, power(maxW)));
  svg.append(el("text", { x: PAD.left - 4, y: y(0) + 4, "text-anchor": "end", class: "tick" }, "0"));
  if (minW < 0) svg.append(el("text", { x: PAD.left - 4, y: y(minW), "text-anchor": "end", class: "tick" }, power(minW)));
  for (let i = 0; i <= 4; i++) {
    const t = fromMs + (span * i) / 4;
    svg.append(el("text", { x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", class: "tick" }, clock(t)));
  }
  if (pts.length === 0) {
    svg.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "tick" }, "no readings yet today"));
    return svg;
  }
  const d = pts.map((p, i) => `${i === 0 ? "M" : "L"}${x(p.t).toFixed(1)},${y(p.w).toFixed(1)}`).join(" ");
  const first = pts[0] as { t: number };
  const last = pts[pts.length - 1] as { t: number };
  svg.append(el("path", { d: `${d} L${x(last.t).toFixed(1)},${y(0).toFixed(1)} L${x(first.t).toFixed(1)},${y(0).toFixed(1)} Z`, class: "area" }));
  svg.append(el("path", { d, class: "line" }));
  return svg;
}

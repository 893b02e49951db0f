// Solar power from first principles, pure and deterministic: where the sun
// is, how much reaches the ground under a clear sky, how much of that
// (scaled by the weather's clear-sky index, sim/weather.ts) falls on a
// tilted panel, and what the array makes of it.
//
//   1. Sun position: NOAA's "General Solar Position Calculations" (Spencer
//      1971 Fourier series for declination and the equation of time, true
//      solar time from longitude, hour angle), as a unit vector (east,
//      north, up). Geometric, without refraction (under 0.6° near the
//      horizon, where the panels make almost nothing).
//   2. Extraterrestrial normal irradiance: solar constant 1361 W/m2 x
//      Spencer's (1971) eccentricity factor.
//   3. Clear sky: Ineichen & Perez (2002), "A new airmass independent
//      formulation for the Linke turbidity coefficient", Solar Energy 73,
//      with Perez et al. (2002) p.311's form of the global equation, as
//      pvlib.clearsky.ineichen implements it; relative air mass Kasten &
//      Young (1989), corrected for the site's pressure. Haurwitz (1945) is
//      kept as the zenith-only check.
//   4. The weather scales clear-sky GHI by the clear-sky index kc, and
//      Erbs, Klein & Duffie (1982), Solar Energy 28, split the result into
//      beam and diffuse from the clearness index kt = GHI / (I0 cos z):
//      an overcast sky is then all diffuse, a clear one mostly beam.
//   5. Transposition onto the panel: isotropic sky (Liu & Jordan 1963):
//      POA = DNI cos(aoi) IAM + DHI (1 + cos tilt)/2 + GHI albedo (1 - cos tilt)/2,
//      with the ASHRAE incidence-angle modifier IAM = 1 - 0.05 (1/cos aoi - 1)
//      on the beam.
//   6. The array: P = kWp x POA/1000 W/m2 x (1 + gamma (Tcell - 25 °C)) x
//      (1 - system losses), Tcell from the NOCT model (Tair + POA (NOCT -
//      20)/800), gamma -0.35 %/K, NOCT 45 °C, system losses 14 % (PVGIS's
//      default for cabling, inverter, soiling, mismatch), clipped at the
//      inverter's AC limit.
//
// Angles: degrees in the interfaces, radians inside. Azimuths clockwise from
// north (180 = south). Irradiances W/m2.
import { assert } from "../ledger/assert.js";
import { MIN_PER_DAY, MS_PER_DAY, MS_PER_HOUR, MS_PER_MIN, SITE_DEFAULTS, type Site, dayOfYear, localDayStartMs, offsetMsOf } from "./site.js";

const RAD = Math.PI / 180;
export const SOLAR_CONSTANT_W = 1_361;

// ---- 1, 2: the sun ----------------------------------------------------------

/** NOAA's fractional year, radians: 2 pi / 365 (doy - 1 + (hour - 12) / 24). */
export function fractionalYearRad(doy: number, hourUtc: number): number {
  return ((2 * Math.PI) / 365) * (doy - 1 + (hourUtc - 12) / 24);
}

/** Solar declination, radians (Spencer 1971). */
export function declinationRad(g: number): number {
  return 0.006918 - 0.399912 * Math.cos(g) + 0.070257 * Math.sin(g) - 0.006758 * Math.cos(2 * g) + 0.000907 * Math.sin(2 * g) - 0.002697 * Math.cos(3 * g) + 0.00148 * Math.sin(3 * g);
}

/** Equation of time, minutes (Spencer 1971): apparent minus mean solar time. */
export function equationOfTimeMin(g: number): number {
  return 229.18 * (0.000075 + 0.001868 * Math.cos(g) - 0.032077 * Math.sin(g) - 0.014615 * Math.cos(2 * g) - 0.040849 * Math.sin(2 * g));
}

/** Extraterrestrial irradiance normal to the sun, W/m2 (Spencer's eccentricity factor). */
export function extraterrestrialNormalW(doy: number): number {
  const g = ((2 * Math.PI) / 365) * (doy - 1);
  return SOLAR_CONSTANT_W * (1.00011 + 0.034221 * Math.cos(g) + 0.00128 * Math.sin(g) + 0.000719 * Math.cos(2 * g) + 0.000077 * Math.sin(2 * g));
}

/** The direction of the sun: a unit vector in local east, north, up. */
export interface SunVector {
  east: number;
  north: number;
  up: number;
}

/** Where the sun is seen from (latitudeDeg, longitudeDeg) at timeMs (UTC). */
export function sunVector(latitudeDeg: number, longitudeDeg: number, timeMs: number, out: SunVector = { east: 0, north: 0, up: 0 }): SunVector {
  const days = Math.floor(timeMs / MS_PER_DAY);
  const minutesUtc = (timeMs - days * MS_PER_DAY) / MS_PER_MIN;
  const g = fractionalYearRad(dayOfYear(days), minutesUtc / 60);
  const decl = declinationRad(g);
  const trueSolarMin = minutesUtc + equationOfTimeMin(g) + 4 * longitudeDeg;
  const hourAngle = (trueSolarMin / 4 - 180) * RAD; // + afternoon
  const lat = latitudeDeg * RAD;
  const cd = Math.cos(decl);
  out.up = Math.sin(lat) * Math.sin(decl) + Math.cos(lat) * cd * Math.cos(hourAngle);
  out.east = -cd * Math.sin(hourAngle);
  out.north = Math.cos(lat) * Math.sin(decl) - Math.sin(lat) * cd * Math.cos(hourAngle);
  return out;
}

export function elevationDeg(v: SunVector): number {
  return Math.asin(Math.max(-1, Math.min(1, v.up))) / RAD;
}

/** Clockwise from north, 0..360. */
export function azimuthDeg(v: SunVector): number {
  const a = Math.atan2(v.east, v.north) / RAD;
  return a < 0 ? a + 360 : a;
}

// ---- 3: the clear sky ------------------------------------------------------

/** Relative optical air mass (Kasten & Young 1989); Infinity below the horizon. */
export function airMassRelative(zenithDeg: number): number {
  if (zenithDeg >= 90) return Infinity;
  return 1 / (Math.cos(zenithDeg * RAD) + 0.50572 * (96.07995 - zenithDeg) ** -1.6364);
}

/** Standard pressure at an altitude, Pa (as pvlib.atmosphere.alt2pres). */
export function pressureAtPa(altitudeM: number): number {
  return 101_325 * (1 - 2.25577e-5 * altitudeM) ** 5.25588;
}

export interface Irradiance {
  /** Global horizontal. */
  ghi: number;
  /** Direct normal. */
  dni: number;
  /** Diffuse horizontal. */
  dhi: number;
}

/** Clear-sky GHI, DNI, DHI (Ineichen & Perez 2002, as pvlib.clearsky.ineichen). */
export function ineichenClearSky(cosZenith: number, dniExtraW: number, linkeTurbidity: number, altitudeM: number): Irradiance {
  if (cosZenith <= 0) return { ghi: 0, dni: 0, dhi: 0 };
  const zenithDeg = Math.acos(Math.min(1, cosZenith)) / RAD;
  const am = airMassRelative(zenithDeg) * (pressureAtPa(altitudeM) / 101_325);
  const fh1 = Math.exp(-altitudeM / 8_000);
  const fh2 = Math.exp(-altitudeM / 1_250);
  const cg1 = 5.09e-5 * altitudeM + 0.868;
  const cg2 = 3.92e-5 * altitudeM + 0.0387;
  const tl = linkeTurbidity;
  const ghi = Math.max(0, cg1 * dniExtraW * cosZenith * Math.exp(-cg2 * am * (fh1 + fh2 * (tl - 1))) * Math.exp(0.01 * am ** 1.8));
  const b = 0.664 + 0.163 / fh1;
  const dniBeam = b * dniExtraW * Math.exp(-0.09 * am * (tl - 1));
  const dniFromGhi = (ghi * (1 - (0.1 - 0.2 * Math.exp(-tl)) / (0.1 + 0.882 / fh1))) / cosZenith;
  const dni = Math.max(0, Math.min(dniBeam, dniFromGhi));
  return { ghi, dni, dhi: Math.max(0, ghi - dni * cosZenith) };
}

/** Clear-sky GHI from the zenith alone (Haurwitz 1945): 1098 cos z exp(-0.059 / cos z). */
export function haurwitzGhi(cosZenith: number): number {
  return cosZenith <= 0 ? 0 : 1_098 * cosZenith * Math.exp(-0.059 / cosZenith);
}

// ---- 4, 5: beam and diffuse, onto the panel ----------------------------------

/** Erbs, Klein & Duffie (1982): the diffuse fraction of GHI from the clearness index kt. */
export function erbsDiffuseFraction(kt: number): number {
  if (kt <= 0.22) return 1 - 0.09 * Math.max(0, kt);
  if (kt <= 0.8) return 0.9511 - 0.1604 * kt + 4.388 * kt ** 2 - 16.638 * kt ** 3 + 12.336 * kt ** 4;
  return 0.165;
}

/** Split a measured (or weathered) GHI into beam and diffuse with Erbs; as pvlib.irradiance.erbs (cos z floor 0.065, no beam beyond 87°). */
export function erbsSplit(ghi: number, cosZenith: number, dniExtraW: number): Irradiance {
  if (ghi <= 0 || cosZenith <= 0) return { ghi: Math.max(0, ghi), dni: 0, dhi: Math.max(0, ghi) };
  const kt = Math.max(0, ghi / (dniExtraW * Math.max(cosZenith, 0.065)));
  const dhi = Math.min(ghi, erbsDiffuseFraction(kt) * ghi);
  const dni = cosZenith < Math.cos(87 * RAD) ? 0 : (ghi - dhi) / cosZenith;
  return { ghi, dni, dhi: dni === 0 ? ghi : dhi };
}

/** A fixed panel's orientation. */
export interface Orientation {
  readonly tiltDeg: number;
  /** Clockwise from north: 180 faces south. */
  readonly azimuthDeg: number;
}

/** The panel's unit normal in east, north, up. */
export function panelNormal(o: Orientation): SunVector {
  const t = o.tiltDeg * RAD;
  const a = o.azimuthDeg * RAD;
  return { east: Math.sin(t) * Math.sin(a), north: Math.sin(t) * Math.cos(a), up: Math.cos(t) };
}

/** ASHRAE incidence-angle modifier, b0 = 0.05 (as pvlib.iam.ashrae). */
export function iamAshrae(cosAoi: number): number {
  if (cosAoi <= 0) return 0;
  return Math.max(0, 1 - 0.05 * (1 / cosAoi - 1));
}

/** Plane-of-array irradiance, W/m2: isotropic sky (Liu & Jordan), ground reflection, IAM on the beam. */
export function planeOfArrayW(irr: Irradiance, cosAoi: number, tiltDeg: number, albedo: number): number {
  const ct = Math.cos(tiltDeg * RAD);
  const beam = cosAoi > 0 ? irr.dni * cosAoi * iamAshrae(cosAoi) : 0;
  return Math.max(0, beam + (irr.dhi * (1 + ct)) / 2 + (irr.ghi * albedo * (1 - ct)) / 2);
}

// ---- 6: the array --------------------------------------------------------------

export interface PvArray extends Orientation {
  /** DC nameplate, kWp. */
  readonly kWp: number;
  /** AC limit of the inverter, W. */
  readonly inverterW: number;
  /** Cabling, inverter, soiling, mismatch: parts per thousand (PVGIS default 140). */
  readonly systemLossPermille: number;
  /** Power temperature coefficient, per K (crystalline silicon about -0.0035). */
  readonly tempCoeffPerK: number;
  /** Nominal operating cell temperature, °C. */
  readonly noctC: number;
}

export const PV_DEFAULTS = { systemLossPermille: 140, tempCoeffPerK: -0.0035, noctC: 45 } as const;

export function checkPvArray(a: PvArray): string[] {
  const p: string[] = [];
  if (!(a.kWp > 0 && a.kWp <= 1_000)) p.push("kWp: (0, 1000]");
  if (!(a.tiltDeg >= 0 && a.tiltDeg <= 90)) p.push("tiltDeg: 0..90");
  if (!(a.azimuthDeg >= 0 && a.azimuthDeg < 360)) p.push("azimuthDeg: 0..<360");
  if (!(Number.isSafeInteger(a.inverterW) && a.inverterW > 0)) p.push("inverterW: a whole number > 0");
  if (!(Number.isSafeInteger(a.systemLossPermille) && a.systemLossPermille >= 0 && a.systemLossPermille < 1_000)) p.push("systemLossPermille: 0..999");
  if (!(a.tempCoeffPerK <= 0 && a.tempCoeffPerK > -0.02)) p.push("tempCoeffPerK: (-0.02, 0]");
  if (!(a.noctC >= 20 && a.noctC <= 80)) p.push("noctC: 20..80");
  return p;
}

/** DC-to-AC output per kWp (before the inverter's limit) for a plane-of-array irradiance and air temperature, W. */
export function pvWPerKwp(poaW: number, ambientC: number, a: Pick<PvArray, "systemLossPermille" | "tempCoeffPerK" | "noctC">): number {
  if (poaW <= 0) return 0;
  const cellC = ambientC + (poaW * (a.noctC - 20)) / 800;
  return Math.max(0, poaW * (1 + a.tempCoeffPerK * (cellC - 25)) * (1 - a.systemLossPermille / 1_000));
}

// ---- Per-day tables -------------------------------------------------------------

/**
 * One local day of a site, minute by minute (index 0..1440, 1440 being the
 * next midnight, so a query inside the last minute can interpolate): the sun
 * vector, the clear-sky irradiance, the extraterrestrial irradiance. The
 * expensive trigonometry, done once per site and day for every array.
 */
export interface SunDay {
  readonly day: number;
  readonly east: Float64Array;
  readonly north: Float64Array;
  readonly up: Float64Array;
  readonly ghiClear: Float64Array;
  readonly dniExtraW: number;
}

export const SAMPLES_PER_DAY = MIN_PER_DAY + 1;

export function sunDay(site: Site, day: number): SunDay {
  const start = localDayStartMs(day, offsetMsOf(site));
  const east = new Float64Array(SAMPLES_PER_DAY);
  const north = new Float64Array(SAMPLES_PER_DAY);
  const up = new Float64Array(SAMPLES_PER_DAY);
  const ghiClear = new Float64Array(SAMPLES_PER_DAY);
  const noonMs = start + 12 * MS_PER_HOUR;
  const dniExtraW = extraterrestrialNormalW(dayOfYear(Math.floor(noonMs / MS_PER_DAY)));
  const tl = site.linkeTurbidity ?? SITE_DEFAULTS.linkeTurbidity;
  const alt = site.altitudeM ?? SITE_DEFAULTS.altitudeM;
  const v: SunVector = { east: 0, north: 0, up: 0 };
  for (let m = 0; m < SAMPLES_PER_DAY; m++) {
    sunVector(site.latitudeDeg, site.longitudeDeg, start + m * MS_PER_MIN, v);
    east[m] = v.east;
    north[m] = v.north;
    up[m] = v.up;
    ghiClear[m] = ineichenClearSky(v.up, dniExtraW, tl, alt).ghi;
  }
  return { day, east, north, up, ghiClear, dniExtraW };
}

/**
 * W per kWp (DC, after temperature and system losses; the inverter limit is
 * the array's own) for each minute of the day, under the weather's clear-sky
 * index `kc` and air temperature `airC` (both per minute, SAMPLES_PER_DAY
 * long).
 */
export function pvDayWPerKwp(site: Site, sun: SunDay, kc: Float32Array, airC: Float32Array, o: Orientation, losses: Pick<PvArray, "systemLossPermille" | "tempCoeffPerK" | "noctC"> = PV_DEFAULTS): Float32Array {
  assert(kc.length === SAMPLES_PER_DAY && airC.length === SAMPLES_PER_DAY, "per-minute weather for the whole day");
  const n = panelNormal(o);
  const albedo = site.albedo ?? SITE_DEFAULTS.albedo;
  const out = new Float32Array(SAMPLES_PER_DAY);
  for (let m = 0; m < SAMPLES_PER_DAY; m++) {
    const cosZ = sun.up[m] as number;
    if (cosZ <= 0) continue;
    const ghi = (sun.ghiClear[m] as number) * (kc[m] as number);
    const irr = erbsSplit(ghi, cosZ, sun.dniExtraW);
    const cosAoi = n.east * (sun.east[m] as number) + n.north * (sun.north[m] as number) + n.up * cosZ;
    out[m] = pvWPerKwp(planeOfArrayW(irr, cosAoi, o.tiltDeg, albedo), airC[m] as number, losses);
  }
  return out;
}

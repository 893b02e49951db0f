// GET /metrics: the box's figures in the Prometheus text format (version
// 0.0.4), for a Prometheus server or any scraper on the LAN.
//
// Written by hand rather than with prom-client: the box has a dozen
// families, all but one read from status objects the node, the meters and
// the stream already keep (so a scrape renders them, nothing is counted
// twice), and prom-client's global registry, default process metrics and
// collectors would be more code to tame than these hundred lines. The one
// thing counted here is the HTTP latency histogram, whose label set is
// bounded (route patterns, methods and status codes; seriesMax at most).
// Durations are in seconds, Prometheus's base unit (the box measures
// milliseconds; they are converted here, on the way out).
//
//   peergrid_block_height                        gauge
//   peergrid_head_age_seconds                    gauge    now - the head block's time
//   peergrid_commit_latency_seconds{quantile}    gauge    p50, p99, max of the node's window
//   peergrid_commit_latency_samples_total        counter
//   peergrid_raft_role{role}                     gauge    1 for the box's role, 0 for the others
//   peergrid_raft_term                           gauge
//   peergrid_peers_connected / _configured       gauge
//   peergrid_mempool_txs                         gauge
//   peergrid_meter_polls_total{meter,result}     counter  good, failed, flagged
//   peergrid_meter_poll_latency_seconds{meter}   gauge    the last poll's
//   peergrid_meter_readings_total{outcome}       counter  accepted, refused by the pool
//   peergrid_mqtt_connected                      gauge    (only with MQTT)
//   peergrid_mqtt_outbox_depth                   gauge    (only with MQTT)
//   peergrid_readings_pruned_to_height           gauge    (only with retention) blocks up to it hold no raw readings
//   peergrid_readings_pruned_rows_total          counter  (only with retention) reading rows deleted since start
//   peergrid_history_from_height                 gauge    0, or the block whose checkpoint this box caught up from
//   peergrid_http_request_duration_seconds       histogram {route, method, code}
//   peergrid_http_rate_limited_total             counter
//   peergrid_stream_clients                      gauge
//   peergrid_stream_dropped_total                counter
import type { MetersStatus } from "./meters.js";
import type { NodeStatus } from "./node.js";

export type MetricType = "gauge" | "counter" | "histogram";

export interface Sample {
  /** Appended to the family's name: a histogram's _bucket, _sum and _count. */
  readonly suffix?: "_bucket" | "_sum" | "_count";
  readonly labels?: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface MetricFamily {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly samples: readonly Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** The text exposition of `families`, each with its HELP and TYPE lines. */
export function renderMetrics(families: readonly MetricFamily[]): string {
  const lines: string[] = [];
  for (const f of families) {
    if (!NAME.test(f.name)) throw new RangeError(`metric name ${f.name}`);
    lines.push(`# HELP ${f.name} ${f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels ?? {});
      for (const [k] of labels) if (!LABEL.test(k)) throw new RangeError(`label name ${k} of ${f.name}`);
      const text = labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
      lines.push(`${f.name}${s.suffix ?? ""}${text} ${formatValue(s.value)}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

/** Upper bounds (s) of the HTTP latency buckets: a LAN request takes milliseconds; a slow SD card, seconds. */
export const HTTP_BUCKETS_SECONDS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Milliseconds as seconds, for exposition. */
const seconds = (ms: number): number => ms / 1_000;

/**
 * A histogram of durations (seconds) by a small label set. Bounded: past
 * seriesMax label sets, new ones are counted under route="other" (which is
 * always allowed one series per method and code).
 */
export class DurationHistogram {
  private readonly series = new Map<string, { labels: Record<string, string>; counts: number[]; sum: number; count: number }>();

  constructor(
    readonly bucketsSeconds: readonly number[] = HTTP_BUCKETS_SECONDS,
    readonly seriesMax = 256,
  ) {
    for (let i = 1; i < bucketsSeconds.length; i++) if (!((bucketsSeconds[i] as number) > (bucketsSeconds[i - 1] as number))) throw new RangeError("buckets must increase");
  }

  observe(route: string, method: string, code: number, ms: number): void {
    let labels = { route, method, code: String(code) };
    let key = `${method} ${code} ${route}`;
    if (!this.series.has(key) && this.series.size >= this.seriesMax) {
      labels = { route: "other", method, code: String(code) };
      key = `${method} ${code} \0other`;
    }
    const s = this.series.get(key) ?? { labels, counts: this.bucketsSeconds.map(() => 0), sum: 0, count: 0 };
    this.series.set(key, s);
    const v = Number.isFinite(ms) && ms > 0 ? seconds(ms) : 0;
    // Cumulative as exposed: each bucket counts the observations at or below its bound.
    for (let i = 0; i < this.bucketsSeconds.length; i++) if (v <= (this.bucketsSeconds[i] as number)) s.counts[i] = (s.counts[i] as number) + 1;
    s.sum += v;
    s.count++;
  }

  family(name: string, help: string): MetricFamily {
    const samples: Sample[] = [];
    const ordered = [...this.series.values()].sort((a, b) => `${a.labels.route} ${a.labels.method} ${a.labels.code}`.localeCompare(`${b.labels.route} ${b.labels.method} ${b.labels.code}`));
    for (const s of ordered) {
      this.bucketsSeconds.forEach((le, i) => samples.push({ suffix: "_bucket", labels: { ...s.labels, le: String(le) }, value: s.counts[i] as number }));
      samples.push({ suffix: "_bucket", labels: { ...s.labels, le: "+Inf" }, value: s.count });
      samples.push({ suffix: "_sum", labels: s.labels, value: s.sum });
      samples.push({ suffix: "_count", labels: s.labels, value: s.count });
    }
    return { name, help, type: "histogram", samples };
  }
}

/** What an MQTT bridge reports (daemon/mqtt.ts), when the box has one. */
export interface MqttStatus {
  readonly connected: boolean;
  readonly outboxDepth: number;
}

export interface MetricsSources {
  readonly nowMs: number;
  readonly status: Pick<NodeStatus, "height" | "lastBlockTimeMs" | "commitLatencyMs" | "role" | "term" | "peers" | "mempool" | "retention" | "historyFrom">;
  readonly meters: MetersStatus | null;
  readonly mqtt: MqttStatus | null;
  readonly http: DurationHistogram;
  readonly rateLimited: number;
  readonly stream: { readonly clients: number; readonly dropped: number };
}

const RAFT_ROLES = ["follower", "preCandidate", "candidate", "leader"] as const;

const gauge = (name: string, help: string, value: number): MetricFamily => ({ name, help, type: "gauge", samples: [{ value }] });
const counter = (name: string, help: string, value: number): MetricFamily => ({ name, help, type: "counter", samples: [{ value }] });

/** The box's metric families, from its status objects. */
export function boxMetrics(s: MetricsSources): MetricFamily[] {
  const st = s.status;
  const lat = st.commitLatencyMs;
  const quantiles: Sample[] = [];
  if (lat.p50 !== null) quantiles.push({ labels: { quantile: "0.5" }, value: seconds(lat.p50) });
  if (lat.p99 !== null) quantiles.push({ labels: { quantile: "0.99" }, value: seconds(lat.p99) });
  if (lat.max !== null) quantiles.push({ labels: { quantile: "1" }, value: seconds(lat.max) });
  const families: MetricFamily[] = [
    gauge("peergrid_block_height", "Height of the newest block this box applied.", st.height),
    gauge("peergrid_head_age_seconds", "Seconds since the time of the newest applied block.", seconds(Math.max(0, s.nowMs - st.lastBlockTimeMs))),
    { name: "peergrid_commit_latency_seconds", help: "Commit latency in seconds of transactions submitted to this box, over its recent window (quantile 1: the maximum).", type: "gauge", samples: quantiles },
    counter("peergrid_commit_latency_samples_total", "Transactions submitted here whose commit latency was measured.", lat.count),
    { name: "peergrid_raft_role", help: "The box's Raft role: 1 for the role it has.", type: "gauge", samples: RAFT_ROLES.map((role) => ({ labels: { role }, value: st.role === role ? 1 : 0 })) },
    gauge("peergrid_raft_term", "The box's Raft term.", st.term),
    gauge("peergrid_peers_connected", "Other boxes of the cluster this box has a live link to.", st.peers.filter((p) => p.connected).length),
    gauge("peergrid_peers_configured", "Other boxes in this box's Raft configuration.", st.peers.length),
    gauge("peergrid_mempool_txs", "Transactions waiting in this box's pool.", st.mempool.txs),
    ...meterFamilies(s.meters),
    ...(st.retention === null
      ? []
      : [
          gauge("peergrid_readings_pruned_to_height", "Blocks up to this height no longer hold their raw readings (retention).", st.retention.readingsPrunedTo),
          counter("peergrid_readings_pruned_rows_total", "Reading rows deleted by retention since the box started.", st.retention.rowsDeleted),
        ]),
    gauge("peergrid_history_from_height", "0: this box holds the chain from genesis; otherwise the block whose checkpoint it caught up from (it lacks blocks before it).", st.historyFrom),
    ...(s.mqtt === null
      ? []
      : [gauge("peergrid_mqtt_connected", "1 while the MQTT bridge is connected to its broker.", s.mqtt.connected ? 1 : 0), gauge("peergrid_mqtt_outbox_depth", "Messages waiting in the MQTT bridge's outbox.", s.mqtt.outboxDepth)]),
    s.http.family("peergrid_http_request_duration_seconds", "HTTP API request durations in seconds, by route pattern, method and status code (the stream excluded)."),
    counter("peergrid_http_rate_limited_total", "HTTP requests refused for exceeding a rate limit.", s.rateLimited),
    gauge("peergrid_stream_clients", "Clients connected to the live stream.", s.stream.clients),
    counter("peergrid_stream_dropped_total", "Stream clients dropped for falling too far behind.", s.stream.dropped),
  ];
  return families;
}

function meterFamilies(m: MetersStatus | null): MetricFamily[] {
  const polls: Sample[] = [];
  const latency: Sample[] = [];
  for (const bus of m?.buses ?? []) {
    for (const meter of bus.meters) {
      const id = String(meter.meterId);
      polls.push({ labels: { meter: id, result: "good" }, value: meter.stats.good }, { labels: { meter: id, result: "failed" }, value: meter.stats.failed }, { labels: { meter: id, result: "flagged" }, value: meter.stats.flagged });
      if (meter.stats.lastLatencyMs !== null) latency.push({ labels: { meter: id }, value: seconds(meter.stats.lastLatencyMs) });
    }
  }
  const submitted = m?.submitted ?? { accepted: 0, refused: 0 };
  return [
    { name: "peergrid_meter_polls_total", help: "Polls of each meter of this box: good, failed (no answer) and flagged (a value failed its checks).", type: "counter", samples: polls },
    { name: "peergrid_meter_poll_latency_seconds", help: "The last poll's latency of each meter in seconds, from its start to its last reply.", type: "gauge", samples: latency },
    {
      name: "peergrid_meter_readings_total",
      help: "Readings of this box's meters handed to the pool: accepted or refused.",
      type: "counter",
      samples: [
        { labels: { outcome: "accepted" }, value: submitted.accepted },
        { labels: { outcome: "refused" }, value: submitted.refused },
      ],
    },
  ];
}

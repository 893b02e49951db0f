// A real mosquitto broker (Debian's mosquitto) and its client tools
// (mosquitto-clients: mosquitto_sub, mosquitto_pub) for integration tests.
// Each broker gets its own directory with its configuration (and its
// persistence file, when asked), on a free loopback port; restart() stops and
// starts it again on the same port, as an operator restarting the broker would.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";

const START_TIMEOUT_MS = 10_000;

/** Every subscriber running and every broker not closed, for stopAll(). */
const running = new Set<{ shutdown(): Promise<void> }>();

/** Stop every subscriber and close every broker still there (a test's `after` hook: a failed test leaves none behind). */
export async function stopAll(): Promise<void> {
  for (const r of [...running]) await r.shutdown();
}

export interface Mosquitto {
  readonly port: number;
  readonly dir: string;
  /** SIGTERM, and wait for the exit (with persistence, it saves its database first). */
  stop(): Promise<void>;
  /** Start it again, same port and configuration. */
  start(): Promise<void>;
  /** Stop it and remove its directory. */
  close(): Promise<void>;
  /** What it logged lately (for failure messages). */
  log(): string;
}

/** A port free on 127.0.0.1 now (the kernel's pick; another process could take it before mosquitto does). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Start mosquitto on 127.0.0.1 (anonymous clients allowed); `persistence`: keep retained messages and sessions across restarts. */
export async function startMosquitto(options: { readonly persistence?: boolean } = {}): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), "peergrid-mosquitto-"));
  let lastError: unknown = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const conf = join(dir, "mosquitto.conf");
    writeFileSync(
      conf,
      [
        `listener ${port} 127.0.0.1`,
        "allow_anonymous true",
        // Run as root, mosquitto would switch to the "mosquitto" user, who cannot write the test's directory.
        `user ${userInfo().username}`,
        `persistence ${options.persistence === true ? "true" : "false"}`,
        `persistence_location ${dir}/`,
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "",
      ].join("\n"),
    );
    const broker = new Broker(conf, dir, port);
    try {
      await broker.start();
      running.add(broker);
      return broker;
    } catch (err) {
      lastError = err; // most likely the port was taken in between: try another
    }
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError;
}

class Broker implements Mosquitto {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private logText = "";

  constructor(
    private readonly conf: string,
    readonly dir: string,
    readonly port: number,
  ) {}

  log(): string {
    return this.logText;
  }

  async start(): Promise<void> {
    if (this.child !== null) throw new Error("mosquitto is running");
    const child = spawn("mosquitto", ["-c", this.conf], { stdio: ["ignore", "ignore", "pipe"] });
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once("exit", () => resolve());
      child.once("error", () => resolve()); // not started at all (not installed)
    });
    await new Promise<void>((resolve, reject) => {
      child.once("error", (err) => {
        this.child = null;
        reject(notInstalled("mosquitto", err));
      });
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`mosquitto did not start within ${START_TIMEOUT_MS} ms: ${this.logText}`));
      }, START_TIMEOUT_MS);
      child.stderr?.on("data", (d: Buffer) => {
        this.logText = (this.logText + d.toString()).slice(-8_000);
        if (/mosquitto version \S+ running/.test(this.logText)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        this.child = null;
        reject(new Error(`mosquitto exited with ${code}: ${this.logText}`));
      });
    });
    this.logText = "";
    child.once("exit", () => {
      if (this.child === child) this.child = null;
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child !== null) child.kill("SIGTERM");
    await this.exited;
    this.child = null;
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
    running.delete(this);
  }

  shutdown(): Promise<void> {
    return this.close();
  }
}

export interface Received {
  readonly topic: string;
  readonly payload: string;
  readonly retained: boolean;
}

/**
 * mosquitto_sub on a broker, collecting every message. start() resolves once a probe published after
 * it has come through, so nothing published after start() is missed. (Not its SUBACK debug line:
 * mosquitto_sub buffers its output on a pipe, and flushes it only when it prints a message.)
 */
export class Subscriber {
  readonly messages: Received[] = [];
  private readonly waiters = new Set<() => void>();
  private partial = "";
  private readonly exited: Promise<number | null>;
  private output = "";

  private probed = false;

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => {
      child.once("exit", (code) => resolve(code));
      child.once("error", (err) => {
        this.output += notInstalled("mosquitto_sub", err).message;
        resolve(null);
      });
    });
    child.stdout?.on("data", (d: Buffer) => this.onData(d));
    child.stderr?.on("data", (d: Buffer) => (this.output = (this.output + d.toString()).slice(-8_000)));
  }

  /**
   * `clientId` with `persistent`: a durable session (-c, QoS 1) that the broker keeps, with what is
   * published to it meanwhile, while this subscriber is away. `timeoutS`: mosquitto_sub's own limit,
   * so that it never outlives a failed test. `will`: its last will, which the broker publishes once the
   * subscriber is gone without a word (kill(), not stop()).
   */
  static async start(
    port: number,
    topics: readonly string[],
    o: { readonly clientId?: string; readonly persistent?: boolean; readonly timeoutS?: number; readonly username?: string; readonly password?: string; readonly will?: { readonly topic: string; readonly payload: string; readonly retain?: boolean } } = {},
  ): Promise<Subscriber> {
    const probeTopic = `${PROBE_PREFIX}${process.pid}/${++probes}`;
    const credentials: string[] = [];
    if (o.username !== undefined) credentials.push("-u", o.username);
    if (o.password !== undefined) credentials.push("-P", o.password);
    const args = ["-h", "127.0.0.1", "-p", String(port), "-q", "1", "-W", String(o.timeoutS ?? 60), "-F", "MSG\t%r\t%t\t%p", ...credentials];
    if (o.clientId !== undefined) args.push("-i", o.clientId);
    if (o.persistent === true) args.push("-c");
    if (o.will !== undefined) args.push("--will-topic", o.will.topic, "--will-payload", o.will.payload, "--will-qos", "1", ...(o.will.retain === true ? ["--will-retain"] : []));
    for (const t of [...topics, probeTopic]) args.push("-t", t);
    const sub = new Subscriber(spawn("mosquitto_sub", args, { stdio: ["ignore", "pipe", "pipe"] }));
    running.add(sub);
    const deadline = Date.now() + 5_000;
    let exitCode: number | null | undefined;
    void sub.exited.then((code) => (exitCode = code));
    while (!sub.probed) {
      if (exitCode !== undefined) throw new Error(`mosquitto_sub exited with ${exitCode}: ${sub.output}`);
      if (Date.now() > deadline) {
        await sub.stop();
        throw new Error(`mosquitto_sub did not subscribe within 5 s: ${sub.output}`);
      }
      await publishWith(port, probeTopic, "probe", false, credentials).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return sub;
  }

  private onData(d: Buffer): void {
    const lines = (this.partial + d.toString()).split("\n");
    this.partial = lines.pop() ?? "";
    for (const line of lines) {
      this.output = (this.output + line + "\n").slice(-8_000);
      const m = /^MSG\t([01])\t([^\t]*)\t(.*)$/.exec(line);
      if (m === null) continue;
      const topic = m[2] as string;
      // Probes are only a handshake (a durable session may bring back those of an earlier start).
      if (topic.startsWith(PROBE_PREFIX)) this.probed = true;
      else this.messages.push({ retained: m[1] === "1", topic, payload: m[3] as string });
    }
    for (const w of this.waiters) w();
  }

  /** The first message (already received or to come) that `match` accepts; fails after timeoutMs. */
  waitFor(match: (m: Received) => boolean, timeoutMs = 5_000, what = "a message"): Promise<Received> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.messages.find(match);
        if (found === undefined) return false;
        cleanup();
        resolve(found);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no ${what} within ${timeoutMs} ms; received:\n${this.messages.map((m) => `${m.retained ? "r " : "  "}${m.topic} ${m.payload}`).join("\n")}`));
      }, timeoutMs);
      const waiter = () => void check();
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      if (check()) return;
      this.waiters.add(waiter);
    });
  }

  /** Messages on one topic, in order of arrival. */
  on(topic: string): Received[] {
    return this.messages.filter((m) => m.topic === topic);
  }

  /** Disconnect cleanly (SIGTERM: mosquitto_sub says DISCONNECT, so no will). */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGTERM");
    await this.exited;
    running.delete(this);
  }

  /** Vanish without a word (SIGKILL: the broker publishes the will). */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
    running.delete(this);
  }

  shutdown(): Promise<void> {
    return this.stop();
  }
}

let probes = 0;
const PROBE_PREFIX = "peergrid-test/probe/";

/** mosquitto_pub one message; rejects with what it printed if it fails. */
export function publish(port: number, topic: string, message: string, o: { readonly retain?: boolean } = {}): Promise<void> {
  return publishWith(port, topic, message, o.retain === true, []);
}

function publishWith(port: number, topic: string, message: string, retain: boolean, extra: readonly string[]): Promise<void> {
  const args = ["-h", "127.0.0.1", "-p", String(port), "-q", "1", "-t", topic, "-m", message, ...extra];
  if (retain) args.push("-r");
  const child = spawn("mosquitto_pub", args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.once("error", (err) => reject(notInstalled("mosquitto_pub", err)));
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_pub -t ${topic} exited with ${code}: ${out}`))));
  });
}

function notInstalled(what: string, err: Error): Error {
  return new Error(`cannot run ${what} (${err.message}): the MQTT tests need Debian's mosquitto and mosquitto-clients (apt-get install -y mosquitto mosquitto-clients)`);
}

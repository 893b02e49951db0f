// Start and stop test/helpers/pymodbus_server.py (Debian's python3-pymodbus)
// for integration tests; the register images are handed in as JSON.
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("../../../test/helpers/pymodbus_server.py", import.meta.url));

export interface UnitImage {
  readonly input?: readonly (readonly [number, readonly number[]])[];
  readonly holding?: readonly (readonly [number, readonly number[]])[];
}

export interface PymodbusServer {
  readonly port: number;
  readonly child: ChildProcess;
  /** Change registers or coils while it runs (a meter's counters moving); resolves once the server has them. */
  set(unit: number, table: "input" | "holding" | "coils", address: number, values: readonly (number | boolean)[]): Promise<void>;
  stop(): Promise<void>;
}

/** A TCP server on `port` (0: any free one), or an RTU server on a serial line. */
export async function startPymodbus(units: Record<number, UnitImage>, port = 0, serial?: { readonly path: string; readonly baud: number }): Promise<PymodbusServer> {
  const child = spawn("/usr/bin/python3", [SCRIPT], { stdio: ["pipe", "pipe", "pipe"] });
  // The spec is the first line; standard input stays open for changes (and its end, when this process dies, ends the server).
  child.stdin.write(`${JSON.stringify({ port, units, ...(serial !== undefined && { serial }) })}\n`);
  const { match, stop } = await started(child, "stdout", /ready (\d+)/, "pymodbus", 10_000, "SIGKILL");
  let sent = 0;
  let partial = "";
  const acks: { readonly n: number; readonly resolve: () => void }[] = []; // in the order sent
  child.stdout?.on("data", (d: Buffer) => {
    const lines = (partial + d.toString()).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      const applied = Number(/^set (\d+)$/.exec(line)?.[1] ?? 0);
      while (acks.length > 0 && (acks[0]?.n ?? Infinity) <= applied) acks.shift()?.resolve();
    }
  });
  const set: PymodbusServer["set"] = (unit, table, address, values) =>
    new Promise((resolve, reject) => {
      acks.push({ n: ++sent, resolve });
      child.stdin?.write(`${JSON.stringify({ unit, table, address, values })}\n`, (err) => err && reject(err));
    });
  return { port: Number(match[1]), child, set, stop };
}

export interface SerialPair {
  /** The two ends of one virtual serial line: what is written to one is read from the other. */
  readonly a: string;
  readonly b: string;
  stop(): Promise<void>;
}

/** A pseudo-terminal pair made with socat, at stable paths (symlinks) under `dir`. */
export async function startSocatPair(dir: string): Promise<SerialPair> {
  const a = `${dir}/a`;
  const b = `${dir}/b`;
  const child = spawn("socat", ["-d", "-d", `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { stdio: ["ignore", "ignore", "pipe"] });
  const { stop } = await started(child, "stderr", /starting data transfer loop/, "socat", 5_000, "SIGTERM");
  return { a, b, stop };
}

/**
 * Wait until `child` has written text matching `ready` on `stream`; then its match, and a stop() that
 * sends `signal` and waits for the exit. Fails, killing it, if it exits first or takes over `timeoutMs`,
 * with what it wrote to stderr.
 */
function started(child: ChildProcess, stream: "stdout" | "stderr", ready: RegExp, what: string, timeoutMs: number, signal: NodeJS.Signals): Promise<{ match: RegExpExecArray; stop: () => Promise<void> }> {
  let err = "";
  child.stderr?.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-2_000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${what} did not start within ${timeoutMs / 1_000} s: ${err}`));
    }, timeoutMs);
    let out = "";
    child[stream]?.on("data", (d: Buffer) => {
      out += d.toString();
      const match = ready.exec(out);
      if (match === null) return;
      clearTimeout(timer);
      resolve({
        match,
        stop: async () => {
          child.kill(signal);
          await exited;
        },
      });
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}: ${err}`));
    });
  });
}

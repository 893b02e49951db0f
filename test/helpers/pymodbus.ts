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
  stop(): Promise<void>;
}

/** A TCP server on `port` (0: any free one), or an RTU server on a serial line. */
export function startPymodbus(units: Record<number, UnitImage>, port = 0, serial?: { readonly path: string; readonly baud: number }): Promise<PymodbusServer> {
  const child = spawn("/usr/bin/python3", [SCRIPT], { stdio: ["pipe", "pipe", "pipe"] });
  child.stdin.end(JSON.stringify({ port, units, ...(serial !== undefined && { serial }) }));
  let err = "";
  child.stderr.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-2_000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`pymodbus did not start within 10 s: ${err}`));
    }, 10_000);
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /ready (\d+)/.exec(out);
      if (m === null) return;
      clearTimeout(timer);
      resolve({
        port: Number(m[1]),
        child,
        stop: async () => {
          child.kill("SIGKILL");
          await exited;
        },
      });
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`pymodbus exited with ${code}: ${err}`));
    });
  });
}

export interface SerialPair {
  /** The two ends of one virtual serial line: what is written to one is read from the other. */
  readonly a: string;
  readonly b: string;
  stop(): Promise<void>;
}

/** A pseudo-terminal pair made with socat, at stable paths (symlinks) under `dir`. */
export function startSocatPair(dir: string): Promise<SerialPair> {
  const a = `${dir}/a`;
  const b = `${dir}/b`;
  const child = spawn("socat", ["-d", "-d", `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { stdio: ["ignore", "ignore", "pipe"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return new Promise((resolve, reject) => {
    let err = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`socat did not start within 5 s: ${err}`));
    }, 5_000);
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
      if (!/starting data transfer loop/.test(err)) return;
      clearTimeout(timer);
      resolve({
        a,
        b,
        stop: async () => {
          child.kill("SIGTERM");
          await exited;
        },
      });
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`socat exited with ${code}: ${err}`));
    });
  });
}

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

export function startPymodbus(units: Record<number, UnitImage>, port = 0): Promise<PymodbusServer> {
  const child = spawn("/usr/bin/python3", [SCRIPT], { stdio: ["pipe", "pipe", "pipe"] });
  child.stdin.end(JSON.stringify({ port, units }));
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

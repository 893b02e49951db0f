// Run the `peergrid` command line in-process, as the tests of its commands do.
import { main } from "../../daemon/cli.js";

/** Run `peergrid ...args`; `out` is what it printed, to stdout and (usage errors) stderr, in order. */
export async function runCli(...args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string) => lines.push(String(chunk).trimEnd()) > 0) as typeof process.stderr.write;
  try {
    const code = await main(["node", "peergrid", ...args], (s) => lines.push(s));
    return { code, out: lines.join("\n") };
  } finally {
    process.stderr.write = write;
  }
}

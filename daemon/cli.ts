// The `peergrid` command line. commander gives every subcommand its --help
// and consistent errors for unknown options, which hand-rolled parsing gets
// wrong in small ways.
import { Command, CommanderError, Option } from "commander";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { PeergridError, StoreError, UsageError } from "../ledger/errors.js";
import { type Genesis, parseGenesis, rolesMask } from "../ledger/genesis.js";
import { parseHex, toHex } from "../ledger/hash.js";
import { NodeSigner, NodeVerifier, readKeyFile, writeKeyFile } from "../ledger/keys.js";
import { Ledger, ledgerPath } from "../ledger/ledger.js";
import { LedgerStore } from "../ledger/store.js";
import { type ProposalAction, Role, type RoleName } from "../ledger/tx.js";
import { type VerifyReport, verifyChain } from "../ledger/verify.js";
import { type MeterAddress, meterRead, meterScan } from "../device/commission.js";
import { SHIPPED_METERS, SUNSPEC, builtInKinds, factoryDefaults, loadMeterKind, loadRegisterMap } from "../device/meter-kind.js";
import { runSimulatedMeters } from "./simulate-meters.js";
import { UNIT_ID_MAX, UNIT_ID_MIN } from "../device/modbus-frame.js";
import { buildDemoChain } from "./demo-chain.js";
import { DEMO_DEFAULTS, parseTimeOfDay, runDemo } from "./demo.js";
import { type ClearingRule, clear } from "../market/clearing.js";
import { optionsFor, parseOrderFile, resultJson } from "../market/order-file.js";
import { parseIntervalStart, replayInterval } from "../market/replay.js";
import { parseBiddingPolicy } from "./auto-bidder.js";
import { parseControllerConfig } from "./controller.js";
import { type SubmitResult, parseMemberList, parseParamChanges, proposalBody, signAndSubmit } from "./governance-cli.js";
import { parseMeterSpec } from "./meters.js";
import { parseAddress, parsePeer, runBox } from "./start.js";
import { ADMIN_TOKEN_CHARS_MIN, loadConfig } from "./config.js";
import { type RetentionOptions, retentionOfDays } from "./ledger-pruner.js";
import { parseClock, simNow } from "./sim-clock.js";
import { registerSimCommand } from "./sim-command.js";
import { DEFAULT_MQTT_OPTIONS, type MqttOptions, mqttOptionProblems } from "./mqtt.js";

/** --mqtt embedded | embedded@HOST:PORT | mqtt://HOST[:PORT] */
function mqttOptionOf(text: string): MqttOptions {
  const at = /^embedded(?:@(.+))?$/.exec(text);
  const o: MqttOptions = at === null ? { ...DEFAULT_MQTT_OPTIONS, url: text } : { ...DEFAULT_MQTT_OPTIONS, ...(at[1] !== undefined && { embeddedListen: parseAddress(at[1], "--mqtt embedded@") }) };
  const problems = mqttOptionProblems(o);
  if (problems.length > 0) throw new UsageError(`--mqtt: ${problems.join("; ")}`);
  return o;
}

/** Exit codes: 0 ok, 1 a check found a fault, 2 bad usage or input. */
export const Exit = { ok: 0, fault: 1, usage: 2 } as const;

function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${what} ${path} is not valid JSON: ${(err as Error).message}`);
  }
}

/** A box's data directory, or the ledger.sqlite file itself. */
function storePathOf(dataDir: string): string {
  return dataDir.endsWith(".sqlite") ? dataDir : ledgerPath(dataDir);
}

function parseIntOption(name: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, got "${value}"`);
    return Number(value);
  };
}

/** The admin routes' token from its file (as a config file's http.adminTokenFile). */
function readAdminToken(file: string): string {
  let token: string;
  try {
    token = readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new UsageError(`--admin-token-file: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (token.length < ADMIN_TOKEN_CHARS_MIN) throw new UsageError(`--admin-token-file: the token in ${file} is ${token.length} characters; it must be at least ${ADMIN_TOKEN_CHARS_MIN} (make one with: openssl rand -hex 32 > ${file})`);
  return token;
}

/** NAME:ROLE[+ROLE...]:KEY where KEY is a key file or 64 hex digits. */
function parseMemberSpec(spec: string): Genesis["members"][number] {
  const parts = spec.split(":");
  if (parts.length !== 3) throw new UsageError(`--member "${spec}" must be NAME:ROLES:KEY, e.g. box-1:box+admin:box-1.key`);
  const [name, roleList, key] = parts as [string, string, string];
  const roles = parseRoleList(roleList, `--member "${spec}"`);
  const publicKey = parseHex(key, 32) !== null ? key.toLowerCase() : toHex(readKeyFile(key).publicKey);
  return { name, publicKey, roles };
}

/** ROLE[+ROLE...], e.g. box+admin. */
function parseRoleList(list: string, what: string): RoleName[] {
  const roles = list.split("+");
  for (const r of roles) if (!(r in Role)) throw new UsageError(`${what}: unknown role "${r}" (roles: ${Object.keys(Role).join(", ")})`);
  return roles as RoleName[];
}

function printReport(report: VerifyReport, json: boolean, log: (s: string) => void): void {
  if (json) {
    log(JSON.stringify(report, null, 2));
    return;
  }
  log(`chain        ${report.chainId} ${report.chainHash}`);
  log(`blocks       ${report.blocks} checked (head ${report.headHeight})`);
  log(`transactions ${report.transactions} ${JSON.stringify(report.byType)}`);
  log(`rejected     ${Object.keys(report.rejected).length === 0 ? "none" : JSON.stringify(report.rejected)} (valid verdicts, re-derived identically)`);
  log(`state root   ${report.stateRoot} (${report.stateRecords} records)`);
  const p = report.readingsPrunedTo;
  const b = report.historyFrom;
  if (p > 0) log(`pruned       the readings of blocks 1..${p} (retention): their headers, signatures and other transactions checked, the rest re-applied from the checkpoint at ${p}`);
  if (b > 0) {
    const gaps = report.historyGaps.map((g) => (g.from === g.to ? `${g.from}` : `${g.from}..${g.to}`)).join(", ");
    log(`history      this box caught up from a peer's checkpoint of the state after block ${b}: ${gaps === "" ? "" : `blocks ${gaps} are not held, `}block ${b} by header only; the chain across that gap was checked when it was installed, not here`);
  }
  if (report.fault === null) {
    const from = b > 0 ? "the headers this box holds" : "headers from genesis";
    log(p > 0 && p < report.headHeight ? `OK: ${from}, and every block from ${p + 1} to ${report.headHeight} re-verified` : p > 0 ? `OK: ${from} to ${report.headHeight} verified` : `OK: every block from genesis to ${report.headHeight} re-verified`);
    return;
  }
  const f = report.fault;
  const where = f.txIndex === null ? `block ${f.height}` : `block ${f.height}, transaction ${f.txIndex}${f.txId === null ? "" : ` (id ${f.txId})`}`;
  log(`FAULT at ${where}: ${f.code}: ${f.message}`);
}

export function buildProgram(log: (s: string) => void, setExit: (code: number) => void): Command {
  const program = new Command("peergrid")
    .description("peergrid: signed meter readings and a neighbourhood energy market on a ledger shared by every box")
    .showHelpAfterError()
    .exitOverride();
  program.configureOutput({ writeOut: (s) => log(s.trimEnd()), writeErr: (s) => process.stderr.write(s) });

  program
    .command("keygen")
    .description("create an Ed25519 key file (mode 0600) for a box or a member, and print its public key")
    .requiredOption("--out <file>", "key file to write; an existing file is never overwritten")
    .action((o: { out: string }) => {
      const signer = NodeSigner.generate();
      writeKeyFile(o.out, signer);
      log(toHex(signer.publicKey));
    });

  program
    .command("genesis")
    .description("write a genesis document for a new neighbourhood")
    .requiredOption("--chain-id <id>", "the neighbourhood's chain id: lowercase letters, digits, dashes")
    .option("--member <NAME:ROLES:KEY>", "a first member; ROLES joined by + (box, user, admin, auditor, controller); KEY is a key file or 64 hex digits; repeat for each", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--time-ms <ms>", "genesis time, ms since the epoch (default: now)", parseIntOption("time-ms"))
    .option("--interval-ms <ms>", "market interval (default 900000 = 15 minutes)", parseIntOption("interval-ms"))
    .requiredOption("--out <file>", "where to write the genesis JSON")
    .action((o: { chainId: string; member: string[]; timeMs?: number; intervalMs?: number; out: string }) => {
      if (o.member.length === 0) throw new UsageError("give at least one --member (and at least one with the admin and box roles)");
      const genesis = parseGenesis({
        chainId: o.chainId,
        genesisTimeMs: o.timeMs ?? Date.now(),
        members: o.member.map(parseMemberSpec),
        ...(o.intervalMs === undefined ? {} : { market: { intervalMs: o.intervalMs } }),
      });
      try {
        writeFileSync(o.out, JSON.stringify(genesis, null, 2) + "\n", { flag: "wx" }); // never overwrite
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new UsageError(code === "EEXIST" ? `${o.out} already exists; refusing to overwrite a genesis document` : `cannot write ${o.out} (${code})`);
      }
      log(`wrote ${o.out} for chain "${genesis.chainId}" with ${genesis.members.length} members`);
    });

  program
    .command("init")
    .description("create a box's data directory and ledger from a genesis document")
    .requiredOption("--genesis <file>", "genesis document (see `peergrid genesis`)")
    .requiredOption("--data-dir <dir>", "data directory to create; holds ledger.sqlite")
    .action((o: { genesis: string; dataDir: string }) => {
      const genesis = parseGenesis(readJsonFile(o.genesis, "genesis document"));
      const ledger = Ledger.create(o.dataDir, genesis, new NodeVerifier());
      writeFileSync(join(o.dataDir, "genesis.json"), JSON.stringify(genesis, null, 2) + "\n");
      log(`initialised ${ledgerPath(o.dataDir)}: chain "${genesis.chainId}" ${toHex(ledger.state.chain.hash)}`);
      ledger.close();
    });

  program
    .command("verify")
    .description("audit a ledger from genesis: hash links, Merkle roots, signatures, every transaction re-validated, state roots; exits 1 at the first fault")
    .argument("<data-dir>", "a box's data directory (or the ledger.sqlite file itself)")
    .option("--json", "print the report as JSON")
    .action((dataDir: string, o: { json?: boolean }) => {
      const path = storePathOf(dataDir);
      let store: LedgerStore;
      try {
        store = LedgerStore.open(path, { readonly: true });
      } catch (err) {
        // A file that is corrupt, foreign or of another schema is the auditor's finding, not a usage error.
        if (!(err instanceof StoreError) || err.code === "PG_ERR_STORE_MISSING") throw err;
        log(`FAULT: ${err.code}: ${err.message}`);
        setExit(Exit.fault);
        return;
      }
      try {
        // A day of blocks takes minutes to re-verify: show progress on a terminal.
        const progress = process.stderr.isTTY
          ? (height: number, head: number) => {
              if (height % 1000 === 0 || height === head) process.stderr.write(`\rverified ${height} of ${head} blocks${height === head ? "\n" : ""}`);
            }
          : undefined;
        const report = verifyChain(store, new NodeVerifier(), progress);
        printReport(report, o.json === true, log);
        setExit(report.ok ? Exit.ok : Exit.fault);
      } finally {
        store.close();
      }
    });

  program
    .command("start")
    .description("run this box: take part in the neighbourhood's Raft cluster, cut and apply blocks, serve the HTTP API; stops cleanly on SIGTERM or Ctrl-C")
    .option("--config <file>", "everything below in one JSON file, checked before anything starts (README: running a box; example: scripts/raspberry-pi/peergrid.json)")
    .option("--data-dir <dir>", "the box's data directory (made by `peergrid init`)")
    .option("--key <file>", "the box's key file (its member key in the genesis)")
    .option("--raft-listen <host:port>", "where other boxes reach this one", "0.0.0.0:7400")
    .option("--peer <index=host:port>", "another box: its member index and Raft address; repeat for each", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--http-listen <host:port>", "the HTTP API (\"off\" for none)", "127.0.0.1:8400")
    .option("--meter <spec>", "a meter of this box: ID=MAP@tcp:HOST:PORT[/UNIT] or ID=MAP@serial:DEVICE[:BAUD[:PARITY]][/UNIT], MAP a shipped map, a map file, or sunspec; repeat for each", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--controller <controller.json>", "this box is the microgrid controller: grid-loss detection at its PCC meter, islanding, and dispatch of the premises' breakers (README: microgrid controller)")
    .option("--mqtt <broker>", "publish readings, blocks, prices, trades and the island state with Home Assistant discovery: \"embedded\" (the box's own broker on 0.0.0.0:1883), embedded@HOST:PORT, or mqtt://HOST[:PORT] (README: MQTT)")
    .option("--auto-bid <policy.json>", "trade for this box's member each market interval by this policy (sell surplus at a floor, buy shortfall up to a ceiling; README: automatic bidding)")
    .addOption(new Option("--synthetic-readings <n>", "sign n synthetic meter readings a second (benchmarks and tests, until real meters are configured)").default(0).argParser(parseIntOption("synthetic-readings")))
    .addOption(new Option("--tick-ms <ms>", "Raft tick").default(100).argParser(parseIntOption("tick-ms")))
    .addOption(new Option("--election-ticks <n>", "ticks without a leader before an election (randomised up to twice this)").default(10).argParser(parseIntOption("election-ticks")))
    .addOption(new Option("--heartbeat-ticks <n>", "ticks between a leader's heartbeats").default(1).argParser(parseIntOption("heartbeat-ticks")))
    .addOption(new Option("--block-interval-ms <ms>", "one block per interval").default(1000).argParser(parseIntOption("block-interval-ms")))
    .addOption(new Option("--keep-readings-days <days>", "keep raw meter readings this many days (at least 1/24), then give them up; everything else is kept for ever (default: every reading)").argParser((v) => {
      const r = retentionOfDays(Number(v));
      if (typeof r === "string" || v.trim() === "") throw new UsageError(`--keep-readings-days: ${typeof r === "string" ? r : "a number of days"}`);
      return r;
    }))
    .option("--admin-token-file <file>", "turns the admin routes on: a file holding their token, at least 32 characters (openssl rand -hex 32 > admin.token)")
    // The demo's own options (peergrid demo starts its boxes with them; README: the demo). Hidden: a box
    // of a real neighbourhood never runs on an accelerated clock.
    .addOption(new Option("--clock <sim=MS,real=MS,speed=N>", "run on the demo's accelerated clock: simulated ms = sim + (now - real) x speed (daemon/sim-clock.ts); duration options stay in real ms").hideHelp())
    .addOption(new Option("--exit-with-parent", "stop cleanly when standard input closes (the demo holds it open)").hideHelp())
    .action(async (o: { config?: string; dataDir?: string; key?: string; raftListen: string; peer: string[]; meter: string[]; autoBid?: string; controller?: string; mqtt?: string; httpListen: string; syntheticReadings: number; tickMs: number; electionTicks: number; heartbeatTicks: number; blockIntervalMs: number; keepReadingsDays?: RetentionOptions; adminTokenFile?: string; clock?: string; exitWithParent?: boolean }, cmd: Command) => {
      if (o.config !== undefined && o.clock !== undefined) throw new UsageError("--clock is the demo's simulated time, for boxes started with options (peergrid demo): not with --config, whose box is a real one");
      if (o.config !== undefined) {
        const given = cmd.options.filter((opt) => opt.attributeName() !== "config" && cmd.getOptionValueSource(opt.attributeName()) === "cli").map((opt) => opt.long);
        if (given.length > 0) throw new UsageError(`--config holds every setting of the box: drop ${given.join(" ")}, or put it in the file`);
        const c = loadConfig(o.config);
        setExit(await runBox({ ...c, syntheticReadingsPerS: 0 }, log));
        return;
      }
      if (o.dataDir === undefined || o.key === undefined) throw new UsageError("give --config <file>, or --data-dir and --key (and the other settings as options)");
      if (o.tickMs < 10 || o.tickMs > 10_000) throw new UsageError("--tick-ms must be 10..10000");
      if (o.heartbeatTicks < 1 || o.electionTicks <= o.heartbeatTicks) throw new UsageError("--election-ticks must be more than --heartbeat-ticks, which must be at least 1");
      if (o.blockIntervalMs < 100 || o.blockIntervalMs > 3_600_000) throw new UsageError("--block-interval-ms must be 100..3600000");
      if (o.syntheticReadings > 100_000) throw new UsageError("--synthetic-readings must be at most 100000");
      if (o.syntheticReadings > 0 && o.meter.length > 0) throw new UsageError("--synthetic-readings and --meter both sign this box's readings: use one");
      const meters = o.meter.map((m) => parseMeterSpec(m));
      if (o.autoBid !== undefined && meters.length === 0) throw new UsageError("--auto-bid forecasts from this box's meters: give at least one --meter");
      const autoBid = o.autoBid === undefined ? undefined : parseBiddingPolicy(readJsonFile(o.autoBid, "auto-bid policy"), o.autoBid);
      if (o.controller !== undefined && meters.length === 0) throw new UsageError("--controller watches the grid at this box's PCC meter: give it with --meter");
      const clock = o.clock === undefined ? undefined : parseClock(o.clock);
      if (clock !== undefined) {
        // Simulated time is for simulated meters: a real meter's energy does not run 15 times faster, and a
        // controller's protection (trip clearing times, reconnection delays) must never run on a fast clock.
        if (meters.some((m) => m.address.kind !== "tcp")) throw new UsageError("--clock (simulated time) reads simulated meters only: drop the serial --meter, or --clock");
        if (o.controller !== undefined) throw new UsageError("--clock (simulated time) and --controller do not go together: the controller's protection timings are real");
        if (o.syntheticReadings > 0) throw new UsageError("--clock (simulated time) and --synthetic-readings do not go together: give the box a simulated --meter");
      }
      const controller = o.controller === undefined ? undefined : parseControllerConfig(readJsonFile(o.controller, "controller file"), o.controller);
      const code = await runBox(
        {
          dataDir: o.dataDir,
          keyFile: o.key,
          raftListen: parseAddress(o.raftListen, "--raft-listen"),
          httpListen: o.httpListen === "off" ? null : parseAddress(o.httpListen, "--http-listen"),
          peers: new Map(o.peer.map(parsePeer)),
          syntheticReadingsPerS: o.syntheticReadings,
          meters,
          autoBid,
          controller,
          mqtt: o.mqtt === undefined ? null : mqttOptionOf(o.mqtt),
          timing: { tickMs: o.tickMs, electionTicks: o.electionTicks, heartbeatTicks: o.heartbeatTicks, blockIntervalMs: o.blockIntervalMs },
          adminToken: o.adminTokenFile === undefined ? null : readAdminToken(o.adminTokenFile),
          ...(o.keepReadingsDays !== undefined && { retention: o.keepReadingsDays }),
          ...(clock !== undefined && { clock }),
          ...(o.exitWithParent === true && { exitWithParent: true }),
        },
        log,
      );
      setExit(code);
    });

  const meter = program.command("meter").description("commissioning: talk to one meter over Modbus");
  meter
    .command("read")
    .description("read every quantity of one meter, by its register map, and print them as JSON; or say what is wrong")
    .requiredOption("--map <name|file>", `a shipped map (${SHIPPED_METERS}) or a map file`)
    .option("--tcp <host:port>", "a Modbus TCP meter or gateway")
    .option("--serial <device>", "a serial port, e.g. /dev/ttyUSB0 (Modbus RTU)")
    .addOption(new Option("--baud <n>", "serial baud rate (default: the map's factory setting)").argParser(parseIntOption("baud")))
    .addOption(new Option("--parity <p>", "serial parity (default: the map's)").choices(["none", "even", "odd"]))
    .addOption(new Option("--stop-bits <n>", "serial stop bits (default: the map's)").choices(["1", "2"]))
    .addOption(new Option("--unit <id>", "Modbus unit id (default: the map's factory id)").argParser(parseIntOption("unit")))
    .addOption(new Option("--timeout-ms <ms>", "per request").default(500).argParser(parseIntOption("timeout-ms")))
    .action(async (o: { map: string; tcp?: string; serial?: string; baud?: number; parity?: "none" | "even" | "odd"; stopBits?: "1" | "2"; unit?: number; timeoutMs: number }) => {
      if ((o.tcp === undefined) === (o.serial === undefined)) throw new UsageError("give exactly one of --tcp host:port or --serial device");
      if (o.timeoutMs < 10 || o.timeoutMs > 60_000) throw new UsageError("--timeout-ms must be 10..60000");
      const kind = loadMeterKind(o.map);
      const factory = factoryDefaults(kind);
      const unit = o.unit ?? factory.unit;
      if (unit < UNIT_ID_MIN || unit > UNIT_ID_MAX) throw new UsageError(`--unit must be ${UNIT_ID_MIN}..${UNIT_ID_MAX}`);
      const d = factory.serial;
      const tcp = o.tcp === undefined ? null : parseAddress(o.tcp, "--tcp");
      const address: MeterAddress =
        tcp !== null
          ? { kind: "tcp", host: tcp.host, port: tcp.port }
          : { kind: "rtu", path: o.serial as string, baud: o.baud ?? d.baud, parity: o.parity ?? d.parity, dataBits: d.dataBits, stopBits: o.stopBits === undefined ? d.stopBits : (Number(o.stopBits) as 1 | 2) };
      const result = await meterRead({ kind, address, unit, timeoutMs: o.timeoutMs });
      log(JSON.stringify(result, null, 2));
      setExit(result.ok ? Exit.ok : Exit.fault);
    });

  meter
    .command("scan")
    .description("find which unit ids answer on a bus, and which shipped maps fit them; prints JSON")
    .option("--tcp <host:port>", "a Modbus TCP gateway")
    .option("--serial <device>", "a serial port, e.g. /dev/ttyUSB0 (Modbus RTU)")
    .addOption(new Option("--baud <n>", "serial baud rate").default(9600).argParser(parseIntOption("baud")))
    .addOption(new Option("--parity <p>", "serial parity").choices(["none", "even", "odd"]).default("none"))
    .addOption(new Option("--stop-bits <n>", "serial stop bits").choices(["1", "2"]).default("1"))
    .option("--units <from-to>", "unit ids to try", `${UNIT_ID_MIN}-${UNIT_ID_MAX}`)
    .addOption(new Option("--timeout-ms <ms>", "per request").default(150).argParser(parseIntOption("timeout-ms")))
    .action(async (o: { tcp?: string; serial?: string; baud: number; parity: "none" | "even" | "odd"; stopBits: "1" | "2"; units: string; timeoutMs: number }) => {
      if ((o.tcp === undefined) === (o.serial === undefined)) throw new UsageError("give exactly one of --tcp host:port or --serial device");
      const m = /^(\d{1,3})(?:-(\d{1,3}))?$/.exec(o.units);
      const from = Number(m?.[1]);
      const to = Number(m?.[2] ?? m?.[1]);
      if (m === null || from < UNIT_ID_MIN || to > UNIT_ID_MAX || from > to) throw new UsageError(`--units "${o.units}" must be N or FROM-TO within ${UNIT_ID_MIN}-${UNIT_ID_MAX}`);
      if (o.timeoutMs < 10 || o.timeoutMs > 60_000) throw new UsageError("--timeout-ms must be 10..60000");
      const tcp = o.tcp === undefined ? null : parseAddress(o.tcp, "--tcp");
      const address: MeterAddress = tcp !== null ? { kind: "tcp", host: tcp.host, port: tcp.port } : { kind: "rtu", path: o.serial as string, baud: o.baud, parity: o.parity, dataBits: 8, stopBits: Number(o.stopBits) as 1 | 2 };
      const units = Array.from({ length: to - from + 1 }, (_, i) => from + i);
      const result = await meterScan({ address, units, timeoutMs: o.timeoutMs, kinds: builtInKinds() });
      log(JSON.stringify(result, null, 2));
      setExit(Exit.ok);
    });

  meter
    .command("simulate")
    .description("run simulated meters (Modbus TCP servers showing a map's registers for a household with solar) until SIGTERM or Ctrl-C; a box reads them with --meter ID=MAP@tcp:HOST:PORT")
    .option("--map <name|file>", "the register map the meters show (a fixed map; not sunspec)", "eastron-sdm630")
    .option("--listen <host:port>", "the first meter's address; the next ones take the following ports (port 0: any free port each)", "127.0.0.1:1502")
    .addOption(new Option("--count <n>", "how many meters").default(1).argParser(parseIntOption("count")))
    .addOption(new Option("--unit <id>", "the unit id they answer to").default(1).argParser(parseIntOption("unit")))
    .addOption(new Option("--solar-peak-w <w>", "the first household's solar array at noon (each next one 10 % more)").default(4_000).argParser(parseIntOption("solar-peak-w")))
    .addOption(new Option("--load-base-w <w>", "the first household's base load (each next one 10 % more)").default(300).argParser(parseIntOption("load-base-w")))
    .option("--utc-offset-hours <h>", "local time = UTC + this, for the sun and the load peaks", "0")
    .addOption(new Option("--clock <sim=MS,real=MS,speed=N>", "run on the demo's accelerated clock, as boxes started with the same --clock (daemon/sim-clock.ts)").hideHelp())
    .action(async (o: { map: string; listen: string; count: number; unit: number; solarPeakW: number; loadBaseW: number; utcOffsetHours: string; clock?: string }) => {
      if (o.map === SUNSPEC) throw new UsageError("--map sunspec: the simulated meter shows fixed maps only (e.g. eastron-sdm630)");
      if (o.count < 1 || o.count > 1_000) throw new UsageError("--count must be 1..1000");
      if (o.unit < UNIT_ID_MIN || o.unit > UNIT_ID_MAX) throw new UsageError(`--unit must be ${UNIT_ID_MIN}..${UNIT_ID_MAX}`);
      const offset = Number(o.utcOffsetHours);
      if (!/^[+-]?\d+(\.\d+)?$/.test(o.utcOffsetHours) || offset < -12 || offset > 14) throw new UsageError(`--utc-offset-hours must be a number from -12 to 14, got "${o.utcOffsetHours}"`);
      const listen = parseAddress(o.listen, "--listen");
      if (listen.port !== 0 && listen.port + o.count - 1 > 65_535) throw new UsageError(`--listen port ${listen.port} + --count ${o.count} passes 65535`);
      const map = loadRegisterMap(o.map);
      const now = o.clock === undefined ? undefined : simNow(parseClock(o.clock));
      setExit(await runSimulatedMeters({ map, listen, count: o.count, unit: o.unit, solarPeakW: o.solarPeakW, loadBaseW: o.loadBaseW, utcOffsetHours: offset, ...(now !== undefined && { now }) }, log));
    });

  const submitted = (r: SubmitResult) => {
    log(JSON.stringify(r, null, 2));
    setExit(r.status === 200 || r.status === 202 ? Exit.ok : Exit.fault);
  };
  program
    .command("propose")
    .description("sign a governance proposal with a member's key and submit it to a box; members then vote (peergrid vote)")
    .requiredOption("--box <url>", "a box's HTTP API, e.g. http://192.168.1.20:8400")
    .requiredOption("--key <file>", "the proposing member's key file")
    .option("--critical-loads <members>", "the critical-load priority list: member numbers, most critical first, e.g. 12,3,40")
    .option("--set <PARAM=VALUE>", "a market parameter to change (e.g. utilityImportMicroPerKWh=320000, clearingRule=pay-as-bid); repeat for each", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--enrol <NAME:ROLES:KEY>", "enrol a member by vote (as peergrid genesis --member)")
    .option("--remove <member>", "remove a member by vote")
    .option("--set-roles <member:ROLES>", "change a member's roles by vote, e.g. 7:user+renewable")
    .addOption(new Option("--voting-blocks <n>", "how long the vote runs, in blocks (one a second)").default(3_600).argParser(parseIntOption("voting-blocks")))
    .addOption(new Option("--effective-after <n>", "blocks from the end of the vote until it takes effect").default(60).argParser(parseIntOption("effective-after")))
    .action(async (o: { box: string; key: string; criticalLoads?: string; set: string[]; enrol?: string; remove?: string; setRoles?: string; votingBlocks: number; effectiveAfter: number }) => {
      const given = [o.criticalLoads !== undefined, o.set.length > 0, o.enrol !== undefined, o.remove !== undefined, o.setRoles !== undefined].filter(Boolean).length;
      if (given !== 1) throw new UsageError("propose exactly one of --critical-loads, --set (repeatable), --enrol, --remove, --set-roles");
      let action: ProposalAction;
      if (o.criticalLoads !== undefined) action = { kind: "criticalLoads", premises: parseMemberList(o.criticalLoads, "--critical-loads") };
      else if (o.set.length > 0) action = { kind: "marketParams", changes: parseParamChanges(o.set) };
      else if (o.enrol !== undefined) {
        const m = parseMemberSpec(o.enrol);
        action = { kind: "enrol", publicKey: parseHex(m.publicKey, 32) as Uint8Array, roles: rolesMask(m.roles), name: m.name };
      } else if (o.remove !== undefined) action = { kind: "remove", subject: parseMemberList(o.remove, "--remove")[0] as number };
      else {
        const [who, roles] = (o.setRoles as string).split(":") as [string, string | undefined];
        if (roles === undefined) throw new UsageError(`--set-roles "${o.setRoles}" is not MEMBER:ROLES, e.g. 7:user+renewable`);
        action = { kind: "setRoles", subject: parseMemberList(who, "--set-roles")[0] as number, roles: rolesMask(parseRoleList(roles, `--set-roles "${o.setRoles}"`)) };
      }
      submitted(await signAndSubmit(o.box, readKeyFile(o.key), proposalBody(action, o.votingBlocks, o.effectiveAfter)));
    });
  program
    .command("vote")
    .description("sign a vote on a governance proposal with a member's key and submit it to a box")
    .requiredOption("--box <url>", "a box's HTTP API, e.g. http://192.168.1.20:8400")
    .requiredOption("--key <file>", "the voting member's key file")
    .requiredOption("--proposal <id>", "the proposal's transaction id (64 hex digits; GET /api/v1/grid lists open ones)")
    .option("--yes", "approve")
    .option("--no", "reject")
    .action(async (o: { box: string; key: string; proposal: string; yes?: boolean; no?: boolean }) => {
      if ((o.yes === true) === (o.no === true)) throw new UsageError("vote with exactly one of --yes or --no");
      const proposal = parseHex(o.proposal.toLowerCase(), 32);
      if (proposal === null) throw new UsageError(`--proposal "${o.proposal}" is not a transaction id (64 hex digits)`);
      submitted(await signAndSubmit(o.box, readKeyFile(o.key), () => ({ type: "vote", proposal, approve: o.yes === true })));
    });

  const market = program.command("market").description("the neighbourhood market's clearing, for auditors and what-if studies; replay of a recorded interval");
  market
    .command("clear")
    .description("clear one interval's orders with the ledger's own clearing function and print the price and the trades as JSON")
    .argument("<orders.json>", 'a list of orders, or {"rule": ..., "localRenewableSellers": [...], "orders": [...]} (market/order-file.ts)')
    .addOption(new Option("--rule <rule>", "pay-as-clear (one price) or pay-as-bid (default: the file's, else pay-as-clear)").choices(["pay-as-clear", "pay-as-bid"]))
    .option("--renewable-sellers <ids>", "members whose sales count as local renewable, comma-separated (default: the file's, else every seller)")
    .action((file: string, o: { rule?: ClearingRule; renewableSellers?: string }) => {
      let renewable: number[] | undefined;
      if (o.renewableSellers !== undefined) {
        if (!/^(\d+(,\d+)*)?$/.test(o.renewableSellers)) throw new UsageError(`--renewable-sellers "${o.renewableSellers}" must be member numbers separated by commas, e.g. 2,5,9`);
        renewable = o.renewableSellers === "" ? [] : o.renewableSellers.split(",").map(Number);
      }
      const orders = parseOrderFile(readJsonFile(file, "order file"), file);
      log(JSON.stringify(resultJson(clear(orders.orders, optionsFor(orders, o.rule, renewable))), null, 2));
      setExit(Exit.ok);
    });
  market
    .command("replay")
    .description("re-derive a past interval's clearing (and settlement) from the chain's transactions and check it against what the box recorded; exits 1 on any difference")
    .argument("<data-dir>", "a box's data directory (or the ledger.sqlite file itself)")
    .requiredOption("--interval <start>", "the interval's start: epoch milliseconds or an ISO 8601 time, e.g. 2026-06-21T12:15:00Z")
    .action((dataDir: string, o: { interval: string }) => {
      const startMs = parseIntervalStart(o.interval);
      const store = LedgerStore.open(storePathOf(dataDir), { readonly: true });
      try {
        const report = replayInterval(store, startMs);
        log(JSON.stringify(report, null, 2));
        setExit(report.matches ? Exit.ok : Exit.fault);
      } finally {
        store.close();
      }
    });

  program
    .command("demo")
    .description("run a demo neighbourhood on this machine until Ctrl-C: boxes as separate processes on loopback, each reading a simulated meter and trading for its household, on an accelerated clock (README: the demo)")
    .option("--data-dir <dir>", "the demo's folder, made afresh on every run (only a folder a demo made is ever deleted)", DEMO_DEFAULTS.dataDir)
    .addOption(new Option("--boxes <n>", "boxes (households), 2..10; every other one has solar panels").default(DEMO_DEFAULTS.boxes).argParser(parseIntOption("boxes")))
    .addOption(new Option("--speed <n>", "simulated seconds per real second, 1..60 (15: a 15-minute market interval passes in a minute; a block stays one a real second)").default(DEMO_DEFAULTS.speed).argParser(parseIntOption("speed")))
    .addOption(new Option("--base-port <port>", "the first of the loopback ports the demo takes (3 per box, 1 for MQTT)").default(DEMO_DEFAULTS.basePort).argParser(parseIntOption("base-port")))
    .option("--start-at <HH:MM>", "the time of day the demo starts at, London time (BST) on its day, 21 June 2026 (the sun is up from about 04:45 to 21:15)", DEMO_DEFAULTS.startAt)
    .option("--no-mqtt", "no MQTT broker (by default box 0 runs one on loopback, and every box publishes to it)")
    .addOption(new Option("--progress-every <s>", "real seconds between progress lines").default(DEMO_DEFAULTS.progressEveryS).argParser(parseIntOption("progress-every")))
    .action(async (o: { dataDir: string; boxes: number; speed: number; basePort: number; startAt: string; mqtt: boolean; progressEvery: number }) => {
      const code = await runDemo({ dataDir: resolve(o.dataDir), boxes: o.boxes, speed: o.speed, basePort: o.basePort, startMinuteOfDay: parseTimeOfDay(o.startAt, "--start-at"), mqtt: o.mqtt, progressEveryS: o.progressEvery }, log);
      setExit(code);
    });

  program
    .command("demo-chain")
    .description("build a demonstration neighbourhood chain in one process through the real ledger code, then audit it; the same seed builds the same chain")
    .option("--data-dir <dir>", "where to build it (rebuilt on every run)", "demo-chain")
    .addOption(new Option("--boxes <n>", "meter boxes").default(4).argParser(parseIntOption("boxes")))
    .addOption(new Option("--neighbours <n>", "neighbours without a box, enrolled on the chain").default(3).argParser(parseIntOption("neighbours")))
    .addOption(new Option("--seconds <n>", "one-second blocks to build").default(180).argParser(parseIntOption("seconds")))
    .addOption(new Option("--seed <n>", "seed: the same seed builds the same chain").default(1).argParser(parseIntOption("seed")))
    .option("--json", "print the audit report as JSON")
    .action((o: { dataDir: string; boxes: number; neighbours: number; seconds: number; seed: number; json?: boolean }) => {
      if (o.boxes < 1 || o.boxes > 100) throw new UsageError("--boxes must be 1..100");
      if (o.seconds < 1 || o.seconds > 86_400) throw new UsageError("--seconds must be 1..86400");
      if (o.neighbours > 1000) throw new UsageError("--neighbours must be at most 1000");
      const result = buildDemoChain({ dataDir: resolve(o.dataDir), boxes: o.boxes, neighbours: o.neighbours, seconds: o.seconds, seed: o.seed, log });
      printReport(result.report, o.json === true, log);
      if (!o.json) log(`\nThe ledger is in ${resolve(o.dataDir)}; audit it again with: peergrid verify ${o.dataDir}`);
      setExit(result.report.ok ? Exit.ok : Exit.fault);
    });

  registerSimCommand(program, log, setExit);

  return program;
}

/** Run the CLI; returns the process exit code. */
export async function main(argv: readonly string[], log: (s: string) => void = (s) => console.log(s)): Promise<number> {
  let exit: number = Exit.ok;
  const program = buildProgram(log, (c) => (exit = c));
  try {
    await program.parseAsync(argv as string[]);
    return exit;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? Exit.ok : Exit.usage;
    if (err instanceof PeergridError) {
      process.stderr.write(`peergrid: ${err.message}\n`);
      return Exit.usage;
    }
    throw err;
  }
}

// Relays and breakers behind a coil or a holding register: the microgrid
// controller's hands (issue 6). A command is never taken on trust: after
// the write the state is read back, and if the device disagrees the caller
// gets a SwitchError that says what was asked, what the device reports,
// and where (the dispatch records both in its `switch` transaction).
//
// A switch is either a coil (on/off) or a holding register with one value
// for "closed" (power flows) and one for "open"; a breaker with a separate
// status register reads back from there (readAddress).
import { type Bus, ModbusError } from "./bus.js";
import type { Reply } from "./modbus-frame.js";
import { PeergridError } from "../ledger/errors.js";

export type SwitchPoint =
  | { readonly kind: "coil"; readonly unit: number; readonly address: number; readonly readAddress?: number }
  | { readonly kind: "register"; readonly unit: number; readonly address: number; readonly closedValue: number; readonly openValue: number; readonly readAddress?: number };

export const SwitchErrorCode = {
  refused: "PG_ERR_SWITCH_REFUSED", // the device answered the write or the read with an exception
  mismatch: "PG_ERR_SWITCH_MISMATCH", // the read-back disagrees with the command
  unknownState: "PG_ERR_SWITCH_UNKNOWN_STATE", // a register value that is neither the closed nor the open value
} as const;

export class SwitchError extends PeergridError {
  constructor(
    code: string,
    message: string,
    readonly asked: boolean | null,
    readonly reported: boolean | number | null,
  ) {
    super(code, message);
    this.name = "SwitchError";
  }
}

export class Switch {
  constructor(
    private readonly bus: Bus,
    readonly point: SwitchPoint,
    readonly label: string,
  ) {}

  /** Whether the switch is closed (power flows), as the device reports it now. */
  async isClosed(): Promise<boolean> {
    const p = this.point;
    const address = p.readAddress ?? p.address;
    const reply = await this.bus.request(p.kind === "coil" ? { fn: 1, unit: p.unit, address, count: 1 } : { fn: 3, unit: p.unit, address, count: 1 });
    const value = this.valueOf(reply, "read");
    if (p.kind === "coil") return value === true;
    if (value === p.closedValue) return true;
    if (value === p.openValue) return false;
    throw new SwitchError(SwitchErrorCode.unknownState, `${this.label}: register ${address} of unit ${p.unit} reads ${value}, neither closed (${p.closedValue}) nor open (${p.openValue})`, null, value as number);
  }

  /** Command the switch closed (true) or open, then read it back; throws SwitchError if the device disagrees. */
  async set(closed: boolean): Promise<void> {
    const p = this.point;
    const reply = await this.bus.request(p.kind === "coil" ? { fn: 5, unit: p.unit, address: p.address, on: closed } : { fn: 6, unit: p.unit, address: p.address, value: closed ? p.closedValue : p.openValue });
    if (reply.kind === "exception") throw new SwitchError(SwitchErrorCode.refused, `${this.label}: unit ${p.unit} refused the command to ${closed ? "close" : "open"} (${reply.message})`, closed, null);
    let now: boolean;
    try {
      now = await this.isClosed();
    } catch (err) {
      if (err instanceof SwitchError && err.code === SwitchErrorCode.unknownState) throw new SwitchError(SwitchErrorCode.mismatch, `${this.label}: asked to ${closed ? "close" : "open"}; ${err.message}`, closed, err.reported);
      throw err;
    }
    if (now !== closed) throw new SwitchError(SwitchErrorCode.mismatch, `${this.label}: asked to ${closed ? "close" : "open"}, but unit ${p.unit} reports it ${now ? "closed" : "open"} after the command`, closed, now);
  }

  private valueOf(reply: Reply, what: string): boolean | number {
    const p = this.point;
    if (reply.kind === "exception") throw new SwitchError(SwitchErrorCode.refused, `${this.label}: unit ${p.unit} refused the ${what} (${reply.message})`, null, null);
    if (reply.kind === "coils" && reply.values[0] !== undefined) return reply.values[0];
    if (reply.kind === "registers" && reply.values[0] !== undefined) return reply.values[0];
    throw new ModbusError("PG_ERR_MODBUS_GARBAGE", `${this.label}: an empty ${reply.kind} reply to a ${what}`);
  }
}

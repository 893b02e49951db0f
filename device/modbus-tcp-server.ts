// The device side of Modbus TCP, for simulated devices (sim-meter.ts) and
// tests: a server that frames requests and replies (MBAP), parses each
// request (modbus-frame.ts) and sends what `answer` returns. A request
// for a unit the device does not serve gets no reply, as on a shared bus;
// a request Modbus does not allow gets its exception; a stream that
// is not Modbus TCP, or holds more than a kilobyte unanswered, is closed.
import net from "node:net";
import { type Reply, type Request, encodeReplyPdu, parseRequestPdu } from "./modbus-frame.js";

const MBAP_BYTES = 7;
const MBAP_LENGTH_MAX = 254;
const REQUEST_BUFFER_BYTES_MAX = 1_024;

export interface ModbusTcpServer {
  readonly port: number;
  close(): Promise<void>;
}

export interface ModbusDevice {
  /** Whether this device answers to `unit`. */
  serves(unit: number): boolean;
  answer(request: Request): Reply;
}

export async function startModbusTcpServer(device: ModbusDevice, host = "127.0.0.1", port = 0): Promise<ModbusTcpServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buf = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= MBAP_BYTES) {
        const length = buf.readUInt16BE(4);
        if (buf.readUInt16BE(2) !== 0 || length < 2 || length > MBAP_LENGTH_MAX) return void socket.destroy(); // not Modbus TCP
        if (buf.length < 6 + length) break;
        const adu = buf.subarray(0, 6 + length);
        buf = buf.subarray(6 + length);
        const unit = adu[6] as number;
        if (!device.serves(unit)) continue; // another device's request
        const parsed = parseRequestPdu(unit, adu.subarray(MBAP_BYTES));
        const pdu = "request" in parsed ? encodeReplyPdu(parsed.request, device.answer(parsed.request)) : Uint8Array.from([parsed.fn | 0x80, parsed.exception]);
        const out = Buffer.alloc(MBAP_BYTES + pdu.length);
        adu.copy(out, 0, 0, 4); // transaction id, protocol
        out.writeUInt16BE(pdu.length + 1, 4);
        out[6] = unit;
        out.set(pdu, MBAP_BYTES);
        socket.write(out);
      }
      if (buf.length > REQUEST_BUFFER_BYTES_MAX) socket.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

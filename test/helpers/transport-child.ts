// Run as a separate process by test/daemon/transport.test.ts: starts three
// transports, exchanges messages, leaves a dial to a dead peer pending in
// backoff and a handshake half done, then closes everything. The process must
// then exit on its own: any socket or timer left behind keeps it alive.
import net from "node:net";
import { Cluster, HOST, connect, freePort, heartbeat, waitFor } from "./transport-peers.js";

const c = new Cluster();
c.enrol(1, 2, 3, 4);
const a = await c.start(1);
const b = await c.start(2);
await c.start(3);
a.send(heartbeat(1, 2));
b.send(heartbeat(2, 1));
a.send(heartbeat(1, 3));
await waitFor(() => c.received(1).length === 1 && c.received(2).length === 1 && c.received(3).length === 1, "messages");
c.addresses.set(4, { host: HOST, port: await freePort() }); // nobody there: a redial timer stays armed
a.send(heartbeat(1, 4));
await waitFor(() => a.counters.reconnects >= 1, "a reconnect attempt");
const halfDone: net.Socket = await connect(a.port); // a connection that never says hello
halfDone.on("error", () => {});
await c.closeAll();
halfDone.destroy();
process.stdout.write("closed\n");

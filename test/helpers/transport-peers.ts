// Helpers for transport tests: real transports on 127.0.0.1 with ephemeral
// ports, a mutable membership and address book, and a hand-rolled peer that
// speaks the handshake itself (to misbehave after authenticating).
import net from "node:net";
import { NodeSigner } from "../../ledger/keys.js";
import type { Message, NodeId } from "../../ledger/raft/raft.js";
import {
  FrameDecoder,
  HANDSHAKE_FRAME_BYTES_MAX,
  LinkRole,
  type LinkMessage,
  type PeerAddress,
  Transport,
  type TransportLimits,
  type LinkKeys,
  type Transcript,
  decodeHello,
  decodeProof,
  encodeHello,
  encodeProof,
  frame,
  linkKeys,
  newEphemeralKey,
  proofMessage,
  frameToSeal,
  sealFrame,
} from "../../daemon/transport.js";
import { Rng } from "../../sim/rng.js";

export const CHAIN = new Uint8Array(32).fill(7);
export const HOST = "127.0.0.1";

/** Keys, membership and addresses shared by the nodes of one test. */
export class Cluster {
  readonly keys = new Map<NodeId, NodeSigner>();
  readonly members = new Map<NodeId, Uint8Array>();
  readonly addresses = new Map<NodeId, PeerAddress>();
  readonly nodes = new Map<NodeId, Transport>();
  readonly inbox = new Map<NodeId, { from: NodeId; m: LinkMessage }[]>();
  private readonly rng = new Rng(42);

  key(id: NodeId): NodeSigner {
    let k = this.keys.get(id);
    if (k === undefined) {
      k = NodeSigner.generate();
      this.keys.set(id, k);
    }
    return k;
  }

  enrol(...ids: NodeId[]): void {
    for (const id of ids) this.members.set(id, this.key(id).publicKey);
  }

  async start(id: NodeId, opts: { port?: number; signer?: NodeSigner; limits?: Partial<TransportLimits> } = {}): Promise<Transport> {
    const box: { from: NodeId; m: LinkMessage }[] = [];
    this.inbox.set(id, box);
    const t = await Transport.start({
      id,
      signer: opts.signer ?? this.key(id),
      chainHash: CHAIN,
      members: (i) => this.members.get(i) ?? null,
      addresses: (i) => this.addresses.get(i) ?? null,
      onMessage: (from, m) => box.push({ from, m }),
      random: () => this.rng.next(),
      listenHost: HOST,
      listenPort: opts.port ?? 0,
      limits: { reconnectDelayMsMin: 10, reconnectDelayMsMax: 80, handshakeTimeoutMs: 2_000, ...opts.limits },
    });
    this.nodes.set(id, t);
    this.addresses.set(id, { host: HOST, port: t.port });
    return t;
  }

  received(id: NodeId): { from: NodeId; m: LinkMessage }[] {
    return this.inbox.get(id) ?? [];
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((t) => t.close()));
    this.nodes.clear();
  }
}

export const heartbeat = (from: NodeId, to: NodeId, commit = 0): Message => ({ type: "heartbeat", from, to, term: 1, commit });

/** Poll until `cond` holds; fail after timeoutMs (a bound on waiting, not a speed requirement). */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 4_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Resolves when the socket is closed (by either side); fails after timeoutMs
 * (a box that should have closed it did not). Reads and discards what
 * arrives: an unread stream never sees its end.
 */
export function closed(socket: net.Socket, timeoutMs = 5_000): Promise<void> {
  socket.resume();
  return new Promise((resolve, reject) => {
    if (socket.destroyed) return resolve();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the connection was not closed within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** A hand-rolled authenticated link: frames it seals carry the MAC the box expects next. */
export interface HandRolledLink {
  /** `payload` framed and MACed as this link's next frame. */
  seal(payload: Uint8Array): Buffer;
  /** The frame number the next seal() uses (tests may skip or repeat one). */
  next: number;
  readonly keys: LinkKeys;
}

/**
 * Complete the handshake by hand on `socket` as member `id` holding `signer`.
 * Resolves once both proofs are exchanged; the peer's proof is not checked
 * (this side is the test's instrument, not a box).
 */
export function handshake(socket: net.Socket, role: LinkRole, id: NodeId, signer: NodeSigner, withProof: (l: HandRolledLink) => Uint8Array[] = () => []): Promise<HandRolledLink> {
  const nonce = new Uint8Array(32).fill(id + 1);
  const ephemeral = newEphemeralKey();
  const decoder = new FrameDecoder(HANDSHAKE_FRAME_BYTES_MAX);
  let step = 0;
  let link: HandRolledLink | null = null;
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      decoder.push(chunk);
      for (let f = decoder.next(); f !== null; f = decoder.next()) {
        if (step === 0) {
          const hello = decodeHello(f);
          const mine = { nonce, ephemeral: ephemeral.publicKey, index: id };
          const [d, a] = role === LinkRole.dialer ? [mine, hello] : [hello, mine];
          const t: Transcript = { chainHash: CHAIN, dialerNonce: d.nonce, acceptorNonce: a.nonce, dialerEphemeral: d.ephemeral, acceptorEphemeral: a.ephemeral, dialerIndex: d.index, acceptorIndex: a.index };
          const keys = linkKeys(ephemeral.privateKey, t, role);
          link = { keys, next: 0, seal: (payload) => sealFrame(frameToSeal(payload), keys.send, (link as HandRolledLink).next++) };
          // The PROOF, and in the same write whatever the test wants to follow it at once.
          socket.write(Buffer.concat([frame(encodeProof(signer.sign(proofMessage(t, role)))), ...withProof(link)]));
          step = 1;
        } else if (step === 1) {
          decodeProof(f);
          step = 2;
          socket.off("data", onData);
          resolve(link as HandRolledLink);
        }
      }
    };
    socket.on("data", onData);
    socket.once("close", () => reject(new Error("closed during handshake")));
    socket.on("error", () => {});
    socket.write(frame(encodeHello({ chainHash: CHAIN, nonce, ephemeral: ephemeral.publicKey, index: id })));
  });
}

export function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port }, () => resolve(s));
    s.once("error", reject);
  });
}

/** A free ephemeral port (listen, note, close). Nothing listens there until a test starts something. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, HOST, () => r()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

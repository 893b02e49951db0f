// The Raft transport: the shell that carries the core's messages between
// boxes over TCP on the LAN. Everything a peer sends is hostile until proven
// otherwise: frames are bounded, the peer proves it holds a member key before
// a single Raft message is accepted, and a slow or dead peer can never grow
// this box's memory without bound.
//
// Links are one-directional in use: each box dials ONE outbound connection to
// each peer it sends to and carries its own messages on it; what a peer sends
// arrives on the connection the peer dialed. Two connections per pair, but no
// tie-break between simultaneous dials and no shared queue, and a restarted
// peer simply dials again (its new inbound link replaces the old one).
//
// Framing: 4-byte big-endian length, then the payload. The length is at most
// HANDSHAKE_FRAME_BYTES_MAX until the peer is authenticated, then at most
// frameBytesMax; zero or more than the limit closes the link (refusedBadFrame).
//
// Handshake (both sides, on connect):
//   -> HELLO  version | kind=1 | chainHash(32) | nonce(32, crypto.randomBytes)
//             | ephemeral X25519 public key(32, new for this link) | my member index
//   <- HELLO  (the peer's)
//   -> PROOF  version | kind=2 | sign(TAG | chainHash | my role | dialer nonce | acceptor nonce
//             | dialer ephemeral | acceptor ephemeral | dialer index | acceptor index)
//   <- PROOF  verified against members(peer index)
// A side proves itself only after learning the peer is a member. The role
// byte stops a reflection (a dialer claiming to be the acceptor and replaying
// its own proof back); the fresh nonces stop replays of old proofs. The dialer
// also requires the acceptor to be the member it meant to dial.
//
// After the handshake every frame is MACed, so a connection stays the
// member's connection: someone on the LAN who injects, alters, replays,
// reorders or drops bytes of an authenticated TCP stream is caught at the
// next frame and the link closes (refusedBadMac). Keys: X25519 between the
// two ephemeral keys (each signed inside its side's PROOF), then HKDF-SHA256
// (salt: the chain hash; info: the transcript, both members named, so the
// keys belong to this pair and no third member can splice two handshakes
// into one) into one key per direction.
// Each frame's payload ends with HMAC-SHA256(key, u64 frame number | rest),
// cut to MAC_BYTES; frames are numbered from 0 per direction and the number
// is not sent. Nothing is encrypted: the ledger is not secret among members;
// integrity is what a forged Raft message would break.
//
// Memory bound per peer: the send queue holds at most sendQueueBytesMax bytes
// of frames (oldest dropped first: Raft retransmits what matters); the socket
// holds at most its highWaterMark plus one frame, because we stop writing
// when write() says the socket is full and resume on 'drain'.
import { type KeyObject, createHmac, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import net from "node:net";
import { assert, bytesEqual, doublingMs, isSafeUint } from "../ledger/assert.js";
import { Reader, Writer } from "../ledger/codec.js";
import { DecodeError, DecodeReason } from "../ledger/errors.js";
import { NodeVerifier } from "../ledger/keys.js";
import type { Message, NodeId } from "../ledger/raft/raft.js";
import { WIRE_MESSAGE_BYTES_MAX, WIRE_NODE_ID_MAX, WireError, decodeMessage, encodeMessage, splitAppend } from "../ledger/raft/wire.js";
import { memberKey } from "../ledger/records.js";
import type { LedgerState } from "../ledger/state.js";
import { Role, type SignatureVerifier, type Signer } from "../ledger/tx.js";
import { type PeerMessage, decodePeerMessage, encodePeerMessage, isPeerMessage, isPeerPayload } from "./peer-wire.js";

/** What travels on a link: Raft's messages and the boxes' own (peer-wire.ts). */
export type LinkMessage = Message | PeerMessage;

export const HANDSHAKE_VERSION = 2;
export const HANDSHAKE_NONCE_BYTES = 32;
export const EPHEMERAL_KEY_BYTES = 32;
export const HANDSHAKE_FRAME_BYTES_MAX = 128; // a HELLO is 2 + 32 + 32 + 32 + 4 bytes, a PROOF 2 + 64
/** The MAC at the end of every frame after the handshake. */
export const MAC_BYTES = 16;
const HANDSHAKE_TAG = new TextEncoder().encode("peergrid/raft-transport/handshake/v2\0");
const LINK_KEYS_TAG = new TextEncoder().encode("peergrid/raft-transport/link-keys/v2\0");
const X25519_SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");
const FRAME_HEADER_BYTES = 4;
const CHAIN_HASH_BYTES = 32;
const SIGNATURE_BYTES = 64;
const BACKOFF_EXPONENT_MAX = 30; // 2^30 * any sane minimum is far beyond any maximum

export const HandshakeKind = { hello: 1, proof: 2 } as const;
/** Which end of the TCP connection a side is: part of what it signs. */
export const LinkRole = { dialer: 1, acceptor: 2 } as const;
export type LinkRole = (typeof LinkRole)[keyof typeof LinkRole];

// ------------------------------------------------------------------ pure parts
// Exported so tests (and a misbehaving test peer) can speak the protocol by hand.

export interface Hello {
  readonly chainHash: Uint8Array;
  readonly nonce: Uint8Array;
  readonly ephemeral: Uint8Array; // X25519 public key, new for each link
  readonly index: NodeId;
}

export function encodeHello(h: Hello): Uint8Array {
  return new Writer(112)
    .u8(HANDSHAKE_VERSION)
    .u8(HandshakeKind.hello)
    .fixed(h.chainHash, CHAIN_HASH_BYTES)
    .fixed(h.nonce, HANDSHAKE_NONCE_BYTES)
    .fixed(h.ephemeral, EPHEMERAL_KEY_BYTES)
    .uvar(h.index)
    .finish();
}

export function decodeHello(bytes: Uint8Array): Hello {
  const r = new Reader(bytes);
  readHandshakeHeader(r, HandshakeKind.hello);
  const h = {
    chainHash: r.copy(CHAIN_HASH_BYTES, "chain hash"),
    nonce: r.copy(HANDSHAKE_NONCE_BYTES, "nonce"),
    ephemeral: r.copy(EPHEMERAL_KEY_BYTES, "ephemeral key"),
    index: r.uvar("member index", WIRE_NODE_ID_MAX),
  };
  r.done("hello");
  return h;
}

export function encodeProof(signature: Uint8Array): Uint8Array {
  return new Writer(2 + SIGNATURE_BYTES).u8(HANDSHAKE_VERSION).u8(HandshakeKind.proof).fixed(signature, SIGNATURE_BYTES).finish();
}

export function decodeProof(bytes: Uint8Array): Uint8Array {
  const r = new Reader(bytes);
  readHandshakeHeader(r, HandshakeKind.proof);
  const sig = r.copy(SIGNATURE_BYTES, "signature");
  r.done("proof");
  return sig;
}

function readHandshakeHeader(r: Reader, kind: number): void {
  const version = r.u8("handshake version");
  if (version !== HANDSHAKE_VERSION) r.fail(DecodeReason.unsupportedVersion, `handshake version ${version}, this box speaks ${HANDSHAKE_VERSION}`);
  const k = r.u8("handshake kind");
  if (k !== kind) r.fail(DecodeReason.unknownType, `handshake message kind ${k}, expected ${kind}`);
}

/** What both HELLOs of one connection said, by role. */
export interface Transcript {
  readonly chainHash: Uint8Array;
  readonly dialerNonce: Uint8Array;
  readonly acceptorNonce: Uint8Array;
  readonly dialerEphemeral: Uint8Array;
  readonly acceptorEphemeral: Uint8Array;
  readonly dialerIndex: NodeId;
  readonly acceptorIndex: NodeId;
}

function writeTranscript(w: Writer, t: Transcript): Writer {
  return w
    .fixed(t.dialerNonce, HANDSHAKE_NONCE_BYTES)
    .fixed(t.acceptorNonce, HANDSHAKE_NONCE_BYTES)
    .fixed(t.dialerEphemeral, EPHEMERAL_KEY_BYTES)
    .fixed(t.acceptorEphemeral, EPHEMERAL_KEY_BYTES)
    .uvar(t.dialerIndex)
    .uvar(t.acceptorIndex);
}

/**
 * What the side in `role` signs to prove it holds its member key on this
 * connection, that the ephemeral key of its HELLO is its own, and whom it
 * is talking to.
 */
export function proofMessage(t: Transcript, role: LinkRole): Uint8Array {
  const w = new Writer(HANDSHAKE_TAG.length + 32 + 1 + 128 + 16).raw(HANDSHAKE_TAG).fixed(t.chainHash, CHAIN_HASH_BYTES).u8(role);
  return writeTranscript(w, t).finish();
}

/** A new X25519 key pair for one link; the public half goes in the HELLO. */
export function newEphemeralKey(): { readonly privateKey: KeyObject; readonly publicKey: Uint8Array } {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  const spki = publicKey.export({ format: "der", type: "spki" });
  return { privateKey, publicKey: new Uint8Array(spki.subarray(X25519_SPKI_PREFIX.length)) };
}

export interface LinkKeys {
  readonly send: Uint8Array;
  readonly receive: Uint8Array;
}

/**
 * The two MAC keys of an authenticated connection, as seen by `role`.
 * Throws DecodeError when the peer's ephemeral key is unusable (a point of
 * small order gives no shared secret).
 */
export function linkKeys(mine: KeyObject, t: Transcript, role: LinkRole): LinkKeys {
  const peerEphemeral = role === LinkRole.dialer ? t.acceptorEphemeral : t.dialerEphemeral;
  let shared: Buffer;
  try {
    const peer = createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, peerEphemeral]), format: "der", type: "spki" });
    shared = diffieHellman({ privateKey: mine, publicKey: peer });
  } catch {
    throw new DecodeError(DecodeReason.invalid, "the peer's ephemeral key gives no shared secret", 0);
  }
  if (shared.every((b) => b === 0)) throw new DecodeError(DecodeReason.invalid, "the peer's ephemeral key gives no shared secret", 0);
  const info = writeTranscript(new Writer(LINK_KEYS_TAG.length + 128 + 16).raw(LINK_KEYS_TAG), t).finish();
  const okm = new Uint8Array(hkdfSync("sha256", shared, t.chainHash, info, 64));
  const dialerToAcceptor = okm.subarray(0, 32);
  const acceptorToDialer = okm.subarray(32, 64);
  return role === LinkRole.dialer ? { send: dialerToAcceptor, receive: acceptorToDialer } : { send: acceptorToDialer, receive: dialerToAcceptor };
}

/** The MAC of frame number `n` of one direction, over its payload (without the MAC). */
export function frameMac(key: Uint8Array, n: number, body: Uint8Array): Buffer {
  const counter = Buffer.allocUnsafe(8);
  counter.writeBigUInt64BE(BigInt(n));
  return createHmac("sha256", key).update(counter).update(body).digest().subarray(0, MAC_BYTES);
}

/** Fill in the MAC of a frame built by frameToSeal. */
export function sealFrame(f: Buffer, key: Uint8Array, n: number): Buffer {
  f.set(frameMac(key, n, f.subarray(FRAME_HEADER_BYTES, f.length - MAC_BYTES)), f.length - MAC_BYTES);
  return f;
}

/** The body of a received payload if its MAC is that of frame `n`, else null. */
export function openFrame(payload: Uint8Array, key: Uint8Array, n: number): Uint8Array | null {
  if (payload.length <= MAC_BYTES) return null;
  const body = payload.subarray(0, payload.length - MAC_BYTES);
  const mac = payload.subarray(payload.length - MAC_BYTES);
  return timingSafeEqual(frameMac(key, n, body), mac) ? body : null;
}

/** A payload with its 4-byte big-endian length in front, in one buffer. */
export function frame(payload: Uint8Array): Buffer {
  return framed(payload, 0);
}

/** A frame with MAC_BYTES of room at its end (counted in its length) for sealFrame. */
export function frameToSeal(payload: Uint8Array): Buffer {
  return framed(payload, MAC_BYTES);
}

function framed(payload: Uint8Array, room: number): Buffer {
  const length = payload.length + room;
  assert(payload.length > 0 && length <= 0xffffffff, "frame payload length in (0, 2^32)");
  const out = Buffer.alloc(FRAME_HEADER_BYTES + length);
  out.writeUInt32BE(length, 0);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * Cuts a byte stream into frames: push() what arrives, then take frames one
 * at a time with next(), so a limit changed between two frames (raised once
 * the handshake is done) applies to the very next header even when both
 * arrived in one read. Holds what arrived and is not yet taken (a partial
 * frame is bounded by frameBytesMax + a header + one read chunk) and copies
 * each frame once: a 16 MiB frame arriving in 64 KiB chunks is joined when
 * complete, not re-copied per chunk. A zero or oversized length throws
 * DecodeError from next() before anything of the frame is buffered beyond
 * what already arrived.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private need = -1; // the current frame's payload length; -1 while its header is incomplete

  constructor(public frameBytesMax: number) {
    assert(isSafeUint(frameBytesMax) && frameBytesMax > 0, "frameBytesMax is positive");
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The next whole frame, or null until more arrives. */
  next(): Buffer | null {
    if (this.need < 0) {
      if (this.buffered < FRAME_HEADER_BYTES) return null;
      const length = this.take(FRAME_HEADER_BYTES).readUInt32BE(0);
      if (length === 0 || length > this.frameBytesMax) {
        throw new DecodeError(length === 0 ? DecodeReason.invalid : DecodeReason.oversized, `frame length ${length} outside [1, ${this.frameBytesMax}]`, 0);
      }
      this.need = length;
    }
    if (this.buffered < this.need) return null;
    const f = this.take(this.need);
    this.need = -1;
    return f;
  }

  /** Bytes held for a frame not yet complete. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  private take(n: number): Buffer {
    assert(n <= this.buffered, "take only what is buffered");
    const first = this.chunks[0] as Buffer;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[0] as Buffer;
        const k = Math.min(c.length, n - filled);
        c.copy(out, filled, 0, k);
        filled += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return out;
  }
}

/** A FIFO of frames with a byte budget; at the budget the OLDEST frames go. */
export class SendQueue {
  private items: Buffer[] = [];
  private head = 0;
  private bytesValue = 0;

  constructor(readonly bytesMax: number) {
    assert(isSafeUint(bytesMax) && bytesMax > 0, "sendQueueBytesMax is positive");
  }

  /** Add a frame; returns how many frames were dropped to make room (the frame itself counts if it alone exceeds the budget). */
  push(f: Buffer): number {
    if (f.length > this.bytesMax) return 1;
    let dropped = 0;
    while (this.bytesValue + f.length > this.bytesMax) {
      this.shift();
      dropped++;
    }
    this.items.push(f);
    this.bytesValue += f.length;
    assert(this.bytesValue <= this.bytesMax, "send queue within its byte budget");
    return dropped;
  }

  shift(): Buffer | undefined {
    if (this.head >= this.items.length) return undefined;
    const f = this.items[this.head] as Buffer;
    this.items[this.head] = EMPTY; // let the frame be collected now
    this.head++;
    this.bytesValue -= f.length;
    // Compact now and then so the array does not grow with the history of the link.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return f;
  }

  clear(): number {
    const n = this.length;
    this.items = [];
    this.head = 0;
    this.bytesValue = 0;
    return n;
  }

  get bytes(): number {
    return this.bytesValue;
  }
  get length(): number {
    return this.items.length - this.head;
  }
}
const EMPTY = Buffer.alloc(0);

/** Reconnect delay: min * 2^attempt capped at max, then "equal jitter" (half fixed, half random) so boxes rebooted together do not redial in lockstep. */
export function backoffDelayMs(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  assert(isSafeUint(attempt) && minMs > 0 && maxMs >= minMs, "backoff arguments");
  const r = random();
  assert(r >= 0 && r < 1, "random() is in [0, 1)");
  const base = doublingMs(attempt, minMs, maxMs);
  return Math.floor(base / 2 + (r * base) / 2);
}

// ------------------------------------------------------------------ the shell

export interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

export interface TransportLimits {
  /** Largest frame accepted or sent once authenticated. */
  readonly frameBytesMax: number;
  /** Bytes of frames queued for one peer; at the limit the oldest are dropped. Should hold at least one largest frame. */
  readonly sendQueueBytesMax: number;
  /** A connection that has not authenticated within this is closed. */
  readonly handshakeTimeoutMs: number;
  readonly reconnectDelayMsMin: number;
  readonly reconnectDelayMsMax: number;
  /** Inbound connections open or handshaking at once (members dial once each; more is an attack or a bug). */
  readonly inboundConnectionsMax: number;
}

export const DEFAULT_TRANSPORT_LIMITS: TransportLimits = {
  frameBytesMax: WIRE_MESSAGE_BYTES_MAX,
  sendQueueBytesMax: 2 * WIRE_MESSAGE_BYTES_MAX,
  handshakeTimeoutMs: 5_000,
  reconnectDelayMsMin: 100,
  reconnectDelayMsMax: 10_000,
  inboundConnectionsMax: 64,
};

export interface TransportConfig {
  readonly id: NodeId;
  readonly signer: Signer;
  readonly verifier?: SignatureVerifier;
  /** The genesis block hash: boxes of another chain are refused even with the same keys. */
  readonly chainHash: Uint8Array;
  /** The public key of `index` if it is an active member with the box or auditor role, else null. */
  readonly members: (index: NodeId) => Uint8Array | null;
  readonly addresses: (index: NodeId) => PeerAddress | null;
  readonly onMessage: (from: NodeId, m: LinkMessage) => void;
  /** Uniform in [0, 1): jitter for reconnects (seeded in tests and simulations). */
  readonly random: () => number;
  readonly listenHost?: string;
  readonly listenPort?: number;
  readonly limits?: Partial<TransportLimits>;
}

export interface TransportCounters {
  connectionsAccepted: number;
  connectionsDialed: number;
  reconnects: number; // dials after a failed or lost connection
  authenticated: number;
  refusedUnauthenticated: number; // non-member, bad proof, wrong chain, wrong peer, handshake timeout
  refusedBadFrame: number; // zero or oversized length, or a payload that does not decode
  refusedBadMac: number; // an authenticated link's frame whose MAC is wrong: injected, altered, replayed, reordered or a frame missing
  refusedWrongSender: number; // a message whose `from` is not the authenticated peer
  refusedWrongRecipient: number; // a message whose `to` is not this box
  refusedInboundLimit: number;
  removedMembers: number; // links closed by refreshMembership()
  droppedQueueFull: number; // frames dropped (oldest first) at sendQueueBytesMax
  droppedNotMember: number; // messages for a peer that is not a member
  droppedNoAddress: number; // dial attempts with no address for the peer
  droppedOversized: number; // messages too large to encode even when split
  messagesSent: number; // handed to a socket
  messagesReceived: number; // delivered to onMessage
}

export interface PeerStats {
  readonly connected: boolean;
  readonly queuedBytes: number;
  readonly queuedMessages: number;
  readonly socketBufferedBytes: number;
}

type LinkState = "hello" | "proof" | "open" | "closed";

/** One TCP connection, inbound or outbound, from handshake to close. */
class Link {
  state: LinkState = "hello";
  peer: NodeId | null = null;
  peerKey: Uint8Array | null = null;
  peerNonce: Uint8Array | null = null;
  peerEphemeral: Uint8Array | null = null;
  readonly nonce: Uint8Array = new Uint8Array(randomBytes(HANDSHAKE_NONCE_BYTES));
  readonly ephemeral = newEphemeralKey();
  keys: LinkKeys | null = null; // once open
  sent = 0; // frames sent since open (the next one's number)
  received = 0;
  readonly decoder = new FrameDecoder(HANDSHAKE_FRAME_BYTES_MAX);
  timer: NodeJS.Timeout | null = null;

  constructor(
    readonly socket: net.Socket,
    readonly role: LinkRole,
    readonly expectedPeer: NodeId | null, // the dialer knows whom it called
  ) {}
}

/** What this box keeps for one peer it sends to. */
class Outbound {
  link: Link | null = null;
  timer: NodeJS.Timeout | null = null;
  attempt = 0; // failed dials since the last authenticated link
  readonly queue: SendQueue;
  constructor(
    readonly peer: NodeId,
    queueBytesMax: number,
  ) {
    this.queue = new SendQueue(queueBytesMax);
  }
  get open(): boolean {
    return this.link !== null && this.link.state === "open";
  }
}

export class Transport {
  readonly counters: TransportCounters = {
    connectionsAccepted: 0,
    connectionsDialed: 0,
    reconnects: 0,
    authenticated: 0,
    refusedUnauthenticated: 0,
    refusedBadFrame: 0,
    refusedBadMac: 0,
    refusedWrongSender: 0,
    refusedWrongRecipient: 0,
    refusedInboundLimit: 0,
    removedMembers: 0,
    droppedQueueFull: 0,
    droppedNotMember: 0,
    droppedNoAddress: 0,
    droppedOversized: 0,
    messagesSent: 0,
    messagesReceived: 0,
  };
  readonly limits: TransportLimits;
  private readonly cfg: TransportConfig;
  private readonly verifier: SignatureVerifier;
  private readonly server: net.Server;
  private readonly outbound = new Map<NodeId, Outbound>();
  private readonly inbound = new Set<Link>(); // every accepted link, handshaking or open
  private readonly inboundByPeer = new Map<NodeId, Link>(); // the open one per peer
  private closed = false;

  private constructor(cfg: TransportConfig, server: net.Server) {
    this.cfg = cfg;
    this.limits = { ...DEFAULT_TRANSPORT_LIMITS, ...cfg.limits };
    const l = this.limits;
    assert(l.frameBytesMax >= HANDSHAKE_FRAME_BYTES_MAX && l.frameBytesMax <= WIRE_MESSAGE_BYTES_MAX + FRAME_HEADER_BYTES, "frameBytesMax within the wire limit");
    assert(l.sendQueueBytesMax > 0 && l.handshakeTimeoutMs > 0 && l.inboundConnectionsMax > 0, "limits are positive");
    assert(l.reconnectDelayMsMin > 0 && l.reconnectDelayMsMax >= l.reconnectDelayMsMin, "reconnect delays ordered");
    assert(cfg.chainHash.length === CHAIN_HASH_BYTES, "chain hash is 32 bytes");
    assert(isSafeUint(cfg.id) && cfg.id <= WIRE_NODE_ID_MAX, "own id in range");
    this.verifier = cfg.verifier ?? new NodeVerifier();
    this.server = server;
    server.on("connection", (socket) => this.accept(socket));
  }

  /** Listen (port 0: an ephemeral port, see `port`) and return the running transport. */
  static async start(cfg: TransportConfig): Promise<Transport> {
    const server = net.createServer({ noDelay: true });
    const t = new Transport(cfg, server);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(cfg.listenPort ?? 0, cfg.listenHost ?? "0.0.0.0", () => {
        server.off("error", reject);
        resolve();
      });
    });
    // After listening, a server error (rare: EMFILE on accept) must not crash the box; connections just fail.
    server.on("error", () => {});
    return t;
  }

  get port(): number {
    const a = this.server.address();
    assert(a !== null && typeof a === "object", "listening on TCP");
    return a.port;
  }

  // ---------------------------------------------------------------- sending

  /**
   * Queue `m` for its peer and send it as soon as the link allows. Never
   * blocks and never throws for network reasons: a message may be dropped
   * (counted), which Raft tolerates by retransmitting.
   */
  send(m: LinkMessage): void {
    assert(m.from === this.cfg.id, "a box sends only its own messages");
    assert(m.to !== this.cfg.id, "never send to oneself");
    if (this.closed) return;
    let out = this.outbound.get(m.to);
    if (out === undefined) {
      if (this.cfg.members(m.to) === null) {
        this.counters.droppedNotMember++;
        return;
      }
      out = new Outbound(m.to, this.limits.sendQueueBytesMax);
      this.outbound.set(m.to, out);
    }
    let payloads: Uint8Array[];
    try {
      payloads = isPeerMessage(m) ? [encodePeerMessage(m)] : splitAppend(m, Math.min(this.limits.frameBytesMax - MAC_BYTES, WIRE_MESSAGE_BYTES_MAX)).map(encodeMessage);
    } catch (err) {
      if (!(err instanceof WireError) && !(err instanceof RangeError)) throw err;
      this.counters.droppedOversized++;
      return;
    }
    for (const p of payloads) {
      if (p.length + MAC_BYTES > this.limits.frameBytesMax) {
        this.counters.droppedOversized++;
        continue;
      }
      this.counters.droppedQueueFull += out.queue.push(frameToSeal(p)); // sealed when written: the number is the link's

    }
    if (out.open) this.flush(out);
    else if (out.link === null && out.timer === null) this.dial(out);
  }

  peerStats(peer: NodeId): PeerStats {
    const out = this.outbound.get(peer);
    return {
      connected: out?.open ?? false,
      queuedBytes: out?.queue.bytes ?? 0,
      queuedMessages: out?.queue.length ?? 0,
      socketBufferedBytes: out?.link?.socket.writableLength ?? 0,
    };
  }

  /** Peers with an authenticated inbound link (they can reach us). */
  connectedInbound(): NodeId[] {
    return [...this.inboundByPeer.keys()];
  }

  private flush(out: Outbound): void {
    const link = out.link;
    assert(link !== null && link.state === "open", "flush only an open link");
    // Stop as soon as the socket is past its highWaterMark; 'drain' resumes. This is
    // what keeps the socket's own buffer bounded while our queue absorbs the rest.
    const keys = link.keys as LinkKeys;
    while (!link.socket.writableNeedDrain) {
      const f = out.queue.shift();
      if (f === undefined) break;
      link.socket.write(sealFrame(f, keys.send, link.sent++));
      this.counters.messagesSent++;
    }
  }

  private dial(out: Outbound): void {
    assert(out.link === null && out.timer === null, "one dial at a time per peer");
    const addr = this.cfg.addresses(out.peer);
    if (addr === null || !validAddress(addr)) {
      this.counters.droppedNoAddress++;
      this.scheduleRedial(out);
      return;
    }
    this.counters.connectionsDialed++;
    const socket = net.connect({ host: addr.host, port: addr.port, noDelay: true });
    const link = new Link(socket, LinkRole.dialer, out.peer);
    out.link = link;
    socket.once("connect", () => this.sendHello(link));
    socket.on("drain", () => {
      if (out.link === link && link.state === "open") this.flush(out);
    });
    this.wire(link, () => {
      // Lost or failed: forget the link and try again later while the peer is still wanted.
      if (out.link !== link) return;
      out.link = null;
      if (!this.closed && this.outbound.get(out.peer) === out) this.scheduleRedial(out);
    });
  }

  private scheduleRedial(out: Outbound): void {
    if (this.closed || out.timer !== null) return;
    const l = this.limits;
    const delayMs = backoffDelayMs(out.attempt, l.reconnectDelayMsMin, l.reconnectDelayMsMax, this.cfg.random);
    out.attempt = Math.min(out.attempt + 1, BACKOFF_EXPONENT_MAX);
    out.timer = setTimeout(() => {
      out.timer = null;
      if (this.closed || this.outbound.get(out.peer) !== out || out.link !== null) return;
      this.counters.reconnects++;
      this.dial(out);
    }, delayMs);
  }

  // ---------------------------------------------------------------- accepting

  private accept(socket: net.Socket): void {
    if (this.closed || this.inbound.size >= this.limits.inboundConnectionsMax) {
      if (!this.closed) this.counters.refusedInboundLimit++;
      socket.on("error", () => {});
      socket.destroy();
      return;
    }
    this.counters.connectionsAccepted++;
    socket.setNoDelay(true);
    const link = new Link(socket, LinkRole.acceptor, null);
    this.inbound.add(link);
    this.wire(link, () => {
      this.inbound.delete(link);
      if (link.peer !== null && this.inboundByPeer.get(link.peer) === link) this.inboundByPeer.delete(link.peer);
    });
    this.sendHello(link);
  }

  // ---------------------------------------------------------------- both directions

  /** Event handlers common to every link; `onGone` runs once when the socket is closed. */
  private wire(link: Link, onGone: () => void): void {
    const { socket } = link;
    link.timer = setTimeout(() => {
      link.timer = null;
      if (link.state !== "open") this.refuse(link, "refusedUnauthenticated");
    }, this.limits.handshakeTimeoutMs);
    socket.on("data", (chunk: Buffer) => this.onData(link, chunk));
    socket.on("error", () => {}); // 'close' follows; a peer's network trouble is not this box's crash
    socket.once("close", () => {
      link.state = "closed";
      if (link.timer !== null) clearTimeout(link.timer);
      link.timer = null;
      onGone();
    });
  }

  private sendHello(link: Link): void {
    if (link.state === "closed") return;
    link.socket.write(frame(encodeHello({ chainHash: this.cfg.chainHash, nonce: link.nonce, ephemeral: link.ephemeral.publicKey, index: this.cfg.id })));
  }

  private refuse(link: Link, counter: keyof TransportCounters): void {
    if (link.state === "closed") return;
    this.counters[counter]++;
    this.close1(link);
  }

  private close1(link: Link): void {
    link.state = "closed";
    link.socket.destroy();
  }

  private onData(link: Link, chunk: Buffer): void {
    link.decoder.push(chunk);
    // One frame at a time: the frame that completes the handshake raises the limit for the next.
    while (link.state !== "closed") {
      try {
        const f = link.decoder.next();
        if (f === null) return;
        this.onFrame(link, f);
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        this.refuse(link, "refusedBadFrame");
        return;
      }
    }
  }

  /** One whole frame; DecodeError from here closes the link as a bad frame. */
  private onFrame(link: Link, payload: Buffer): void {
    switch (link.state) {
      case "hello":
        this.onHello(link, decodeHello(payload));
        return;
      case "proof":
        this.onProof(link, decodeProof(payload));
        return;
      case "open": {
        const body = openFrame(payload, (link.keys as LinkKeys).receive, link.received++);
        if (body === null) {
          this.refuse(link, "refusedBadMac");
          return;
        }
        this.onMessage(link, isPeerPayload(body) ? decodePeerMessage(body) : decodeMessage(body));
        return;
      }
      case "closed":
        return;
    }
  }

  private onHello(link: Link, hello: Hello): void {
    const wrongPeer = hello.index === this.cfg.id || (link.expectedPeer !== null && hello.index !== link.expectedPeer);
    const key = wrongPeer || !bytesEqual(hello.chainHash, this.cfg.chainHash) ? null : this.cfg.members(hello.index);
    if (key === null) {
      this.refuse(link, "refusedUnauthenticated");
      return;
    }
    link.peer = hello.index;
    link.peerKey = key;
    link.peerNonce = hello.nonce;
    link.peerEphemeral = hello.ephemeral;
    link.state = "proof";
    const signature = this.cfg.signer.sign(proofMessage(this.transcript(link), link.role));
    link.socket.write(frame(encodeProof(signature)));
  }

  private transcript(link: Link): Transcript {
    assert(link.peer !== null && link.peerNonce !== null && link.peerEphemeral !== null, "the peer's hello arrived");
    const mine = { nonce: link.nonce, ephemeral: link.ephemeral.publicKey, index: this.cfg.id };
    const theirs = { nonce: link.peerNonce, ephemeral: link.peerEphemeral, index: link.peer };
    const [d, a] = link.role === LinkRole.dialer ? [mine, theirs] : [theirs, mine];
    return { chainHash: this.cfg.chainHash, dialerNonce: d.nonce, acceptorNonce: a.nonce, dialerEphemeral: d.ephemeral, acceptorEphemeral: a.ephemeral, dialerIndex: d.index, acceptorIndex: a.index };
  }

  private onProof(link: Link, signature: Uint8Array): void {
    assert(link.peer !== null && link.peerKey !== null, "a proof follows a hello");
    const peerRole = link.role === LinkRole.dialer ? LinkRole.acceptor : LinkRole.dialer;
    const t = this.transcript(link);
    if (!this.verifier.verify(link.peerKey, proofMessage(t, peerRole), signature)) {
      this.refuse(link, "refusedUnauthenticated");
      return;
    }
    link.keys = linkKeys(link.ephemeral.privateKey, t, link.role); // DecodeError (an unusable key): a bad frame
    link.state = "open";
    link.decoder.frameBytesMax = this.limits.frameBytesMax;
    if (link.timer !== null) clearTimeout(link.timer);
    link.timer = null;
    this.counters.authenticated++;
    if (link.role === LinkRole.acceptor) {
      // A peer that reconnects (restart, lost link) replaces its old inbound link.
      const old = this.inboundByPeer.get(link.peer);
      if (old !== undefined && old !== link) this.close1(old);
      this.inboundByPeer.set(link.peer, link);
    } else {
      const out = this.outbound.get(link.peer);
      assert(out !== undefined && out.link === link, "an outbound link belongs to its peer's entry");
      out.attempt = 0;
      this.flush(out);
    }
  }

  private onMessage(link: Link, m: LinkMessage): void {
    if (m.from !== link.peer) {
      this.refuse(link, "refusedWrongSender");
      return;
    }
    if (m.to !== this.cfg.id) {
      this.refuse(link, "refusedWrongRecipient");
      return;
    }
    this.counters.messagesReceived++;
    this.cfg.onMessage(m.from, m);
  }

  // ---------------------------------------------------------------- membership and shutdown

  /**
   * Ask `members` again about every peer: links of peers no longer active
   * members (or whose key changed) are closed, and nothing more is queued
   * for them. Call after applying a block that changes membership.
   */
  refreshMembership(): void {
    const stillMember = (link: Link): boolean => {
      if (link.peer === null || link.peerKey === null) return true; // not identified yet; the handshake will ask
      const key = this.cfg.members(link.peer);
      return key !== null && bytesEqual(key, link.peerKey);
    };
    for (const link of [...this.inbound]) if (!stillMember(link)) this.refuse(link, "removedMembers");
    for (const [peer, out] of [...this.outbound]) {
      if (out.link !== null && !stillMember(out.link)) this.refuse(out.link, "removedMembers");
      if (this.cfg.members(peer) === null) this.forget(out);
    }
  }

  private forget(out: Outbound): void {
    this.outbound.delete(out.peer);
    if (out.timer !== null) clearTimeout(out.timer);
    out.timer = null;
    out.queue.clear();
    if (out.link !== null) this.close1(out.link);
  }

  /** Close the listener, every connection and every timer. Queued messages are discarded. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const listening = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const out of [...this.outbound.values()]) this.forget(out);
    for (const link of [...this.inbound]) this.close1(link);
    await listening;
    assert(this.outbound.size === 0, "no peer left after close");
  }
}

function validAddress(a: PeerAddress): boolean {
  return typeof a.host === "string" && a.host.length > 0 && a.host.length <= 255 && isSafeUint(a.port) && a.port > 0 && a.port <= 65535;
}

/**
 * The `members` lookup over a ledger state: the key of an active member with
 * the box or auditor role (the boxes that run Raft), else null. `state` is a
 * function so the transport always asks the latest applied state.
 */
export function memberKeysOf(state: () => LedgerState): (index: NodeId) => Uint8Array | null {
  return (index) => {
    if (!isSafeUint(index) || index > WIRE_NODE_ID_MAX) return null;
    const r = state().tree.get(memberKey(index));
    if (r === undefined || r.kind !== "member" || !r.active || (r.roles & (Role.box | Role.auditor)) === 0) return null;
    return r.publicKey;
  };
}

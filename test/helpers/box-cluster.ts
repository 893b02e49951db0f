// A cluster of real boxes in this process for daemon tests: seeded keys, one
// genesis, a data directory per box on disk (real SQLite files, the Raft log
// in its worker thread), real TCP links on loopback.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Genesis, parseGenesis } from "../../ledger/genesis.js";
import { toHex } from "../../ledger/hash.js";
import type { NodeSigner } from "../../ledger/keys.js";
import { NodeVerifier } from "../../ledger/keys.js";
import { Ledger } from "../../ledger/ledger.js";
import type { NodeId } from "../../ledger/raft/raft.js";
import { waitFor } from "../../daemon/local-cluster.js";
import { BoxNode, type BoxNodeOptions } from "../../daemon/node.js";
import type { PeerAddress } from "../../daemon/transport.js";
import { fixtureSigner } from "./chain-fixture.js";

export const FAST_TIMING = { tickMs: 50, electionTicks: 10, heartbeatTicks: 1, blockIntervalMs: 500 } as const;

export class BoxCluster {
  readonly root: string;
  readonly signers: NodeSigner[];
  readonly genesis: Genesis;
  readonly nodes = new Map<NodeId, BoxNode>();
  readonly addresses = new Map<NodeId, PeerAddress>();

  constructor(
    readonly size: number,
    readonly options: { seed?: number; extraMembers?: number; genesis?: Record<string, unknown> } = {},
  ) {
    this.root = mkdtempSync(join(tmpdir(), "peergrid-cluster-"));
    const seed = options.seed ?? 7;
    const users = options.extraMembers ?? 1;
    this.signers = Array.from({ length: size + users }, (_, i) => fixtureSigner(seed, i));
    this.genesis = parseGenesis({
      chainId: "test-cluster",
      genesisTimeMs: Date.now() - 60_000,
      members: this.signers.map((s, i) => ({ name: i < size ? `box-${i}` : `user-${i}`, publicKey: toHex(s.publicKey), roles: i === 0 ? ["box", "admin"] : i < size ? ["box"] : ["user"] })),
      ...options.genesis,
    });
    for (let i = 0; i < size; i++) Ledger.create(this.dir(i), this.genesis, new NodeVerifier()).close();
  }

  dir(id: NodeId): string {
    return join(this.root, `box-${id}`);
  }

  async start(id: NodeId, extra: Partial<BoxNodeOptions> = {}): Promise<BoxNode> {
    const node = await BoxNode.start({
      dataDir: this.dir(id),
      signer: this.signers[id] as NodeSigner,
      peers: this.addresses,
      listenHost: "127.0.0.1",
      listenPort: this.addresses.get(id)?.port ?? 0,
      timing: FAST_TIMING,
      ...extra,
    });
    this.nodes.set(id, node);
    this.addresses.set(id, { host: "127.0.0.1", port: node.raftPort });
    return node;
  }

  async startAll(): Promise<void> {
    for (let i = 0; i < this.size; i++) await this.start(i);
  }

  async stop(id: NodeId): Promise<void> {
    await this.nodes.get(id)?.stop();
    this.nodes.delete(id);
  }

  leader(): BoxNode | null {
    const leaders = [...this.nodes.values()].filter((n) => n.role === "leader");
    return leaders.length === 1 ? (leaders[0] as BoxNode) : null;
  }

  waitFor<T>(what: string, f: () => T | null | undefined | false | Promise<T | null | undefined | false>, timeoutMs = 15_000): Promise<T> {
    return waitFor(what, f, timeoutMs, 20);
  }


  async close(): Promise<void> {
    for (const id of [...this.nodes.keys()]) await this.stop(id);
    rmSync(this.root, { recursive: true, force: true });
  }
}

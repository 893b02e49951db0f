// peergrid propose / vote: members sign with their own keys and submit to a
// real box over HTTP; the vote is counted and the critical-load list takes
// effect at its height.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { buildHttp } from "../../daemon/http.js";
import type { BoxNode } from "../../daemon/node.js";
import { NodeSigner, writeKeyFile } from "../../ledger/keys.js";
import { CRITICAL_LOADS_KEY, type CriticalLoadsRecord, type ProposalRecord, proposalKey } from "../../ledger/records.js";
import { parseHex } from "../../ledger/hash.js";
import { BoxCluster } from "../helpers/box-cluster.js";
import { runCli } from "../helpers/cli.js";

describe("peergrid propose and vote", () => {
  // A short voting period: a genesis with votingBlocksMin 1 (blocks every 500 ms here).
  const c = new BoxCluster(1, { extraMembers: 3, genesis: { governance: { votingBlocksMin: 1, votingBlocksMax: 1_000 } } });
  let node: BoxNode;
  let app: FastifyInstance;
  let url: string;
  const dir = mkdtempSync(join(tmpdir(), "pg-gov-cli-"));
  const keyOf = (i: number) => join(dir, `member-${i}.key`);

  before(async () => {
    node = await c.start(0);
    await c.waitFor("leadership", () => node.role === "leader" && node.ledger.state.height >= 1);
    app = buildHttp(node);
    await app.listen({ host: "127.0.0.1", port: 0 });
    const a = app.server.address();
    url = `http://127.0.0.1:${typeof a === "object" && a !== null ? a.port : 0}`;
    for (let i = 0; i < 4; i++) writeKeyFile(keyOf(i), c.signers[i] as NodeSigner);
  });
  after(async () => {
    await app.close();
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a member proposes a critical-load list, three vote yes, and it takes effect", async () => {
    const p = await runCli("propose", "--box", url, "--key", keyOf(1), "--critical-loads", "3,2", "--voting-blocks", "12", "--effective-after", "2");
    assert.equal(p.code, 0, p.out);
    const { id } = JSON.parse(p.out) as { id: string };
    await c.waitFor("the proposal in the ledger", () => node.ledger.state.tree.get(proposalKey(parseHex(id, 32) as Uint8Array)));
    for (const voter of [0, 1, 2]) {
      const v = await runCli("vote", "--box", url, "--key", keyOf(voter), "--proposal", id, "--yes");
      assert.equal(v.code, 0, v.out);
    }
    const record = () => node.ledger.state.tree.get(proposalKey(parseHex(id, 32) as Uint8Array)) as ProposalRecord;
    await c.waitFor("three votes counted", () => record().yes === 3);
    const applied = await c.waitFor("applied", () => (record().status === "applied" ? record() : null), 30_000);
    assert.equal(applied.electorate, 4);
    assert.deepEqual((node.ledger.state.tree.get(CRITICAL_LOADS_KEY) as CriticalLoadsRecord).premises, [3, 2]);
  });

  it("mistakes are named: no action, two actions, an unknown parameter, a key the chain does not know, an unreachable box", async () => {
    const none = await runCli("propose", "--box", url, "--key", keyOf(1));
    assert.equal(none.code, 2);
    assert.match(none.out, /exactly one of --critical-loads, --set/);
    const bad = await runCli("propose", "--box", url, "--key", keyOf(1), "--set", "intervalMs=60000");
    assert.equal(bad.code, 2);
    assert.match(bad.out, /--set "intervalMs=60000" is not PARAM=VALUE with PARAM one of priceMinMicroPerKWh/);
    const stranger = join(dir, "stranger.key");
    writeKeyFile(stranger, NodeSigner.generate());
    const unknown = await runCli("vote", "--box", url, "--key", stranger, "--proposal", "ab".repeat(32), "--no");
    assert.equal(unknown.code, 2);
    assert.match(unknown.out, /does not know this key: no member holds the key/);
    const away = await runCli("vote", "--box", "http://127.0.0.1:9", "--key", keyOf(1), "--proposal", "ab".repeat(32), "--yes");
    assert.equal(away.code, 2);
    assert.match(away.out, /cannot reach http:\/\/127\.0\.0\.1:9/);
  });
});

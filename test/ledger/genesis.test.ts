// The genesis document: clear problems with JSON paths, defaults, and a hash
// that commits to the content rather than to the JSON text.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigError } from "../../ledger/errors.js";
import { DEFAULT_LEDGER_PARAMS, DEFAULT_MARKET_PARAMS, type Genesis, genesisBlock, genesisDocHash, parseGenesis } from "../../ledger/genesis.js";
import { ZERO_HASH, toHex } from "../../ledger/hash.js";
import { EMPTY_STATE_ROOT } from "../../ledger/state-tree.js";
import { T0, keyFor } from "./fixtures.js";

const BOX_KEY = toHex(keyFor("g-box").publicKey);
const USER_KEY = toHex(keyFor("g-user").publicKey);

function doc(): Record<string, unknown> {
  return {
    chainId: "elm-street",
    genesisTimeMs: T0,
    members: [
      { name: "box 1", publicKey: BOX_KEY, roles: ["box", "admin"] },
      { name: "Ann", publicKey: USER_KEY, roles: ["user"] },
    ],
  };
}

/** The problems parseGenesis reports for `value` (fails if it accepts it). */
function problems(value: unknown): readonly string[] {
  try {
    parseGenesis(value);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.code, "PG_ERR_CONFIG");
    assert.ok(err.problems.length > 0);
    return err.problems;
  }
  assert.fail("parseGenesis accepted an invalid document");
}

function hasProblem(value: unknown, path: string, words: RegExp): void {
  const list = problems(value);
  assert.ok(
    list.some((p) => p.startsWith(`${path}: `) && words.test(p)),
    `no problem at ${path} matching ${words} in:\n  ${list.join("\n  ")}`,
  );
}

const hashOf = (value: unknown): string => toHex(genesisBlock(parseGenesis(value)).hash);

describe("genesis: problems name their JSON path", () => {
  test("a valid document parses", () => {
    const g = parseGenesis(doc());
    assert.equal(g.chainId, "elm-street");
    assert.equal(g.members.length, 2);
  });

  test("missing chainId", () => {
    const d = doc();
    delete d.chainId;
    hasProblem(d, "/chainId", /required/i);
  });

  test("a chainId with capitals or spaces", () => {
    hasProblem({ ...doc(), chainId: "Elm Street" }, "/chainId", /match/i);
  });

  test("a public key that is not 64 lowercase hex digits", () => {
    for (const publicKey of ["zz", BOX_KEY.slice(2), BOX_KEY.toUpperCase(), `${BOX_KEY}00`]) {
      const d = doc();
      (d.members as { publicKey: string }[])[1] = { name: "Ann", publicKey, roles: ["user"] } as never;
      hasProblem(d, "/members/1/publicKey", /match/i);
    }
  });

  test("the same key twice", () => {
    const d = doc();
    (d.members as unknown[]).push({ name: "Ann again", publicKey: USER_KEY, roles: ["user"] });
    hasProblem(d, "/members/2/publicKey", /already enrolled/);
  });

  test("no admin", () => {
    hasProblem({ ...doc(), members: [{ name: "box", publicKey: BOX_KEY, roles: ["box"] }] }, "/members", /admin/);
  });

  test("no box", () => {
    hasProblem({ ...doc(), members: [{ name: "boss", publicKey: BOX_KEY, roles: ["admin", "user"] }] }, "/members", /box/);
  });

  test("an unknown role", () => {
    hasProblem({ ...doc(), members: [{ name: "box", publicKey: BOX_KEY, roles: ["box", "admin", "king"] }] }, "/members/0/roles/2", /./);
  });

  test("a member without roles, with a repeated role, or with an empty name", () => {
    hasProblem({ ...doc(), members: [{ name: "box", publicKey: BOX_KEY, roles: [] }] }, "/members/0/roles", /./);
    hasProblem({ ...doc(), members: [{ name: "box", publicKey: BOX_KEY, roles: ["box", "box"] }] }, "/members/0/roles", /./);
    hasProblem({ ...doc(), members: [{ name: "", publicKey: BOX_KEY, roles: ["box", "admin"] }] }, "/members/0/name", /./);
  });

  test("a name of 64 characters but more than 64 bytes", () => {
    hasProblem({ ...doc(), members: [{ name: "é".repeat(40), publicKey: BOX_KEY, roles: ["box", "admin"] }] }, "/members/0/name", /bytes/);
  });

  test("a name with a lone UTF-16 surrogate", () => {
    hasProblem({ ...doc(), members: [{ name: "box \uD800", publicKey: BOX_KEY, roles: ["box", "admin"] }] }, "/members/0/name", /surrogate/);
  });

  test("extra properties at the top, in a member, in market and in ledger", () => {
    hasProblem({ ...doc(), colour: "green" }, "/colour", /unexpected/i);
    hasProblem({ ...doc(), members: [{ name: "box", publicKey: BOX_KEY, roles: ["box", "admin"], age: 3 }] }, "/members/0/age", /unexpected/i);
    hasProblem({ ...doc(), market: { tickSize: 1 } }, "/market/tickSize", /unexpected/i);
    hasProblem({ ...doc(), ledger: { blockIntervalMS: 1000 } }, "/ledger/blockIntervalMS", /unexpected/i);
  });

  test("price minimum above maximum", () => {
    hasProblem({ ...doc(), market: { priceMinMicroPerKWh: 500_000, priceMaxMicroPerKWh: 400_000 } }, "/market", /priceMinMicroPerKWh is above/);
    hasProblem({ ...doc(), market: { priceMaxMicroPerKWh: 2 ** 40 - 1, orderEnergyMaxWh: 2 ** 40 - 1 } }, "/market", /would be worth more than 8589934592 micro-currency; lower one of them/);
    // The bound clear() asserts (price x energy <= 2^33 x 1000), not the floor of the value: this pair passes the floor.
    hasProblem({ ...doc(), market: { priceMaxMicroPerKWh: 1_073_741_824_124, orderEnergyMaxWh: 8 } }, "/market", /would be worth more than/);
  });

  test("parameters out of range or not integers", () => {
    hasProblem({ ...doc(), market: { intervalMs: 1_000 } }, "/market/intervalMs", /./);
    hasProblem({ ...doc(), ledger: { txsPerBlockMax: 0 } }, "/ledger/txsPerBlockMax", /./);
    hasProblem({ ...doc(), ledger: { seqGapMax: 1.5 } }, "/ledger/seqGapMax", /integer/i);
    hasProblem({ ...doc(), genesisTimeMs: -1 }, "/genesisTimeMs", /./);
  });

  test("market or ledger that is not an object (null, a number, an array) is a problem, not the defaults", () => {
    for (const bad of [null, 5, "fast", []]) {
      hasProblem({ ...doc(), market: bad }, "/market", /object/i);
      hasProblem({ ...doc(), ledger: bad }, "/ledger", /object/i);
    }
  });

  test("not an object at all", () => {
    for (const bad of [null, 42, "genesis", []]) assert.ok(problems(bad).length > 0);
  });

  test("every problem is listed at once", () => {
    const list = problems({ chainId: "BAD", genesisTimeMs: "now", members: [], colour: 1 });
    assert.ok(list.length >= 4, list.join("\n"));
  });
});

describe("genesis: defaults", () => {
  test("market and ledger are filled with the defaults when left out", () => {
    const g = parseGenesis(doc());
    assert.deepEqual(g.market, DEFAULT_MARKET_PARAMS);
    assert.deepEqual(g.ledger, DEFAULT_LEDGER_PARAMS);
  });

  test("a partial market or ledger keeps what is given and defaults the rest", () => {
    const g = parseGenesis({ ...doc(), market: { intervalMs: 300_000 }, ledger: { seqGapMax: 5 } });
    assert.deepEqual(g.market, { ...DEFAULT_MARKET_PARAMS, intervalMs: 300_000 });
    assert.deepEqual(g.ledger, { ...DEFAULT_LEDGER_PARAMS, seqGapMax: 5 });
  });

  test("parsing does not modify the caller's document", () => {
    const d = doc();
    const before = JSON.stringify(d);
    parseGenesis(d);
    assert.equal(JSON.stringify(d), before);
  });
});

describe("genesis: the block and its hash", () => {
  test("block 0 is unsigned, empty, on the empty state, and commits to the document", () => {
    const g = parseGenesis(doc());
    const b = genesisBlock(g);
    assert.equal(b.header.height, 0);
    assert.equal(b.header.timeMs, T0);
    assert.deepEqual(b.header.parentHash, ZERO_HASH);
    assert.deepEqual(b.header.stateRoot, EMPTY_STATE_ROOT);
    assert.deepEqual(b.header.txRoot, genesisDocHash(g));
    assert.equal(b.txs.length, 0);
  });

  test("the hash ignores JSON key order, whitespace and explicit defaults", () => {
    const a = hashOf(JSON.parse(JSON.stringify(doc())));
    const reordered = `{
      "members": [
        {"roles": ["admin", "box"], "publicKey": "${BOX_KEY}", "name": "box 1"},
        {"publicKey": "${USER_KEY}",   "roles": ["user"], "name": "Ann"}
      ],
      "genesisTimeMs": ${T0},
      "chainId": "elm-street"
    }`;
    assert.equal(hashOf(JSON.parse(reordered)), a);
    assert.equal(hashOf({ ...doc(), market: { ...DEFAULT_MARKET_PARAMS }, ledger: { ...DEFAULT_LEDGER_PARAMS } }), a);
  });

  test("the hash changes with every parameter and every member field", () => {
    const base = hashOf(doc());
    const variants: [string, Record<string, unknown>][] = [
      ["chainId", { ...doc(), chainId: "elm-street-2" }],
      ["genesisTimeMs", { ...doc(), genesisTimeMs: T0 + 1 }],
      ["member name", { ...doc(), members: [{ name: "box 2", publicKey: BOX_KEY, roles: ["box", "admin"] }, (doc().members as unknown[])[1]] }],
      ["member key", { ...doc(), members: [{ name: "box 1", publicKey: toHex(keyFor("g-other").publicKey), roles: ["box", "admin"] }, (doc().members as unknown[])[1]] }],
      ["member roles", { ...doc(), members: [(doc().members as unknown[])[0], { name: "Ann", publicKey: USER_KEY, roles: ["user", "auditor"] }] }],
      ["member order", { ...doc(), members: [...(doc().members as unknown[])].reverse() }],
    ];
    const otherMarket: Record<keyof typeof DEFAULT_MARKET_PARAMS, number | string> = {
      intervalMs: 300_000,
      priceMinMicroPerKWh: 1,
      priceMaxMicroPerKWh: 1_999_999,
      orderEnergyMaxWh: 999_999,
      openOrdersPerMemberMax: 31,
      orderIntervalsAheadMax: 95,
      clearingRule: "pay-as-bid",
      settlementMode: "binding",
      utilityImportMicroPerKWh: 300_001,
      utilityExportMicroPerKWh: 80_001,
      imbalanceMicroPerKWh: 250_001,
      buyerFeeMicroPerKWh: 1,
      sellerFeeMicroPerKWh: 2,
    };
    for (const [name, value] of Object.entries(otherMarket)) variants.push([`market.${name}`, { ...doc(), market: { [name]: value } }]);
    for (const [name, value] of Object.entries(DEFAULT_LEDGER_PARAMS)) variants.push([`ledger.${name}`, { ...doc(), ledger: { [name]: value + 1 } }]);
    const seen = new Map<string, string>([[base, "base"]]);
    for (const [name, value] of variants) {
      const h = hashOf(value);
      assert.ok(!seen.has(h), `${name} gives the same hash as ${seen.get(h)}`);
      seen.set(h, name);
    }
    assert.equal(seen.size, 1 + 6 + Object.keys(DEFAULT_MARKET_PARAMS).length + Object.keys(DEFAULT_LEDGER_PARAMS).length);
  });

  test("the parsed document is a plain Genesis that survives a JSON round trip with the same hash", () => {
    const g: Genesis = parseGenesis(doc());
    assert.equal(hashOf(JSON.parse(JSON.stringify(g))), toHex(genesisBlock(g).hash));
  });
});

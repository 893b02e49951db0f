// The genesis document (a JSON file written by `peergrid init` or by hand):
// chain id, the first members with their keys and roles, market and ledger
// parameters. One TypeBox schema gives the TypeScript type, the validation
// with its error messages, and (later) the HTTP API's JSON schema.
//
// The genesis block commits to the document's canonical binary encoding, not
// to the JSON text, so reformatting the file does not change the chain.
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { assert } from "./assert.js";
import { type Block, BLOCK_VERSION, blockHash, type BlockHeader } from "./block.js";
import { type Reader, Writer } from "./codec.js";
import { ConfigError } from "./errors.js";
import { type Hash, HashTag, ZERO_HASH, hashTagged, parseHex } from "./hash.js";
import { EMPTY_STATE_ROOT } from "./state-tree.js";
import { MEMBER_NAME_BYTES_MAX, ORDER_ENERGY_WH_MAX, TARIFF_MICRO_PER_KWH_MAX, ORDER_VALUE_MICRO_MAX, PRICE_MICRO_PER_KWH_MAX, Role, type RoleName, SIGNATURE_BYTES, TIME_MS_MAX } from "./tx.js";

const RoleNameSchema = Type.Union(
  (Object.keys(Role) as RoleName[]).map((r) => Type.Literal(r)),
  { description: "box: reads meters and keeps the ledger; user: trades; admin: enrols members; auditor: read-only replica; controller: owns switchgear; renewable: has local renewable generation (its sells are local renewable)" },
);

const Int = (min: number, max: number, description: string) => Type.Integer({ minimum: min, maximum: max, description });

export const MarketParamsSchema = Type.Object(
  {
    intervalMs: Int(60_000, 86_400_000, "market (delivery) interval length; 900000 = 15 minutes"),
    priceMinMicroPerKWh: Int(0, PRICE_MICRO_PER_KWH_MAX, "lowest limit price an order may carry"),
    priceMaxMicroPerKWh: Int(1, PRICE_MICRO_PER_KWH_MAX, "highest limit price an order may carry"),
    orderEnergyMaxWh: Int(1, ORDER_ENERGY_WH_MAX, "largest energy of one order"),
    openOrdersPerMemberMax: Int(1, 10_000, "open orders one member may have"),
    orderIntervalsAheadMax: Int(1, 10_000, "how many intervals ahead an order may be placed"),
    clearingRule: Type.Union([Type.Literal("pay-as-clear"), Type.Literal("pay-as-bid")], {
      description: "pay-as-clear: one price for every trade of an interval; pay-as-bid: each side at its own limit, the spread to the community",
    }),
    settlementMode: Type.Union([Type.Literal("shadow"), Type.Literal("binding")], {
      description: "shadow: everything is computed and shown, no money is owed (a community not yet licensed); binding: balances are money owed",
    }),
    utilityImportMicroPerKWh: Int(0, TARIFF_MICRO_PER_KWH_MAX, "what the utility charges for energy a member imports beyond its local purchases"),
    utilityExportMicroPerKWh: Int(0, TARIFF_MICRO_PER_KWH_MAX, "what the utility pays for energy a member exports beyond its local sales"),
    imbalanceMicroPerKWh: Int(0, TARIFF_MICRO_PER_KWH_MAX, "islanded (no utility): the community's price for imbalance, both ways"),
    buyerFeeMicroPerKWh: Int(0, TARIFF_MICRO_PER_KWH_MAX, "community fee per delivered kWh, paid by the buyer on top of the price"),
    sellerFeeMicroPerKWh: Int(0, TARIFF_MICRO_PER_KWH_MAX, "community fee per delivered kWh, paid by the seller out of the price"),
  },
  { additionalProperties: false },
);

export const LedgerParamsSchema = Type.Object(
  {
    blockIntervalMs: Int(100, 60_000, "target time between blocks"),
    txsPerBlockMax: Int(1, 100_000, "transactions one block may carry"),
    blockBytesMax: Int(1024, 16 * 1024 * 1024, "encoded size one block may have"),
    readingSkewMaxMs: Int(0, 3_600_000, "how far a reading's time may be ahead of its block's time"),
    readingAgeMaxMs: Int(1_000, 7 * 86_400_000, "how far a reading's time may be behind its block's time"),
    meterPowerMaxW: Int(1, 100_000_000, "largest plausible power through one meter; bounds counter jumps"),
    seqGapMax: Int(1, 1_000_000_000, "largest jump of an author's sequence number (lost transactions are skipped, replays refused)"),
  },
  { additionalProperties: false },
);

export const GovernanceParamsSchema = Type.Object(
  {
    quorumPermille: Int(1, 1_000, "share of the members entitled to vote who must vote for a proposal to count, permille"),
    thresholdPermille: Int(0, 999, "a proposal is accepted when its approvals are more than this share of the votes cast, permille"),
    votingBlocksMin: Int(1, 100_000_000, "shortest voting period a proposal may set, blocks"),
    votingBlocksMax: Int(1, 100_000_000, "longest voting period, and longest wait from its end to taking effect, blocks"),
    openProposalsMax: Int(1, 1_024, "proposals open (voting, or accepted and waiting to take effect) at once"),
  },
  { additionalProperties: false },
);

export const GenesisMemberSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: MEMBER_NAME_BYTES_MAX }),
    publicKey: Type.String({ pattern: "^[0-9a-f]{64}$", description: "Ed25519 public key, 64 lowercase hex digits" }),
    roles: Type.Array(RoleNameSchema, { minItems: 1, uniqueItems: true }),
  },
  { additionalProperties: false },
);

export const GenesisSchema = Type.Object(
  {
    chainId: Type.String({ pattern: "^[a-z0-9][a-z0-9-]{0,62}$", description: "lowercase letters, digits and dashes" }),
    genesisTimeMs: Int(0, TIME_MS_MAX, "chain start, milliseconds since the epoch"),
    members: Type.Array(GenesisMemberSchema, { minItems: 1, maxItems: 10_000 }),
    market: MarketParamsSchema,
    ledger: LedgerParamsSchema,
    governance: GovernanceParamsSchema,
  },
  { additionalProperties: false },
);

export type MarketParams = Static<typeof MarketParamsSchema>;
export type LedgerParams = Static<typeof LedgerParamsSchema>;
export type GovernanceParams = Static<typeof GovernanceParamsSchema>;
export type GenesisMember = Static<typeof GenesisMemberSchema>;
export type Genesis = Static<typeof GenesisSchema>;

export const DEFAULT_MARKET_PARAMS: MarketParams = {
  intervalMs: 900_000,
  priceMinMicroPerKWh: 0,
  priceMaxMicroPerKWh: 2_000_000, // 2.00 per kWh
  orderEnergyMaxWh: 1_000_000,
  openOrdersPerMemberMax: 32,
  orderIntervalsAheadMax: 96,
  clearingRule: "pay-as-clear",
  settlementMode: "shadow", // binding only once the community is licensed to trade energy
  utilityImportMicroPerKWh: 300_000, // 0.30 per kWh
  utilityExportMicroPerKWh: 80_000, // 0.08 per kWh
  imbalanceMicroPerKWh: 250_000,
  buyerFeeMicroPerKWh: 0,
  sellerFeeMicroPerKWh: 0,
};

export const DEFAULT_GOVERNANCE_PARAMS: GovernanceParams = {
  quorumPermille: 500, // half the members take part
  thresholdPermille: 500, // a simple majority of the votes cast
  votingBlocksMin: 3_600, // an hour at one block a second
  votingBlocksMax: 2_592_000, // thirty days
  openProposalsMax: 32,
};

export const DEFAULT_LEDGER_PARAMS: LedgerParams = {
  blockIntervalMs: 1_000,
  txsPerBlockMax: 20_000,
  blockBytesMax: 4 * 1024 * 1024,
  readingSkewMaxMs: 10_000,
  readingAgeMaxMs: 600_000,
  meterPowerMaxW: 250_000,
  seqGapMax: 1_000_000,
};

/**
 * Validate a parsed genesis JSON value. `market` and `ledger` may be left out
 * (or partly given) and take the defaults above. Throws ConfigError listing
 * every problem with its JSON path.
 */
export function parseGenesis(value: unknown): Genesis {
  const withDefaults =
    isPlainObject(value)
      ? {
          ...value,
          market: withDefaultsFor(DEFAULT_MARKET_PARAMS, value.market),
          ledger: withDefaultsFor(DEFAULT_LEDGER_PARAMS, value.ledger),
          governance: withDefaultsFor(DEFAULT_GOVERNANCE_PARAMS, value.governance),
        }
      : value;
  const problems = [...Value.Errors(GenesisSchema, withDefaults)].slice(0, 20).map((e) => `${e.path || "/"}: ${e.message}`);
  if (problems.length > 0) throw new ConfigError("genesis", problems);
  const g = withDefaults as Genesis;
  const seen = new Set<string>();
  g.members.forEach((m, i) => {
    if (seen.has(m.publicKey)) problems.push(`/members/${i}/publicKey: the same key is already enrolled by an earlier member`);
    seen.add(m.publicKey);
    if (new TextEncoder().encode(m.name).length > MEMBER_NAME_BYTES_MAX) problems.push(`/members/${i}/name: longer than ${MEMBER_NAME_BYTES_MAX} bytes`);
    if (/\p{Cs}/u.test(m.name)) problems.push(`/members/${i}/name: contains a lone UTF-16 surrogate (not valid Unicode text)`);
  });
  if (!g.members.some((m) => m.roles.includes("admin"))) problems.push("/members: no member has the admin role, so nobody could ever enrol another");
  if (!g.members.some((m) => m.roles.includes("box"))) problems.push("/members: no member has the box role, so nobody could propose a block");
  problems.push(...marketCrossProblems(g.market));
  if (g.governance.votingBlocksMin > g.governance.votingBlocksMax) problems.push("/governance: votingBlocksMin is above votingBlocksMax");
  if (problems.length > 0) throw new ConfigError("genesis", problems);
  return g;
}

/** Rules across market parameters (the schema checks each alone). */
function marketCrossProblems(m: MarketParams): string[] {
  const problems: string[] = [];
  if (m.priceMinMicroPerKWh > m.priceMaxMicroPerKWh) problems.push("/market: priceMinMicroPerKWh is above priceMaxMicroPerKWh");
  // The same inequality clear() asserts: price x energy <= ORDER_VALUE_MICRO_MAX x 1000.
  if (BigInt(m.priceMaxMicroPerKWh) * BigInt(m.orderEnergyMaxWh) > BigInt(ORDER_VALUE_MICRO_MAX) * 1000n) {
    problems.push(`/market: an order of orderEnergyMaxWh at priceMaxMicroPerKWh would be worth more than ${ORDER_VALUE_MICRO_MAX} micro-currency; lower one of them (their product / 1000 must stay within it)`);
  }
  return problems;
}

/** Everything wrong with a set of market parameters (a governance proposal's result is checked with it). */
export function marketParamProblems(m: MarketParams): string[] {
  const schema = [...Value.Errors(MarketParamsSchema, m)].slice(0, 20).map((e) => `/market${e.path}: ${e.message}`);
  return schema.length > 0 ? schema : marketCrossProblems(m);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Defaults under what is given; anything but an object or undefined is left for the schema to report. */
function withDefaultsFor(defaults: object, given: unknown): unknown {
  if (given === undefined) return { ...defaults };
  return isPlainObject(given) ? { ...defaults, ...given } : given;
}

export function rolesMask(roles: readonly RoleName[]): number {
  return roles.reduce((mask, r) => mask | Role[r], 0);
}

export function encodeGenesis(g: Genesis): Uint8Array {
  const w = new Writer(256 + g.members.length * 64);
  w.u8(1).str(g.chainId, 64).uvar(g.genesisTimeMs);
  w.uvar(g.members.length);
  for (const m of g.members) {
    const key = parseHex(m.publicKey, 32);
    assert(key !== null, "genesis member keys were validated");
    w.str(m.name, MEMBER_NAME_BYTES_MAX).fixed(key, 32).u8(rolesMask(m.roles));
  }
  encodeMarketParams(w, g.market);
  const lg = g.ledger;
  w.uvar(lg.blockIntervalMs).uvar(lg.txsPerBlockMax).uvar(lg.blockBytesMax).uvar(lg.readingSkewMaxMs);
  w.uvar(lg.readingAgeMaxMs).uvar(lg.meterPowerMaxW).uvar(lg.seqGapMax);
  const gv = g.governance;
  w.uvar(gv.quorumPermille).uvar(gv.thresholdPermille).uvar(gv.votingBlocksMin).uvar(gv.votingBlocksMax).uvar(gv.openProposalsMax);
  return w.finish();
}

/** Market parameters in their canonical encoding (the genesis document, and the state's current parameters). */
export function encodeMarketParams(w: Writer, mk: MarketParams): void {
  w.uvar(mk.intervalMs).uvar(mk.priceMinMicroPerKWh).uvar(mk.priceMaxMicroPerKWh);
  w.uvar(mk.orderEnergyMaxWh).uvar(mk.openOrdersPerMemberMax).uvar(mk.orderIntervalsAheadMax);
  w.u8(mk.clearingRule === "pay-as-clear" ? 0 : 1).u8(mk.settlementMode === "shadow" ? 0 : 1);
  w.uvar(mk.utilityImportMicroPerKWh).uvar(mk.utilityExportMicroPerKWh).uvar(mk.imbalanceMicroPerKWh);
  w.uvar(mk.buyerFeeMicroPerKWh).uvar(mk.sellerFeeMicroPerKWh);
}

export function decodeMarketParams(r: Reader): MarketParams {
  const v = (what: string) => r.uvar(what);
  const intervalMs = v("intervalMs");
  const priceMinMicroPerKWh = v("priceMin");
  const priceMaxMicroPerKWh = v("priceMax");
  const orderEnergyMaxWh = v("orderEnergyMax");
  const openOrdersPerMemberMax = v("openOrdersPerMemberMax");
  const orderIntervalsAheadMax = v("orderIntervalsAheadMax");
  const clearingRule = r.u8("clearingRule") === 0 ? "pay-as-clear" : "pay-as-bid";
  const settlementMode = r.u8("settlementMode") === 0 ? "shadow" : "binding";
  return {
    intervalMs, priceMinMicroPerKWh, priceMaxMicroPerKWh, orderEnergyMaxWh, openOrdersPerMemberMax, orderIntervalsAheadMax, clearingRule, settlementMode,
    utilityImportMicroPerKWh: v("utilityImport"), utilityExportMicroPerKWh: v("utilityExport"), imbalanceMicroPerKWh: v("imbalance"),
    buyerFeeMicroPerKWh: v("buyerFee"), sellerFeeMicroPerKWh: v("sellerFee"),
  };
}

/** Block 0: unsigned, no transactions; its txRoot commits to the genesis document. */
export function genesisBlock(g: Genesis): Block {
  const header: BlockHeader = {
    version: BLOCK_VERSION,
    height: 0,
    parentHash: ZERO_HASH,
    timeMs: g.genesisTimeMs,
    txRoot: genesisDocHash(g),
    stateRoot: EMPTY_STATE_ROOT,
    proposer: 0,
    raftTerm: 0,
    raftIndex: 0,
    txCount: 0,
  };
  return { header, signature: new Uint8Array(SIGNATURE_BYTES), hash: blockHash(header), txs: [] };
}

export function genesisDocHash(g: Genesis): Hash {
  return hashTagged(HashTag.genesis, encodeGenesis(g));
}

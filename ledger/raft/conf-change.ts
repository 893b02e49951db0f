// Membership changes of the Raft cluster, one server at a time (Raft thesis
// §4.1; etcd's confchange.Simple): the payload of an entry of kind
// EntryKind.confChange, and the pure arithmetic that applies one to a
// configuration. Pure: no I/O, no clock, no randomness.
//
//   confChange := version:u8 (=1) | type:u8 | node:uvar
//   type       1 addVoter | 2 removeVoter | 3 addLearner | 4 removeLearner
//
// Canonical: one change has exactly one encoding (minimal varint), and
// decodeConfChange consumes every byte or throws a DecodeError.
//
// Semantics (applyConfChange), deterministic on every box:
//   addVoter n       n becomes a voter (a learner is promoted)
//   addLearner n     n becomes a learner (a voter is demoted)
//   removeVoter n    a voter n is removed; otherwise nothing changes
//   removeLearner n  a learner n is removed; otherwise nothing changes
// A change that would leave no voter changes nothing (the leader refuses to
// propose one; applying it as a no-op keeps every box in step if one is in a
// log anyway).
import { assert, assertNever, compareNumbers, isSafeUint } from "../assert.js";
import { Reader, Writer, varintSize } from "../codec.js";
import { DecodeReason } from "../errors.js";
import type { NodeId } from "./quorum.js";

export const CONF_CHANGE_VERSION = 1;
/** The same bound on node ids as the wire format (wire.ts WIRE_NODE_ID_MAX). */
export const CONF_CHANGE_NODE_ID_MAX = 2 ** 24 - 1;

export type ConfChangeType = "addVoter" | "removeVoter" | "addLearner" | "removeLearner";

export interface ConfChange {
  readonly type: ConfChangeType;
  readonly node: NodeId;
}

/** A cluster configuration: voters and learners, disjoint, each sorted numerically. */
export interface ClusterConfig {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/** Type codes. Stable: a code is never reused for another meaning. */
export const ConfChangeCode = { addVoter: 1, removeVoter: 2, addLearner: 3, removeLearner: 4 } as const satisfies Record<ConfChangeType, number>;
const TYPE_BY_CODE: ReadonlyMap<number, ConfChangeType> = new Map(Object.entries(ConfChangeCode).map(([name, code]) => [code, name as ConfChangeType]));

export function encodeConfChange(cc: ConfChange): Uint8Array {
  assert(isSafeUint(cc.node) && cc.node <= CONF_CHANGE_NODE_ID_MAX, `conf change node id ${cc.node} in range`);
  const size = 2 + varintSize(cc.node);
  const out = new Writer(size).u8(CONF_CHANGE_VERSION).u8(ConfChangeCode[cc.type]).uvar(cc.node).finish();
  assert(out.length === size, "conf change size as computed");
  return out;
}

/** Throws only DecodeError (wrong version, unknown type, id out of range, truncated, trailing). */
export function decodeConfChange(bytes: Uint8Array): ConfChange {
  const r = new Reader(bytes);
  const version = r.u8("conf change version");
  if (version !== CONF_CHANGE_VERSION) r.fail(DecodeReason.unsupportedVersion, `conf change version ${version}, this box reads ${CONF_CHANGE_VERSION}`);
  const code = r.u8("conf change type");
  const type = TYPE_BY_CODE.get(code);
  if (type === undefined) return r.fail(DecodeReason.unknownType, `unknown conf change type ${code}`);
  const node = r.uvar("conf change node", CONF_CHANGE_NODE_ID_MAX);
  r.done("conf change");
  return { type, node };
}

const sorted = (ids: Iterable<NodeId>): NodeId[] => [...ids].sort(compareNumbers);

/** True when `c` is well formed: at least one voter, ids sorted strictly increasing, voters and learners disjoint. */
export function isValidConfig(c: ClusterConfig): boolean {
  const increasing = (ids: readonly NodeId[]) => ids.every((id, i) => isSafeUint(id) && (i === 0 || (ids[i - 1] as NodeId) < id));
  const voters = new Set(c.voters);
  return c.voters.length > 0 && increasing(c.voters) && increasing(c.learners) && c.learners.every((l) => !voters.has(l));
}

/** The configuration after `cc` (a new object; `c` is not touched). */
export function applyConfChange(c: ClusterConfig, cc: ConfChange): ClusterConfig {
  assert(isValidConfig(c), "a valid configuration in");
  const voters = new Set(c.voters);
  const learners = new Set(c.learners);
  switch (cc.type) {
    case "addVoter":
      learners.delete(cc.node);
      voters.add(cc.node);
      break;
    case "addLearner":
      voters.delete(cc.node);
      learners.add(cc.node);
      break;
    case "removeVoter":
      voters.delete(cc.node);
      break;
    case "removeLearner":
      learners.delete(cc.node);
      break;
    default:
      assertNever(cc.type, "conf change type");
  }
  if (voters.size === 0) return c; // never leave a cluster that can decide nothing
  const out = { voters: sorted(voters), learners: sorted(learners) };
  assert(isValidConfig(out), "a valid configuration out");
  return out;
}

/** Whether applying `cc` to `c` changes anything. */
export function changesConfig(c: ClusterConfig, cc: ConfChange): boolean {
  const after = applyConfChange(c, cc);
  return !sameIds(after.voters, c.voters) || !sameIds(after.learners, c.learners);
}

export function sameIds(a: readonly NodeId[], b: readonly NodeId[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

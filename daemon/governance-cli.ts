// `peergrid propose` and `peergrid vote`: a member signs a governance
// proposal or a vote with its own key and hands it to any box's HTTP API.
// The box tells the member its number, its last sequence number and the
// chain's hash (GET /api/v1/members/by-key/:publicKey); the signature is
// made here, so the key never leaves the member's machine.
import { UsageError } from "../ledger/errors.js";
import { type Hash, parseHex, toHex } from "../ledger/hash.js";
import { type Signer, type TxBody, GOVERNABLE_MARKET_PARAMS, type GovernableParam, type ProposalAction, signTx } from "../ledger/tx.js";

const VOTING_MARGIN_BLOCKS = 10;

export interface SubmitResult {
  readonly id: string;
  readonly member: number;
  readonly seq: number;
  readonly status: number;
  readonly fate: unknown;
}

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (err) {
    throw new UsageError(`cannot reach ${url}: ${err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)}`);
  }
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** Sign `body` as the member holding `signer`'s key and submit it to the box at `box` (http://HOST:PORT). */
export async function signAndSubmit(box: string, signer: Signer, body: (height: number) => TxBody): Promise<SubmitResult> {
  const base = box.replace(/\/+$/, "");
  const who = await getJson(`${base}/api/v1/members/by-key/${toHex(signer.publicKey)}`);
  if (who.status !== 200) throw new UsageError(`the box at ${base} does not know this key: ${(who.body as { message?: string } | null)?.message ?? `HTTP ${who.status}`}`);
  const info = who.body as { chainHash: string; height: number; member: { index: number; lastSeq: number; active: boolean } };
  if (!info.member.active) throw new UsageError(`member ${info.member.index} has been removed from this chain`);
  const seq = info.member.lastSeq + 1;
  const tx = signTx({ author: info.member.index, seq, body: body(info.height) }, signer, parseHex(info.chainHash, 32) as Hash);
  let res: Response;
  try {
    res = await fetch(`${base}/api/v1/tx`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: Buffer.from(tx.bytes) });
  } catch (err) {
    throw new UsageError(`cannot reach ${base}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const fate = await res.json().catch(() => null);
  return { id: toHex(tx.id), member: info.member.index, seq, status: res.status, fate };
}

/** --set PARAM=VALUE (clearingRule and settlementMode by name) into market-parameter changes. */
export function parseParamChanges(specs: readonly string[]): { param: GovernableParam; value: number }[] {
  return specs.map((spec) => {
    const m = /^([A-Za-z]+)=(.+)$/.exec(spec);
    const param = m?.[1] as GovernableParam | undefined;
    if (m === null || param === undefined || !GOVERNABLE_MARKET_PARAMS.includes(param)) {
      throw new UsageError(`--set "${spec}" is not PARAM=VALUE with PARAM one of ${GOVERNABLE_MARKET_PARAMS.join(", ")}`);
    }
    const text = m[2] as string;
    const named: Record<string, number> = param === "clearingRule" ? { "pay-as-clear": 0, "pay-as-bid": 1 } : param === "settlementMode" ? { shadow: 0, binding: 1 } : {};
    const value = named[text] ?? (/^\d+$/.test(text) ? Number(text) : NaN);
    if (!Number.isSafeInteger(value)) throw new UsageError(`--set "${spec}": ${param} wants ${Object.keys(named).length > 0 ? Object.keys(named).join(" or ") : "a whole number"}`);
    return { param, value };
  });
}

/** A member list "3,5,9" into member numbers. */
export function parseMemberList(text: string, what: string): number[] {
  if (!/^\d+(,\d+)*$/.test(text)) throw new UsageError(`${what} "${text}" must be member numbers separated by commas, e.g. 3,5,9`);
  return text.split(",").map(Number);
}

export function proposalBody(action: ProposalAction, votingBlocks: number, effectiveAfter: number): (height: number) => TxBody {
  if (votingBlocks < 1 || effectiveAfter < 1) throw new UsageError("--voting-blocks and --effective-after must be at least 1");
  // The proposal lands in a block a few seconds after `height`; a margin of 10 blocks keeps its voting
  // at least votingBlocks long when it is taken (the chain refuses one shorter than its minimum).
  return (height) => ({ type: "proposal", action, votingEndsHeight: height + VOTING_MARGIN_BLOCKS + votingBlocks, effectiveHeight: height + VOTING_MARGIN_BLOCKS + votingBlocks + effectiveAfter });
}

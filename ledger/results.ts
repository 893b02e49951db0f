// Transaction result codes: the verdict every box gives each transaction of
// a block (ledger/state.ts applyTx), stored with it and compared by verify.
export const ResultCode = {
  ok: 0,
  unknownAuthor: 1,
  authorRemoved: 2,
  badSignature: 3,
  staleSequence: 4,
  sequenceGap: 5,
  notPermitted: 6,
  readingTimeOrder: 10,
  readingTimeWindow: 11,
  readingCounterBackwards: 12,
  readingCounterJump: 13,
  orderEnergy: 20,
  orderPrice: 21,
  orderInterval: 22,
  orderExpired: 23,
  orderCounterparty: 24,
  openOrdersLimit: 25,
  orderNotFound: 26,
  notOrderAuthor: 27,
  keyAlreadyEnrolled: 30,
  unknownSubject: 31,
  lastAdmin: 32,
  noRoles: 33,
  lastBox: 34,
  memberLimit: 35,
  islandUnchanged: 40,
  islandTimeOrder: 41,
  eventTimeWindow: 42,
  unknownPremise: 43,
  switchTimeOrder: 44,
  proposalVoting: 50,
  proposalInvalid: 51,
  proposalsLimit: 52,
  proposalNotFound: 53,
  votingClosed: 54,
  alreadyVoted: 55,
} as const;
export type ResultCode = (typeof ResultCode)[keyof typeof ResultCode];

const RESULT_NAMES = new Map<number, string>(Object.entries(ResultCode).map(([name, code]) => [code, name]));

export function resultName(code: number): string {
  return RESULT_NAMES.get(code) ?? `unknown(${code})`;
}


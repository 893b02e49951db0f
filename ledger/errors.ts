// Error classes for the ledger layer. Every failure the ledger can report has
// one class with a stable `code` (for logs, the HTTP API and tests) and an
// optional `cause`. Pure code throws only these (plus AssertionError for
// broken invariants, which must crash loudly).

export class PeergridError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = "PeergridError";
  }
}

/** Why a byte string was refused by a canonical decoder. */
export const DecodeReason = {
  truncated: "truncated",
  trailing: "trailing",
  oversized: "oversized",
  nonCanonical: "non_canonical",
  outOfRange: "out_of_range",
  unknownType: "unknown_type",
  unsupportedVersion: "unsupported_version",
  invalid: "invalid",
} as const;
export type DecodeReason = (typeof DecodeReason)[keyof typeof DecodeReason];

/** Malformed, oversized, truncated or trailing-byte input to any decoder. */
export class DecodeError extends PeergridError {
  readonly reason: DecodeReason;
  readonly offset: number;
  constructor(reason: DecodeReason, message: string, offset: number) {
    super(`PG_ERR_DECODE_${reason.toUpperCase()}`, `${message} (at byte ${offset})`);
    this.name = "DecodeError";
    this.reason = reason;
    this.offset = offset;
  }
}

/** A block that cannot be applied at all (bad link, root, signature, size). */
export class BlockRejectedError extends PeergridError {
  readonly height: number;
  constructor(code: string, height: number, message: string) {
    super(code, `block ${height}: ${message}`);
    this.name = "BlockRejectedError";
    this.height = height;
  }
}

/** A command used wrongly (an option's value, a missing choice): the CLI exits 2 with the message. */
export class UsageError extends PeergridError {
  constructor(message: string) {
    super("PG_ERR_USAGE", message);
    this.name = "UsageError";
  }
}

/** A genesis or configuration document that does not validate. */
export class ConfigError extends PeergridError {
  readonly problems: readonly string[];
  constructor(what: string, problems: readonly string[]) {
    super("PG_ERR_CONFIG", `${what} is invalid:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** The on-disk store cannot be used (corrupt, another chain, newer schema). */
export class StoreError extends PeergridError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "StoreError";
  }
}

export class AssertionError extends Error {
  constructor(message: string) {
    super(`assertion failed: ${message}`);
    this.name = "AssertionError";
  }
}

// Ed25519 keys for a box's shell, backed by node:crypto (OpenSSL): about ten
// times faster than a pure-JS verifier, and verification is the ledger's
// bottleneck. Pure cores never import this file; they receive a
// SignatureVerifier.
//
// Key file (JSON, mode 0600, refused when group or others can read it):
//   { "type": "peergrid-ed25519-key", "publicKey": "<64 hex>", "secretKey": "<64 hex seed>" }
import { type KeyObject, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from "node:crypto";
import { chmodSync, closeSync, fsyncSync, openSync, readFileSync, statSync, writeSync } from "node:fs";
import { assert } from "./assert.js";
import { PeergridError } from "./errors.js";
import { parseHex, toHex } from "./hash.js";
import type { SignatureVerifier, Signer } from "./tx.js";

const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
const KEY_FILE_TYPE = "peergrid-ed25519-key";

export class KeyFileError extends PeergridError {
  constructor(path: string, message: string) {
    super("PG_ERR_KEY_FILE", `${path}: ${message}`);
    this.name = "KeyFileError";
  }
}

export function publicKeyObject(publicKey: Uint8Array): KeyObject {
  assert(publicKey.length === 32, "Ed25519 public keys are 32 bytes");
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: "der", type: "spki" });
}

export class NodeSigner implements Signer {
  readonly publicKey: Uint8Array;
  private readonly key: KeyObject;

  constructor(readonly secretKey: Uint8Array) {
    assert(secretKey.length === 32, "Ed25519 seeds are 32 bytes");
    this.key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, secretKey]), format: "der", type: "pkcs8" });
    const spki = createPublicKey(this.key).export({ format: "der", type: "spki" });
    this.publicKey = new Uint8Array(spki.subarray(SPKI_ED25519_PREFIX.length));
  }

  static generate(): NodeSigner {
    const { privateKey } = generateKeyPairSync("ed25519");
    const pkcs8 = privateKey.export({ format: "der", type: "pkcs8" });
    return new NodeSigner(new Uint8Array(pkcs8.subarray(PKCS8_ED25519_PREFIX.length)));
  }

  sign(message: Uint8Array): Uint8Array {
    return new Uint8Array(sign(null, message, this.key));
  }
}

/** Verifier with a bounded cache of parsed public keys (parsing costs as much as a verify). */
export class NodeVerifier implements SignatureVerifier {
  private static readonly KEY_CACHE_MAX = 4096;
  private readonly keys = new Map<string, KeyObject>();
  count = 0;

  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
    if (signature.length !== 64 || publicKey.length !== 32) return false;
    const id = Buffer.from(publicKey.buffer, publicKey.byteOffset, 32).toString("latin1");
    let key = this.keys.get(id);
    if (key === undefined) {
      try {
        key = publicKeyObject(publicKey);
      } catch {
        return false; // not a point on the curve
      }
      if (this.keys.size >= NodeVerifier.KEY_CACHE_MAX) this.keys.clear();
      this.keys.set(id, key);
    }
    this.count++;
    return verify(null, message, key, signature);
  }
}

export function writeKeyFile(path: string, signer: NodeSigner): void {
  const text = JSON.stringify({ type: KEY_FILE_TYPE, publicKey: toHex(signer.publicKey), secretKey: toHex(signer.secretKey) }, null, 2) + "\n";
  // "wx": never overwrite an existing key; 0o600 from the first byte on.
  let fd: number;
  try {
    fd = openSync(path, "wx", 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new KeyFileError(path, code === "EEXIST" ? "already exists; refusing to overwrite a key" : `cannot create (${code})`);
  }
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(path, 0o600); // in case a umask widened nothing but a platform ignored the mode
}

export function readKeyFile(path: string): NodeSigner {
  let text: string;
  try {
    const mode = statSync(path).mode & 0o777;
    if ((mode & 0o077) !== 0) throw new KeyFileError(path, `permissions ${mode.toString(8)} let others read the secret key; run chmod 600 ${path}`);
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (err instanceof KeyFileError) throw err;
    throw new KeyFileError(path, `cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new KeyFileError(path, "is not JSON; expected a key file written by `peergrid keygen`");
  }
  const d = doc as Record<string, unknown>;
  if (typeof doc !== "object" || doc === null || d.type !== KEY_FILE_TYPE) throw new KeyFileError(path, `is not a ${KEY_FILE_TYPE} file`);
  const secret = typeof d.secretKey === "string" ? parseHex(d.secretKey, 32) : null;
  const pub = typeof d.publicKey === "string" ? parseHex(d.publicKey, 32) : null;
  if (secret === null || pub === null) throw new KeyFileError(path, "publicKey and secretKey must be 64 hex digits each");
  const signer = new NodeSigner(secret);
  if (toHex(signer.publicKey) !== toHex(pub)) throw new KeyFileError(path, "publicKey does not belong to secretKey: the file is damaged");
  return signer;
}

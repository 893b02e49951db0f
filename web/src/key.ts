// The neighbour's key: an Ed25519 key made once by this browser and kept in
// its localStorage (hex). Its public half is what an admin enrols; every
// order, cancel and vote placed from this page is signed with it, here, so
// the box never sees the secret. Losing the browser's storage loses the key:
// the page says so, and a new key is enrolled the same way.
import { ed25519 } from "@noble/curves/ed25519.js";
import { fromHex, toHex } from "../../ledger/hash.js";
import type { Signer } from "../../ledger/tx.js";

const STORAGE_KEY = "peergrid.secretKey.v1";
const SECRET_KEY_BYTES = 32;

/** The browser's signer; created (and stored) on first use. */
export function loadOrCreateSigner(storage: Storage): Signer & { readonly publicKeyHex: string; readonly created: boolean } {
  const stored = storage.getItem(STORAGE_KEY);
  let created = false;
  let secret: Uint8Array;
  if (stored !== null && /^[0-9a-f]{64}$/.test(stored)) {
    secret = fromHex(stored, SECRET_KEY_BYTES);
  } else {
    secret = ed25519.utils.randomSecretKey();
    storage.setItem(STORAGE_KEY, toHex(secret));
    created = true;
  }
  const publicKey = ed25519.getPublicKey(secret);
  return {
    publicKey,
    publicKeyHex: toHex(publicKey),
    created,
    sign: (message: Uint8Array) => ed25519.sign(message, secret),
  };
}

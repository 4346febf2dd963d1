// End-to-end encryption of message text with one AES-GCM key per channel.
//
// The server only ever sees `{v: 1, iv, ct}`. The key travels in the share link's fragment
// (#channel/key), which browsers never send to a server, and stays in the reader's localStorage.
// AES-GCM authenticates as well as encrypts: a wrong key or a changed byte fails to decrypt.
// Self-contained (browser and Node 20+), like api.js.

const subtle = globalThis.crypto.subtle;
const KEY_BYTES = 16; // AES-128
const IV_BYTES = 12; // 96 bits, the size GCM is designed for

/** The payload format version: lets a later client change the scheme without guessing. */
export const PAYLOAD_VERSION = 1;

function bytesToBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function base64ToBytes(text) {
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/** A fresh, extractable AES-GCM 128-bit key (extractable so it can go into the share link). */
export function newChannelKey() {
  return subtle.generateKey({ name: 'AES-GCM', length: KEY_BYTES * 8 }, true, ['encrypt', 'decrypt']);
}

/** The raw key as URL-safe base64 without padding (22 characters). */
export async function exportKeyB64url(key) {
  const raw = new Uint8Array(await subtle.exportKey('raw', key));
  return bytesToBase64(raw).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The reverse of exportKeyB64url. Throws on text that is not a 128-bit key. */
export async function importKeyB64url(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]+$/.test(text)) {
    throw new Error('the key is not base64url text');
  }
  const standard = text.replace(/-/g, '+').replace(/_/g, '/');
  const raw = base64ToBytes(standard + '='.repeat((4 - (standard.length % 4)) % 4));
  if (raw.length !== KEY_BYTES) throw new Error(`the key has ${raw.length} bytes, not ${KEY_BYTES}`);
  return subtle.importKey('raw', raw, { name: 'AES-GCM' }, true, ['encrypt', 'decrypt']);
}

/** Encrypts `{"text": text}` under a random IV (never reuse one with the same key) → payload. */
export async function encryptText(key, text) {
  const iv = globalThis.crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const plain = new TextEncoder().encode(JSON.stringify({ text }));
  const ct = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv }, key, plain));
  return { v: PAYLOAD_VERSION, iv: bytesToBase64(iv), ct: bytesToBase64(ct) };
}

/**
 * The text of a payload made by encryptText. Throws when the payload is not one (another client's
 * JSON), the key is wrong, or the bytes were changed: the caller shows it as undecryptable.
 */
export async function decryptPayload(key, payload) {
  if (!payload || payload.v !== PAYLOAD_VERSION || typeof payload.iv !== 'string' || typeof payload.ct !== 'string') {
    throw new Error('not an encrypted hatchat payload');
  }
  const iv = base64ToBytes(payload.iv);
  if (iv.length !== IV_BYTES) throw new Error('the IV is not 96 bits');
  const plain = await subtle.decrypt({ name: 'AES-GCM', iv }, key, base64ToBytes(payload.ct));
  const body = JSON.parse(new TextDecoder().decode(plain));
  if (typeof body?.text !== 'string') throw new Error('the decrypted payload has no text');
  return body.text;
}

// Tests for web/crypto.js: AES-GCM text encryption and the key format of share links.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PAYLOAD_VERSION, decryptPayload, encryptText, exportKeyB64url, importKeyB64url, newChannelKey,
} from '../crypto.js';

const STANDARD_BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const UNICODE = 'Grüße, 世界! 👋🏽 émoji\nnew line\t"quotes" \\ and RTL שלום';

test('encrypt/decrypt round-trips Unicode text', async () => {
  const key = await newChannelKey();
  const payload = await encryptText(key, UNICODE);
  assert.equal(await decryptPayload(key, payload), UNICODE);
  assert.equal(await decryptPayload(key, await encryptText(key, '')), '');
});

test('the payload is {v: 1, iv, ct} in standard base64 with a 96-bit IV and no plaintext', async () => {
  const key = await newChannelKey();
  const payload = await encryptText(key, 'secret words');
  assert.deepEqual(Object.keys(payload), ['v', 'iv', 'ct']);
  assert.equal(payload.v, PAYLOAD_VERSION);
  assert.equal(payload.v, 1);
  assert.match(payload.iv, STANDARD_BASE64);
  assert.match(payload.ct, STANDARD_BASE64);
  assert.equal(Buffer.from(payload.iv, 'base64').length, 12);
  assert.ok(!JSON.stringify(payload).includes('secret'));
  // JSON {"text":"secret words"} plus GCM's 16-byte tag.
  assert.equal(Buffer.from(payload.ct, 'base64').length, JSON.stringify({ text: 'secret words' }).length + 16);
});

test('two encryptions of the same text differ (random IV)', async () => {
  const key = await newChannelKey();
  const a = await encryptText(key, 'same');
  const b = await encryptText(key, 'same');
  assert.notEqual(a.iv, b.iv);
  assert.notEqual(a.ct, b.ct);
});

test('a different key fails to decrypt', async () => {
  const payload = await encryptText(await newChannelKey(), 'hello');
  await assert.rejects(decryptPayload(await newChannelKey(), payload));
});

test('a tampered ciphertext or IV fails to decrypt', async () => {
  const key = await newChannelKey();
  const payload = await encryptText(key, 'hello');
  const ct = Buffer.from(payload.ct, 'base64');
  ct[0] ^= 1;
  await assert.rejects(decryptPayload(key, { ...payload, ct: ct.toString('base64') }));
  const iv = Buffer.from(payload.iv, 'base64');
  iv[0] ^= 1;
  await assert.rejects(decryptPayload(key, { ...payload, iv: iv.toString('base64') }));
});

test('payloads that are not ours are refused, not crashed on', async () => {
  const key = await newChannelKey();
  for (const payload of [null, 'text', 42, { text: 'plain' }, { v: 2, iv: 'AAAA', ct: 'AAAA' },
    { v: 1, iv: 'AAAA', ct: 'AAAA' }, { v: 1, iv: 'not base64!', ct: 'AAAA' }]) {
    await assert.rejects(decryptPayload(key, payload), undefined, JSON.stringify(payload));
  }
});

test('base64url key export/import round-trips', async () => {
  const key = await newChannelKey();
  const text = await exportKeyB64url(key);
  assert.match(text, /^[A-Za-z0-9_-]{22}$/);
  const imported = await importKeyB64url(text);
  assert.equal(await exportKeyB64url(imported), text);
  assert.equal(await decryptPayload(imported, await encryptText(key, 'shared')), 'shared');
  assert.equal(await decryptPayload(key, await encryptText(imported, 'back')), 'back');
});

test('keys use a 128-bit AES-GCM key', async () => {
  const key = await newChannelKey();
  assert.equal(key.algorithm.name, 'AES-GCM');
  assert.equal(key.algorithm.length, 128);
});

test('importKeyB64url refuses what is not a 128-bit base64url key', async () => {
  for (const bad of ['', 'abc', 'a+b/c===', 'A'.repeat(43), 'has space', undefined]) {
    await assert.rejects(importKeyB64url(bad), undefined, String(bad));
  }
});

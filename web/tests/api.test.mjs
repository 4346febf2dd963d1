// Tests for web/api.js: token format and signature, PEM, identity storage, and every request
// against a tiny node:http server that records what it receives. Run: node --test web/tests/
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  ApiError, Hatchat, TOKEN_LIFETIME_MS, createIdentity, exportIdentity, importIdentity,
  importPublicKeyPem, makeToken, newChannelId, publicKeyToPem,
} from '../api.js';

const { subtle } = globalThis.crypto;
const STANDARD_BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const decodeJson = (part) => JSON.parse(Buffer.from(part, 'base64').toString('utf8'));
const verifyToken = (publicKey, token) => {
  const [header, claim, signature] = token.split('.');
  return subtle.verify('RSASSA-PKCS1-v1_5', publicKey, Buffer.from(signature, 'base64'),
    new TextEncoder().encode(`${header}.${claim}`));
};

let identity; // one key pair for the file: RSA generation is the slow part
before(async () => { identity = await createIdentity(); });

describe('identity', () => {
  test('has a uuid, a readable name and a public key in PEM', () => {
    assert.match(identity.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.match(identity.username, /^[a-z]+-[a-z]+-\d{1,2}$/);
  });

  test('the PEM has the SPKI armour and 64-character base64 lines', async () => {
    const pem = identity.publicKeyPem;
    assert.ok(pem.startsWith('-----BEGIN PUBLIC KEY-----\n'));
    assert.ok(pem.endsWith('\n-----END PUBLIC KEY-----'));
    const lines = pem.split('\n').slice(1, -1);
    assert.ok(lines.length > 1);
    lines.slice(0, -1).forEach((line) => assert.equal(line.length, 64));
    assert.ok(lines.at(-1).length > 0 && lines.at(-1).length <= 64);
    lines.forEach((line) => assert.match(line, STANDARD_BASE64));
    const spki = Buffer.from(lines.join(''), 'base64');
    assert.deepEqual(spki, Buffer.from(await subtle.exportKey('spki', identity.publicKey)));
    assert.equal(await publicKeyToPem(await importPublicKeyPem(pem)), pem);
  });

  test('export/import round-trips through JSON and still signs for the same public key', async () => {
    const saved = JSON.parse(JSON.stringify(await exportIdentity(identity)));
    assert.deepEqual(Object.keys(saved).sort(), ['id', 'privateKeyPkcs8', 'publicKeyPem', 'username']);
    const restored = await importIdentity(saved);
    assert.equal(restored.id, identity.id);
    assert.equal(restored.username, identity.username);
    assert.equal(restored.publicKeyPem, identity.publicKeyPem);
    assert.ok(await verifyToken(identity.publicKey, await makeToken(restored)));
  });

  test('channel ids are 16 random bytes in base64url', () => {
    const id = newChannelId();
    assert.match(id, /^[A-Za-z0-9_-]{22}$/);
    assert.notEqual(id, newChannelId());
  });
});

describe('makeToken', () => {
  const now = Date.parse('2030-01-02T03:04:05.678Z');

  test('has three standard base64 parts: header, claim, signature', async () => {
    const parts = (await makeToken(identity, now)).split('.');
    assert.equal(parts.length, 3);
    parts.forEach((part) => assert.match(part, STANDARD_BASE64));
  });

  test('the header and claim decode to the exact JSON the server expects', async () => {
    const [header, claim] = (await makeToken(identity, now)).split('.');
    assert.equal(Buffer.from(header, 'base64').toString('utf8'), '{"alg":"SHA-512","type":"JWT"}');
    const decoded = decodeJson(claim);
    assert.deepEqual(Object.keys(decoded), ['id', 'exp']);
    assert.equal(decoded.id, identity.id);
    assert.equal(decoded.exp, '2030-01-02T03:05:05.678Z');
    assert.equal(Date.parse(decoded.exp) - now, 60_000);
    assert.equal(TOKEN_LIFETIME_MS, 60_000);
  });

  test('defaults to now', async () => {
    const before = Date.now();
    const { exp } = decodeJson((await makeToken(identity)).split('.')[1]);
    const ahead = Date.parse(exp) - before;
    assert.ok(ahead >= 60_000 && ahead < 65_000, `exp is ${ahead} ms ahead`);
  });

  test('the signature verifies with the public key from the PEM', async () => {
    const token = await makeToken(identity, now);
    assert.equal(await verifyToken(await importPublicKeyPem(identity.publicKeyPem), token), true);
  });

  test('a tampered claim does not verify', async () => {
    const [header, , signature] = (await makeToken(identity, now)).split('.');
    const forged = Buffer.from(JSON.stringify({ id: identity.id, exp: '2099-01-01T00:00:00.000Z' })).toString('base64');
    assert.equal(await verifyToken(identity.publicKey, `${header}.${forged}.${signature}`), false);
  });

  test('another key does not verify', async () => {
    const other = await createIdentity();
    assert.equal(await verifyToken(other.publicKey, await makeToken(identity, now)), false);
  });
});

// ---------------------------------------------------------------------------------------------
// A recording server. Each request takes the next reply: {status, body} (JSON), {status, raw}
// (text), 'drop' (destroy the socket), 'cut' (die mid-body), 'hang' (never answer), or a
// function of the request.

function recordingServer() {
  const requests = [];
  const replies = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { text += chunk; });
    req.on('end', () => {
      const url = new URL(req.url, 'http://x');
      const record = {
        method: req.method,
        path: url.pathname,
        rawPath: req.url.split('?')[0],
        query: Object.fromEntries(url.searchParams),
        authorization: req.headers.authorization ?? null,
        contentType: req.headers['content-type'] ?? null,
        body: text ? JSON.parse(text) : null,
      };
      requests.push(record);
      let reply = replies.shift() ?? { status: 200, body: {} };
      if (typeof reply === 'function') reply = reply(record);
      if (reply === 'drop') return req.socket.destroy();
      if (reply === 'hang') return undefined;
      if (reply === 'cut') { // headers and half a body, then the connection dies
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100' });
        res.write('[{"seq":');
        return setTimeout(() => req.socket.destroy(), 20);
      }
      const payload = reply.raw ?? JSON.stringify(reply.body ?? null);
      res.writeHead(reply.status ?? 200, { 'Content-Type': reply.raw ? 'text/html' : 'application/json' });
      return res.end(payload);
    });
  });
  return {
    requests,
    replies,
    async start() {
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
      this.baseUrl = `http://127.0.0.1:${server.address().port}`;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
    reset() {
      requests.length = 0;
      replies.length = 0;
    },
  };
}

describe('Hatchat requests', () => {
  const server = recordingServer();
  let api;
  before(async () => {
    await server.start();
    api = new Hatchat({ baseUrl: server.baseUrl, identity });
  });
  after(() => server.stop());

  const last = () => server.requests.at(-1);
  const bearerClaim = (request) => {
    assert.match(request.authorization, /^Bearer [^.]+\.[^.]+\.[^.]+$/);
    return decodeJson(request.authorization.slice(7).split('.')[1]);
  };

  test('register posts the identity without a token', async () => {
    server.reset();
    server.replies.push({ status: 201, body: { id: identity.id, username: identity.username, publicKey: identity.publicKeyPem } });
    const user = await api.register();
    assert.equal(user.id, identity.id);
    assert.equal(last().method, 'POST');
    assert.equal(last().path, '/users');
    assert.equal(last().authorization, null);
    assert.equal(last().contentType, 'application/json');
    assert.deepEqual(last().body, { id: identity.id, publicKey: identity.publicKeyPem, username: identity.username });
  });

  test('getUser needs no token', async () => {
    server.reset();
    server.replies.push({ body: { id: 'u', username: 'x', publicKey: 'p' } });
    assert.equal((await api.getUser('abc')).username, 'x');
    assert.deepEqual([last().method, last().path, last().authorization], ['GET', '/users/abc', null]);
  });

  test('every signed request carries a fresh token that verifies', async () => {
    server.reset();
    await api.getChannel('c1');
    await api.getChannel('c1');
    const [first, second] = server.requests;
    assert.equal(bearerClaim(first).id, identity.id);
    assert.ok(await verifyToken(identity.publicKey, first.authorization.slice(7)));
    assert.ok(await verifyToken(identity.publicKey, second.authorization.slice(7)));
  });

  test('renameUser patches our own user and keeps the new name', async () => {
    server.reset();
    const renamed = new Hatchat({ baseUrl: server.baseUrl, identity: { ...identity } });
    server.replies.push({ body: { id: identity.id, username: 'new-name', publicKey: identity.publicKeyPem } });
    await renamed.renameUser('new-name');
    assert.deepEqual([last().method, last().path, last().body], ['PATCH', `/users/${identity.id}`, { username: 'new-name' }]);
    assert.equal(renamed.identity.username, 'new-name');
  });

  test('channel routes use the documented methods, paths and bodies', async () => {
    server.reset();
    await api.createChannel({ id: 'chan', inviteModel: 'self' });
    await api.getChannel('a/b c');
    await api.deleteChannel('chan');
    await api.invite('chan', 'someone');
    await api.join('chan');
    await api.leaveChannel('chan');
    const seen = server.requests.map(({ method, rawPath, body }) => [method, rawPath, body]);
    assert.deepEqual(seen, [
      ['POST', '/channels', { id: 'chan', inviteModel: 'self' }],
      ['GET', '/channels/a%2Fb%20c', null],
      ['DELETE', '/channels/chan', null],
      ['POST', '/channels/invite', { channelId: 'chan', userId: 'someone' }],
      ['POST', '/channels/invite', { channelId: 'chan', userId: identity.id }],
      ['POST', '/channels/chan/leave', null],
    ]);
    server.requests.forEach((request) => bearerClaim(request));
  });

  test('presence and typing routes use the documented methods, paths and bodies', async () => {
    server.reset();
    server.replies.push({ body: [{ userId: 'u', username: 'alice', since: '2030-01-01T00:00:00Z' }] });
    assert.deepEqual(await api.getPresence('a/b'), [{ userId: 'u', username: 'alice', since: '2030-01-01T00:00:00Z' }]);
    await api.sendTyping('chan');
    await api.setPresenceHidden(true);
    const seen = server.requests.map(({ method, rawPath, body }) => [method, rawPath, body]);
    assert.deepEqual(seen, [
      ['GET', '/channels/a%2Fb/presence', null],
      ['POST', '/channels/chan/typing', null],
      ['PUT', `/users/${identity.id}/presence`, { hidden: true }],
    ]);
    server.requests.forEach((request) => bearerClaim(request));
  });

  test('typing sent too soon is a retryable 429', async () => {
    server.reset();
    server.replies.push({ status: 429, body: { error: 'too_many_requests', message: 'typing at most once a second' } });
    const error = await api.sendTyping('chan').catch((e) => e);
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 429);
    assert.equal(error.retryable, true);
  });

  test('createChannel defaults to a random id and the self invite model', async () => {
    server.reset();
    await api.createChannel();
    assert.match(last().body.id, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(last().body.inviteModel, 'self');
  });

  test('sendMessage posts the payload as JSON', async () => {
    server.reset();
    server.replies.push({ body: { channelId: 'chan', seq: 7, createdAt: '2030-01-01T00:00:00Z', fromUserId: identity.id } });
    const sent = await api.sendMessage('chan', { v: 1, iv: 'aaa', ct: 'bbb' });
    assert.equal(sent.seq, 7);
    assert.deepEqual([last().method, last().path, last().contentType], ['POST', '/messages', 'application/json']);
    assert.deepEqual(last().body, { channelId: 'chan', payload: { v: 1, iv: 'aaa', ct: 'bbb' } });
  });

  test('pollMessages sends channelId, afterSeq, wait and limit', async () => {
    server.reset();
    const page = [{ seq: 4, createdAt: '2030-01-01T00:00:00Z', fromUserId: identity.id, username: 'me', payload: 1 }];
    server.replies.push({ body: page });
    assert.deepEqual(await api.pollMessages('chan', 3, { wait: 25, limit: 100 }), page);
    assert.deepEqual([last().method, last().path], ['GET', '/messages']);
    assert.deepEqual(last().query, { channelId: 'chan', afterSeq: '3', limit: '100', wait: '25' });
    assert.equal(bearerClaim(last()).id, identity.id);
  });

  test('getMessages passes time windows and leaves out what is not given', async () => {
    server.reset();
    server.replies.push({ body: [] });
    await api.getMessages('chan', { since: '2030-01-01T00:00:00Z', limit: 5 });
    assert.deepEqual(last().query, { channelId: 'chan', since: '2030-01-01T00:00:00Z', limit: '5' });
  });

  test('a JSON error becomes an ApiError with the status, code and message', async () => {
    server.reset();
    server.replies.push({ status: 403, body: { error: 'forbidden', message: 'you are not a member of channel "chan"' } });
    const error = await api.pollMessages('chan', 0).catch((e) => e);
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 403);
    assert.equal(error.code, 'forbidden');
    assert.equal(error.message, 'you are not a member of channel "chan"');
    assert.equal(error.retryable, false);
  });

  test('a non-JSON error page still becomes an ApiError, retryable when 5xx', async () => {
    server.reset();
    server.replies.push({ status: 502, raw: '<html>Bad Gateway</html>' });
    const error = await api.getChannel('chan').catch((e) => e);
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 502);
    assert.equal(error.code, 'http_502');
    assert.equal(error.retryable, true);
  });

  test('a dropped connection is an ApiError with status 0', async () => {
    server.reset();
    server.replies.push('drop');
    const error = await api.getChannel('chan').catch((e) => e);
    assert.ok(error instanceof ApiError);
    assert.deepEqual([error.status, error.code, error.retryable], [0, 'network', true]);
  });

  test('a connection that dies mid-body is a network error too', async () => {
    server.reset();
    server.replies.push('cut');
    const error = await api.pollMessages('chan', 0).catch((e) => e);
    assert.ok(error instanceof ApiError);
    assert.deepEqual([error.status, error.code, error.retryable], [0, 'network', true]);
  });

  test('a success that is not JSON is an ApiError, not a SyntaxError', async () => {
    server.reset();
    server.replies.push({ status: 200, raw: '<html>captive portal</html>' });
    const error = await api.getChannel('chan').catch((e) => e);
    assert.ok(error instanceof ApiError);
    assert.deepEqual([error.status, error.code], [200, 'bad_response']);
  });

  test('a request that gets no answer times out', async () => {
    server.reset();
    server.replies.push('hang');
    const error = await api.getMessages('chan', { timeoutMs: 100 }).catch((e) => e);
    assert.ok(error instanceof ApiError);
    assert.deepEqual([error.status, error.code], [0, 'timeout']);
  });

  test('aborting a poll rejects with the AbortError, not an ApiError', async () => {
    server.reset();
    server.replies.push('hang');
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const error = await api.pollMessages('chan', 0, { signal: controller.signal }).catch((e) => e);
    assert.equal(error.name, 'AbortError');
  });

  test('without an identity, signed routes fail before sending', async () => {
    server.reset();
    const anonymous = new Hatchat({ baseUrl: server.baseUrl });
    const error = await anonymous.getChannel('chan').catch((e) => e);
    assert.equal(error.status, 401);
    assert.equal(server.requests.length, 0);
  });
});

describe('Hatchat.follow', () => {
  const server = recordingServer();
  let api;
  before(async () => {
    await server.start();
    api = new Hatchat({ baseUrl: server.baseUrl, identity });
  });
  after(() => server.stop());

  const message = (seq) => ({ seq, createdAt: new Date(seq * 1000).toISOString(), fromUserId: identity.id, username: 'me', payload: { n: seq } });

  test('delivers each message once, in order, resuming from the last seq after failures', async () => {
    server.reset();
    const controller = new AbortController();
    server.replies.push(
      { status: 503, body: { error: 'unavailable', message: 'database restarting' } },
      'drop', // the gateway went away mid-request
      { body: [message(1), message(2)] }, // a full page (limit 2): asked again at once
      { body: [message(2), message(3)] }, // overlaps: 2 must not be delivered twice
      { body: [] }, // a long-poll timeout
      { body: [message(4)] },
    );
    const delivered = [];
    const statuses = [];
    const lastSeq = await api.follow('chan', {
      limit: 2, wait: 1, signal: controller.signal, minDelayMs: 10, maxDelayMs: 15,
      onMessage: async (m) => {
        await new Promise((resolve) => setTimeout(resolve, 1)); // renderers may be async
        delivered.push(m.seq);
        if (m.seq === 4) controller.abort();
      },
      onStatus: (status, detail) => statuses.push([status, detail?.delayMs, detail?.error?.status]),
    });
    assert.equal(lastSeq, 4);
    assert.deepEqual(delivered, [1, 2, 3, 4]);
    assert.deepEqual(server.requests.map((r) => r.query.afterSeq), ['0', '0', '0', '2', '3', '3']);
    server.requests.forEach((r) => assert.deepEqual([r.query.limit, r.query.channelId], ['2', 'chan']));
    // Catching up (at the start, after failures) does not wait; once connected, it long-polls.
    assert.deepEqual(server.requests.map((r) => r.query.wait), ['0', '0', '0', '1', '1', '1']);
    assert.deepEqual(statuses, [['reconnecting', 10, 503], ['reconnecting', 15, 0], ['connected', undefined, undefined]]);
  });

  test('starts after the given seq', async () => {
    server.reset();
    const controller = new AbortController();
    server.replies.push({ body: [message(11)] });
    const delivered = [];
    await api.follow('chan', { afterSeq: 10, signal: controller.signal, onMessage: (m) => { delivered.push(m.seq); controller.abort(); } });
    assert.equal(server.requests[0].query.afterSeq, '10');
    assert.deepEqual(delivered, [11]);
  });

  test('rejects with the ApiError that retrying cannot fix', async () => {
    server.reset();
    server.replies.push({ status: 404, body: { error: 'not_found', message: 'channel "chan" does not exist' } });
    const error = await api.follow('chan', { onMessage: () => {} }).catch((e) => e);
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 404);
  });

  test('resolves quietly when aborted during a long-poll or a backoff', async () => {
    server.reset();
    server.replies.push('hang');
    const duringPoll = new AbortController();
    setTimeout(() => duringPoll.abort(), 50);
    assert.equal(await api.follow('chan', { afterSeq: 5, signal: duringPoll.signal, onMessage: () => {} }), 5);

    server.reset();
    server.replies.push({ status: 503, body: { error: 'unavailable', message: 'x' } });
    const duringBackoff = new AbortController();
    const started = Date.now();
    const done = api.follow('chan', {
      afterSeq: 6, signal: duringBackoff.signal, onMessage: () => {}, minDelayMs: 60_000,
      onStatus: (status) => { if (status === 'reconnecting') duringBackoff.abort(); },
    });
    assert.equal(await done, 6);
    assert.ok(Date.now() - started < 5_000, 'the backoff sleep ends on abort');
  });
});

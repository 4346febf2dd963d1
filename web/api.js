// hatchat HTTP API client: identities, request signing, every route, and long-polling.
//
// Self-contained on purpose: copy this one file into your own app. It runs unchanged in browsers
// and in Node 20+, using only globalThis.crypto.subtle, globalThis.fetch, btoa/atob, TextEncoder.
//
//   const identity = await createIdentity();              // RSA key pair + uuid + random name
//   const api = new Hatchat({ identity });                // same origin; in Node add baseUrl
//   await api.register();                                 // POST /users
//   const channel = await api.createChannel();            // POST /channels
//   await api.sendMessage(channel.id, { hello: 'world' });
//   await api.follow(channel.id, { onMessage: (m) => console.log(m.seq, m.payload) });

const subtle = globalThis.crypto.subtle;

/** The sender of join/leave notices. Its messages are plain JSON, never encrypted. */
export const SYSTEM_USER_ID = '00000000-0000-0000-0000-000000000000';

/** How long a token lives. The server refuses tokens that live longer than it allows. */
export const TOKEN_LIFETIME_MS = 60_000;

const SIGNING_ALGORITHM = {
  name: 'RSASSA-PKCS1-v1_5',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]), // 65537
  hash: 'SHA-512',
};

// ---------------------------------------------------------------------------------------------
// base64: btoa/atob work on "binary strings"; these convert to and from bytes.

export function bytesToBase64(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let binary = '';
  // Chunked so that String.fromCharCode never gets more arguments than the engine allows.
  for (let i = 0; i < view.length; i += 0x8000) {
    binary += String.fromCharCode(...view.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function base64ToBytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** URL-safe base64 without padding: fits in a URL path or fragment without escaping. */
export function bytesToBase64url(bytes) {
  return bytesToBase64(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const utf8 = (text) => new TextEncoder().encode(text);

// ---------------------------------------------------------------------------------------------
// Identities: a user is a uuid, a username and an RSA key pair. The server keeps only the public
// key; every request is signed with the private one, so there is no password and no session.

const ADJECTIVES = ['brave', 'calm', 'clever', 'eager', 'gentle', 'happy', 'jolly', 'kind', 'lucky',
  'merry', 'nimble', 'proud', 'quick', 'quiet', 'sunny', 'swift', 'tidy', 'witty', 'bold', 'bright'];
const ANIMALS = ['otter', 'badger', 'falcon', 'heron', 'lynx', 'marten', 'owl', 'panda', 'puffin',
  'quokka', 'raven', 'seal', 'stoat', 'tapir', 'walrus', 'wombat', 'yak', 'zebra', 'fox', 'hare'];

function randomInt(below) {
  return globalThis.crypto.getRandomValues(new Uint32Array(1))[0] % below;
}

/** A readable random name such as "brave-otter-42". Not unique: retry on 409. */
export function randomUsername() {
  return `${ADJECTIVES[randomInt(ADJECTIVES.length)]}-${ANIMALS[randomInt(ANIMALS.length)]}-${randomInt(100)}`;
}

/** 16 random bytes, base64url: unguessable, and safe in a path and in a URL fragment. */
export function newChannelId() {
  return bytesToBase64url(globalThis.crypto.getRandomValues(new Uint8Array(16)));
}

/** The SPKI PEM the server expects: armour lines around base64 wrapped at 64 characters. */
export async function publicKeyToPem(publicKey) {
  const spki = bytesToBase64(await subtle.exportKey('spki', publicKey));
  const lines = spki.match(/.{1,64}/g);
  return `-----BEGIN PUBLIC KEY-----\n${lines.join('\n')}\n-----END PUBLIC KEY-----`;
}

/** The reverse of publicKeyToPem, e.g. to verify a token yourself. */
export async function importPublicKeyPem(pem) {
  const body = pem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, '').replace(/\s+/g, '');
  return subtle.importKey('spki', base64ToBytes(body), SIGNING_ALGORITHM, true, ['verify']);
}

/**
 * A new identity (not yet registered): `{id, username, privateKey, publicKey, publicKeyPem}`.
 * The keys are extractable so that exportIdentity can save them.
 */
export async function createIdentity({ username = randomUsername() } = {}) {
  const { privateKey, publicKey } = await subtle.generateKey(SIGNING_ALGORITHM, true, ['sign', 'verify']);
  return {
    id: globalThis.crypto.randomUUID(),
    username,
    privateKey,
    publicKey,
    publicKeyPem: await publicKeyToPem(publicKey),
  };
}

/** A JSON-safe copy of an identity (the private key as PKCS#8 base64), e.g. for localStorage. */
export async function exportIdentity(identity) {
  return {
    id: identity.id,
    username: identity.username,
    privateKeyPkcs8: bytesToBase64(await subtle.exportKey('pkcs8', identity.privateKey)),
    publicKeyPem: identity.publicKeyPem,
  };
}

/** The reverse of exportIdentity. */
export async function importIdentity(saved) {
  const privateKey = await subtle.importKey(
    'pkcs8', base64ToBytes(saved.privateKeyPkcs8), SIGNING_ALGORITHM, true, ['sign']);
  return {
    id: saved.id,
    username: saved.username,
    privateKey,
    publicKey: await importPublicKeyPem(saved.publicKeyPem),
    publicKeyPem: saved.publicKeyPem,
  };
}

// ---------------------------------------------------------------------------------------------
// Tokens: `base64(header).base64(claim).base64(signature)`, standard base64 of the JSON text.
// A fresh token per request keeps each one short-lived: a leaked token is useless a minute later.

/**
 * Signs a token for `identity` that expires TOKEN_LIFETIME_MS after `now` (ms since epoch).
 * The signature is RSASSA-PKCS1-v1_5/SHA-512 over the ASCII text `${header}.${claim}`.
 */
export async function makeToken(identity, now = Date.now()) {
  const header = bytesToBase64(utf8(JSON.stringify({ alg: 'SHA-512', type: 'JWT' })));
  const exp = new Date(now + TOKEN_LIFETIME_MS).toISOString();
  const claim = bytesToBase64(utf8(JSON.stringify({ id: identity.id, exp })));
  const signature = await subtle.sign(SIGNING_ALGORITHM, identity.privateKey, utf8(`${header}.${claim}`));
  return `${header}.${claim}.${bytesToBase64(signature)}`;
}

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * Any failed call. `status` is the HTTP status, or 0 when no answer came (network down, timeout);
 * `code` is the server's short error code (or 'network', 'timeout', 'http_<status>').
 */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }

  /** True when the same request may succeed later unchanged: no answer, overload, 5xx. */
  get retryable() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

function errorFromResponse(response, text) {
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === 'string') {
      return new ApiError(response.status, body.error, body.message || body.error);
    }
  } catch {
    // Not JSON: a proxy's HTML error page, say. Fall through to a generic error.
  }
  return new ApiError(response.status, `http_${response.status}`,
    `${response.status} ${response.statusText || 'error'}`.trim());
}

const isAbort = (error) => error?.name === 'AbortError';

/** Resolves after `ms`, or at once when `signal` aborts (the caller checks signal.aborted). */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Presence and typing as plain data: who is here (Map userId → username, from getPresence and the
// streams' `presence` events), who is typing (Map userId → {username, until}, from `typing`
// events) and a throttle for sending typing. Times are ms on this client's clock.

/** The longest a typing notice is shown without another one: the server's typing lasts 6 s. */
export const TYPING_SHOWN_MS = 6000;
/** While the user types, typing goes out at most this often (the server takes one a second). */
export const TYPING_SEND_EVERY_MS = 3000;

/** GET /channels/:id/presence's answer [{userId, username, since}] → Map userId → username. */
export function presentFrom(list) {
  return new Map((Array.isArray(list) ? list : []).map((p) => [p.userId, p.username]));
}

/** A stream's `presence` event ({kind: 'join' | 'leave', userId, username, at}) applied. */
export function applyPresence(here, event) {
  const next = new Map(here);
  if (event?.kind === 'join') next.set(event.userId, event.username);
  else if (event?.kind === 'leave') next.delete(event.userId);
  return next;
}

/**
 * A stream's `typing` event ({userId, username, at, until}) applied at `now`: shown for what the
 * server gives it (until - at, both the server's clock, so a skewed client clock does not matter;
 * until - now without `at`), never more than TYPING_SHOWN_MS. Map userId → {username, until}.
 */
export function applyTyping(typing, event, now) {
  const next = new Map(typing);
  const until = Date.parse(event?.until);
  const at = Date.parse(event?.at);
  const lasts = Math.min(until - (Number.isNaN(at) ? now : at), TYPING_SHOWN_MS);
  if (lasts > 0) next.set(event.userId, { username: event.username, until: now + lasts });
  else next.delete(event?.userId);
  return next;
}

/** Stops showing `userId` typing: their message arrived, or they left. */
export function stopTyping(typing, userId) {
  if (!typing.has(userId)) return typing;
  const next = new Map(typing);
  next.delete(userId);
  return next;
}

/** The names of those typing at `now`, leaving out `selfId`, sorted. */
export function typingNames(typing, now, selfId) {
  return [...typing]
    .filter(([userId, { until }]) => userId !== selfId && until > now)
    .map(([, { username }]) => username)
    .sort();
}

/** "alice is typing…", "alice and bob are typing…", "alice, bob and 2 others are typing…", or ''. */
export function typingText(names) {
  if (names.length === 0) return '';
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  const others = names.length - 2;
  return `${names[0]}, ${names[1]} and ${others} other${others === 1 ? '' : 's'} are typing…`;
}

/** When the typing line next changes by itself (the soonest end after `now`), or null. */
export function nextTypingEnd(typing, now) {
  const ends = [...typing.values()].map(({ until }) => until).filter((until) => until > now);
  return ends.length ? Math.min(...ends) : null;
}

/**
 * A throttle for sending typing: `ready(now)` says yes at most once every `everyMs` (and counts
 * the yes as a send); `reset()` after a message went out, so the next keystroke tells again.
 */
export function throttle(everyMs) {
  let last = -Infinity;
  return {
    ready(now) {
      if (now - last < everyMs) return false;
      last = now;
      return true;
    },
    reset() { last = -Infinity; },
  };
}

// ---------------------------------------------------------------------------------------------
// The client

/**
 * What follow() and followLive() share: the status they report (each change once, every retry)
 * and the wait between retries, doubling from minDelayMs to maxDelayMs. `retry(error)` rethrows
 * what retrying cannot fix.
 */
function reconnection({ onStatus, minDelayMs, maxDelayMs, signal }) {
  let delay = minDelayMs;
  let status = null;
  const report = (next, detail) => {
    if (next !== status || next === 'reconnecting') onStatus(next, detail);
    status = next;
  };
  return {
    get connected() { return status === 'connected'; },
    /** A call went through: the next failure waits minDelayMs again. */
    passed() { delay = minDelayMs; },
    connect() { delay = minDelayMs; report('connected'); },
    async retry(error) {
      if (!(error instanceof ApiError) || !error.retryable) throw error;
      report('reconnecting', { error, delayMs: delay });
      await sleep(delay, signal);
      delay = Math.min(delay * 2, maxDelayMs);
    },
  };
}

export class Hatchat {
  /**
   * @param {object} options
   * @param {string} [options.baseUrl] where the gateway is, e.g. 'http://localhost:8080';
   *   '' means the page's own origin (in a browser; Node's fetch needs an absolute URL).
   * @param {object} [options.identity] from createIdentity/importIdentity; needed by signed routes.
   * @param {Function} [options.fetch] defaults to globalThis.fetch.
   */
  constructor({ baseUrl = '', identity = null, fetch = globalThis.fetch.bind(globalThis) } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.identity = identity;
    this.fetch = fetch;
  }

  /**
   * One HTTP call. Resolves to the parsed JSON body (null when empty); rejects with ApiError, or
   * with the AbortError of `signal`. `timeoutMs` bounds a call whose connection silently died.
   */
  async request(method, path, { query, body, auth = true, signal, timeoutMs } = {}) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) params.set(name, String(value));
    }
    const search = params.toString();
    const url = `${this.baseUrl}${path}${search ? `?${search}` : ''}`;
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth) {
      if (!this.identity) throw new ApiError(401, 'no_identity', 'no identity to sign the request with');
      headers.Authorization = `Bearer ${await makeToken(this.identity)}`;
    }
    // Our own controller, so a timeout can abort the fetch without aborting the caller's signal.
    const controller = new AbortController();
    const forward = () => controller.abort(signal.reason);
    if (signal?.aborted) forward();
    signal?.addEventListener('abort', forward, { once: true });
    const timer = timeoutMs ? setTimeout(() => controller.abort(), timeoutMs) : null;
    const init = { method, headers, signal: controller.signal };
    if (body !== undefined) init.body = JSON.stringify(body);
    let response;
    let text;
    try {
      response = await this.fetch(url, init);
      text = await response.text(); // inside the try: a connection can also die mid-body
    } catch (error) {
      if (signal?.aborted) throw error;
      if (isAbort(error)) throw new ApiError(0, 'timeout', 'the server did not answer in time');
      throw new ApiError(0, 'network', 'the server could not be reached');
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', forward);
    }
    if (!response.ok) throw errorFromResponse(response, text);
    try {
      return text ? JSON.parse(text) : null;
    } catch {
      throw new ApiError(response.status, 'bad_response', 'the server answered with something other than JSON');
    }
  }

  // --- users ------------------------------------------------------------------------------

  /** POST /users (no token): registers this.identity. 409 when the username is taken. */
  register() {
    const { id, username, publicKeyPem } = this.identity;
    return this.request('POST', '/users', { auth: false, body: { id, publicKey: publicKeyPem, username } });
  }

  /** GET /users/:id (no token) → {id, username, publicKey}. */
  getUser(id) {
    return this.request('GET', `/users/${encodeURIComponent(id)}`, { auth: false });
  }

  /** PATCH /users/:id for yourself. 409 when the name is taken. */
  async renameUser(username) {
    const user = await this.request('PATCH', `/users/${encodeURIComponent(this.identity.id)}`, { body: { username } });
    this.identity.username = user.username;
    return user;
  }

  // --- channels ---------------------------------------------------------------------------

  /** POST /channels → {id, ownerId, inviteModel, createdAt}. inviteModel: 'owner' | 'member' | 'self'. */
  createChannel({ id = newChannelId(), inviteModel = 'self' } = {}) {
    return this.request('POST', '/channels', { body: { id, inviteModel } });
  }

  /** GET /channels/:id (members only) → {id, ownerId, inviteModel, createdAt, members: [{id, username}]}. */
  getChannel(id) {
    return this.request('GET', `/channels/${encodeURIComponent(id)}`);
  }

  /** DELETE /channels/:id (owner only). */
  deleteChannel(id) {
    return this.request('DELETE', `/channels/${encodeURIComponent(id)}`);
  }

  /** POST /channels/invite → {channelId, userId, joined}; joined is false if already a member. */
  invite(channelId, userId) {
    return this.request('POST', '/channels/invite', { body: { channelId, userId } });
  }

  /** Adds yourself: allowed by inviteModel 'self', and a no-op for members. */
  join(channelId) {
    return this.invite(channelId, this.identity.id);
  }

  /** POST /channels/:id/leave. The owner cannot leave (403): they delete instead. */
  leaveChannel(id) {
    return this.request('POST', `/channels/${encodeURIComponent(id)}/leave`);
  }

  // --- presence and typing ----------------------------------------------------------------

  /** GET /channels/:id/presence (members only) → [{userId, username, since}]: who has a live stream. */
  getPresence(channelId) {
    return this.request('GET', `/channels/${encodeURIComponent(channelId)}/presence`);
  }

  /**
   * POST /channels/:id/typing → {channelId, userId, until}: the others see you typing until
   * `until` (6 s). At most once a second per channel: more is 429.
   */
  sendTyping(channelId) {
    return this.request('POST', `/channels/${encodeURIComponent(channelId)}/typing`);
  }

  /** PUT /users/:id/presence for yourself → {userId, presenceHidden}: hide from others' presence. */
  setPresenceHidden(hidden) {
    return this.request('PUT', `/users/${encodeURIComponent(this.identity.id)}/presence`, { body: { hidden } });
  }

  // --- messages ---------------------------------------------------------------------------

  /**
   * POST /messages → {channelId, seq, createdAt, fromUserId}. payload: any JSON value. A retry
   * with the same clientId (1..64 chars) stores nothing and answers the first send's answer.
   */
  sendMessage(channelId, payload, { clientId } = {}) {
    return this.request('POST', '/messages', { body: { channelId, payload, clientId } });
  }

  // --- read positions, edits, deletes, reactions -------------------------------------------

  /** GET /channels → [channel with lastSeq, readSeq, unread]: the caller's channels. */
  listChannels() {
    return this.request('GET', '/channels');
  }

  /** POST /channels/:id/read → {channelId, lastSeq, readSeq, unread}; never moves backwards. */
  markRead(channelId, seq) {
    return this.request('POST', `/channels/${encodeURIComponent(channelId)}/read`, { body: { seq } });
  }

  /** PATCH /channels/:id/messages/:seq: the author's new payload, as an `edit` event. */
  editMessage(channelId, seq, payload) {
    return this.request('PATCH', `/channels/${encodeURIComponent(channelId)}/messages/${seq}`, { body: { payload } });
  }

  /** DELETE /channels/:id/messages/:seq: a `delete` event; the payload is erased on the server. */
  deleteMessage(channelId, seq) {
    return this.request('DELETE', `/channels/${encodeURIComponent(channelId)}/messages/${seq}`);
  }

  /** POST/DELETE /channels/:id/messages/:seq/reactions: one of each reaction per user. */
  react(channelId, seq, reaction, { remove = false } = {}) {
    const path = `/channels/${encodeURIComponent(channelId)}/messages/${seq}/reactions`;
    return remove
      ? this.request('DELETE', `${path}/${encodeURIComponent(reaction)}`)
      : this.request('POST', path, { body: { reaction } });
  }

  /**
   * GET /messages → [{seq, createdAt, fromUserId, username, payload}] in ascending seq.
   * With `wait` (seconds, server max 30) the server holds the request until a message matches.
   */
  getMessages(channelId, { afterSeq, since, until, limit, wait, signal, timeoutMs } = {}) {
    return this.request('GET', '/messages', {
      query: { channelId, afterSeq, since, until, limit, wait }, signal, timeoutMs,
    });
  }

  /**
   * One long-poll: messages with seq > afterSeq, or [] after `wait` seconds without any.
   * The client-side timeout (wait + 15 s) catches a connection that died without closing,
   * which long requests on phones and behind NATs do.
   */
  pollMessages(channelId, afterSeq, { wait = 25, limit = 100, signal } = {}) {
    return this.getMessages(channelId, { afterSeq, limit, wait, signal, timeoutMs: (wait + 15) * 1000 });
  }

  /**
   * Follows a channel until `signal` aborts: calls `onMessage(message)` (awaited) exactly once
   * per message, in seq order, starting after `afterSeq`. The first call (and the first after a
   * failure) catches up without waiting; later ones long-poll. Retries what may pass later (network,
   * 5xx) with backoff doubling from minDelayMs to maxDelayMs, resuming from the last seq seen,
   * so a gateway restart loses nothing. `onStatus('connected' | 'reconnecting', detail)` reports
   * changes. Resolves with the last seq seen once aborted; rejects with the ApiError that retrying
   * cannot fix (401 identity, 403 not a member, 404 channel deleted).
   */
  async follow(channelId, {
    afterSeq = 0, limit = 100, wait = 25, signal, onMessage, onStatus = () => {},
    minDelayMs = 500, maxDelayMs = 10_000,
  } = {}) {
    let lastSeq = afterSeq;
    const connection = reconnection({ onStatus, minDelayMs, maxDelayMs, signal });
    while (!signal?.aborted) {
      let page;
      try {
        // Until a call has succeeded (at the start, after a failure) ask without waiting: an
        // empty channel would otherwise hold the first answer, and so 'connected', for `wait` s.
        const waitNow = connection.connected ? wait : 0;
        page = await this.pollMessages(channelId, lastSeq, { wait: waitNow, limit, signal });
      } catch (error) {
        if (signal?.aborted) break;
        await connection.retry(error);
        continue;
      }
      connection.connect();
      for (const message of page) {
        // The server never repeats or skips a seq, but a retried request may overlap one whose
        // answer arrived late: the check makes delivery exactly-once whatever happens.
        if (message.seq <= lastSeq) continue;
        if (signal?.aborted) break;
        await onMessage(message);
        lastSeq = message.seq;
      }
      // Ask again at once: after a full page more are waiting, otherwise the next call long-polls.
    }
    return lastSeq;
  }

  /**
   * follow() over a live stream: the same contract (each message once, in seq order, from
   * `afterSeq`; the same statuses; resolves with the last seq once aborted; rejects with what
   * retrying cannot fix), through GET /channels/:id/events where the runtime has EventSource, and
   * through follow()'s long-polls where it has not. EventSource cannot set headers, so the token
   * travels in the URL; each stream opens with a fresh token and ends when it expires
   * (`closed`: "token expired"), and the next one resumes after the last seq delivered. When a
   * stream fails or says the reader may read no more, one long-poll asks what is wrong: it
   * delivers what is there, or rejects with the real error (403 not a member, 404 deleted).
   *
   * Streams also carry presence and typing, best effort and without a position: `onPresence(
   * {kind: 'join' | 'leave', userId, username, at})` and `onTyping({kind, userId, username, at,
   * until})`, in stream order with the messages. `onOpen()` is called whenever a stream opens: a
   * reader of presence asks GET /channels/:id/presence then, for what it missed in between.
   * Long-polls carry neither.
   */
  async followLive(channelId, options = {}) {
    const EventSourceImpl = options.EventSource ?? globalThis.EventSource;
    if (!EventSourceImpl) return this.follow(channelId, options);
    const {
      signal, onMessage, onStatus = () => {}, onPresence, onTyping, onOpen, minDelayMs = 500, maxDelayMs = 10_000,
    } = options;
    let lastSeq = options.afterSeq ?? 0;
    const connection = reconnection({ onStatus, minDelayMs, maxDelayMs, signal });
    // Streams that failed before opening while plain requests passed: something on the way (a
    // proxy, an extension) refuses streams, and long-polls are the way left.
    let refused = 0;
    const deliver = async (message) => {
      // A stream resumed after a failure may repeat what the last one sent: exactly once anyway.
      if (message.seq <= lastSeq || signal?.aborted) return;
      await onMessage(message);
      lastSeq = message.seq;
    };
    while (!signal?.aborted) {
      let opened = false;
      const reason = await this.streamOnce(EventSourceImpl, channelId, lastSeq, {
        signal,
        deliver,
        skipTo: (seq) => { lastSeq = Math.max(lastSeq, seq); },
        opened: () => { opened = true; refused = 0; connection.connect(); onOpen?.(); },
        onPresence,
        onTyping,
      });
      if (signal?.aborted) break;
      // A fresh token, a gateway restarting, a slow tab: open the next stream at once.
      if (['token expired', 'gateway shutting down', 'slow consumer'].includes(reason)) continue;
      // Anything else: one long-poll without waiting tells a passing failure from a final one.
      try {
        const page = await this.pollMessages(channelId, lastSeq, { wait: 0, limit: 100, signal });
        for (const message of page) await deliver(message);
        connection.passed();
        if (!opened && ++refused >= 2) return this.follow(channelId, { ...options, afterSeq: lastSeq });
      } catch (error) {
        if (signal?.aborted) break;
        await connection.retry(error);
      }
    }
    return lastSeq;
  }

  /**
   * One SSE stream of a channel from `afterSeq`, until it closes: resolves with the `closed`
   * event's reason, 'error' when the connection failed, or 'aborted'. Messages are delivered one
   * at a time, in order (each `deliver` is awaited before the next).
   */
  async streamOnce(EventSourceImpl, channelId, afterSeq, {
    signal, deliver, skipTo, opened, onPresence, onTyping,
  }) {
    if (!this.identity) throw new ApiError(401, 'no_identity', 'no identity to sign the request with');
    const params = new URLSearchParams({
      afterSeq: String(afterSeq), presence: String(Boolean(onPresence || onTyping)),
      token: `Bearer ${await makeToken(this.identity)}`,
    });
    const url = `${this.baseUrl}/channels/${encodeURIComponent(channelId)}/events?${params}`;
    return new Promise((resolve) => {
      const source = new EventSourceImpl(url);
      let queue = Promise.resolve();
      let finished = false;
      const then = (step) => { queue = queue.then(step).catch(() => finish('error')); };
      const finish = (reason) => {
        if (finished) return;
        finished = true;
        source.close();
        signal?.removeEventListener('abort', aborted);
        queue.then(() => resolve(reason), () => resolve(reason));
      };
      const aborted = () => finish('aborted');
      signal?.addEventListener('abort', aborted, { once: true });
      source.addEventListener('open', () => then(opened));
      source.addEventListener('message', (event) => then(() => deliver(JSON.parse(event.data))));
      // History was capped: what is older than oldestSeq is gone, continue from there.
      source.addEventListener('reset', (event) => then(() => skipTo(JSON.parse(event.data).oldestSeq - 1)));
      source.addEventListener('closed', (event) => finish(JSON.parse(event.data).reason));
      // Presence and typing are niceties: a bad one, or a listener that throws, never ends the stream.
      const tell = (listener) => (event) => then(() => {
        try {
          listener?.(JSON.parse(event.data));
        } catch {
          // ignored on purpose
        }
      });
      source.addEventListener('presence', tell(onPresence));
      source.addEventListener('typing', tell(onTyping));
      // EventSource would reconnect by itself, with the same (soon expired) token: we do it.
      source.addEventListener('error', () => finish('error'));
    });
  }
}

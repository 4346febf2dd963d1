// Hatchat.followLive over a scripted EventSource: exactly once and in order across streams that
// end (token expiry) and resets (capped history), the real error when the reader may read no
// more, and long-polls when there is no EventSource or streams are refused on the way.
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError, Hatchat, createIdentity } from '../api.js';

let identity;
before(async () => { identity = await createIdentity(); });

const message = (seq) => ({ seq, createdAt: new Date(seq * 1000).toISOString(), fromUserId: 'u', username: 'me', payload: { n: seq } });

/** An EventSource whose every connection plays the next script: [type, data] events, in order. */
function scriptedEventSource(scripts) {
  const urls = [];
  class FakeEventSource {
    constructor(url) {
      urls.push(new URL(url));
      this.listeners = {};
      this.closed = false;
      const script = scripts.shift() ?? [];
      (async () => {
        for (const [type, data] of script) {
          await new Promise((r) => setTimeout(r, 1));
          if (this.closed) return;
          for (const listener of this.listeners[type] ?? []) listener({ data: JSON.stringify(data) });
        }
      })();
    }
    addEventListener(type, listener) { (this.listeners[type] ??= []).push(listener); }
    close() { this.closed = true; }
  }
  return { FakeEventSource, urls };
}

/** A fetch answering each call with the next reply ({status, body}). */
function scriptedFetch(replies) {
  const calls = [];
  const fetch = async (url) => {
    calls.push(new URL(url));
    const { status = 200, body } = replies.shift() ?? { body: [] };
    return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
  };
  return { fetch, calls };
}

describe('Hatchat.followLive', () => {
  test('resumes after the last seq when a stream ends, and skips what a reset says is gone', async () => {
    const { FakeEventSource, urls } = scriptedEventSource([
      [['open'], ['message', message(1)], ['message', message(2)], ['closed', { reason: 'token expired', lastSeq: 2 }]],
      [['open'], ['message', message(2)], ['reset', { oldestSeq: 10 }], ['message', message(10)], ['message', message(11)]],
    ]);
    const api = new Hatchat({ baseUrl: 'http://gateway.test', identity, fetch: scriptedFetch([]).fetch });
    const controller = new AbortController();
    const delivered = [];
    const statuses = [];
    const lastSeq = await api.followLive('chan', {
      EventSource: FakeEventSource, signal: controller.signal,
      onStatus: (status) => statuses.push(status),
      onMessage: (m) => { delivered.push(m.seq); if (m.seq === 11) controller.abort(); },
    });
    assert.deepEqual(delivered, [1, 2, 10, 11]);
    assert.equal(lastSeq, 11);
    assert.deepEqual(urls.map((u) => u.searchParams.get('afterSeq')), ['0', '2']);
    assert.match(urls[1].searchParams.get('token'), /^Bearer .+\..+\..+$/, 'a fresh signed token in the URL');
    assert.equal(urls[0].pathname, '/channels/chan/events');
    assert.deepEqual(statuses, ['connected']);
  });

  test('passes presence and typing on in stream order, and says when each stream opens', async () => {
    const join = { kind: 'join', userId: 'a', username: 'alice', at: '2030-01-01T00:00:00Z' };
    const typing = { kind: 'typing', userId: 'a', username: 'alice', at: '2030-01-01T00:00:01Z', until: '2030-01-01T00:00:07Z' };
    const { FakeEventSource } = scriptedEventSource([
      [['open'], ['presence', join], ['message', message(1)], ['typing', typing], ['closed', { reason: 'token expired', lastSeq: 1 }]],
      [['open'], ['presence', { ...join, kind: 'leave' }], ['message', message(2)]],
    ]);
    const api = new Hatchat({ baseUrl: 'http://gateway.test', identity, fetch: scriptedFetch([]).fetch });
    const controller = new AbortController();
    const seen = [];
    await api.followLive('chan', {
      EventSource: FakeEventSource, signal: controller.signal,
      onOpen: () => seen.push('open'),
      onPresence: (event) => { seen.push(event.kind); throw new Error('a listener that throws ends nothing'); },
      onTyping: (event) => seen.push(`${event.kind} until ${event.until}`),
      onMessage: (m) => { seen.push(m.seq); if (m.seq === 2) controller.abort(); },
    });
    assert.deepEqual(seen, ['open', 'join', 1, 'typing until 2030-01-01T00:00:07Z', 'open', 'leave', 2]);
  });

  test('rejects with the real error once the reader may read no more', async () => {
    const { FakeEventSource } = scriptedEventSource([[['open'], ['closed', { reason: 'not a member', lastSeq: 0 }]]]);
    const { fetch } = scriptedFetch([{ status: 403, body: { error: 'forbidden', message: 'members only' } }]);
    const api = new Hatchat({ baseUrl: 'http://gateway.test', identity, fetch });
    const error = await api.followLive('chan', { EventSource: FakeEventSource, onMessage: () => {} }).catch((e) => e);
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 403);
  });

  test('falls back to long-polls when streams are refused on the way', async () => {
    const { FakeEventSource, urls } = scriptedEventSource([[['error']], [['error']]]);
    const { fetch, calls } = scriptedFetch([{ body: [message(1)] }, { body: [] }, { body: [message(2)] }]);
    const api = new Hatchat({ baseUrl: 'http://gateway.test', identity, fetch });
    const controller = new AbortController();
    const delivered = [];
    await api.followLive('chan', {
      EventSource: FakeEventSource, signal: controller.signal,
      onMessage: (m) => { delivered.push(m.seq); if (m.seq === 2) controller.abort(); },
    });
    assert.deepEqual(delivered, [1, 2]);
    assert.equal(urls.length, 2, 'no third stream');
    assert.equal(calls.at(-1).pathname, '/messages');
    assert.equal(calls.at(-1).searchParams.get('afterSeq'), '1');
  });
});

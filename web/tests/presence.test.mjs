// The presence helpers of web/api.js: who is here, who types and for how long, the throttle.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  TYPING_SEND_EVERY_MS, TYPING_SHOWN_MS, applyPresence, applyTyping, nextTypingEnd, presentFrom, stopTyping,
  throttle, typingNames, typingText,
} from '../api.js';

const iso = (ms) => new Date(ms).toISOString();

describe('presence', () => {
  test('the list, then joins and leaves; the old map is left alone', () => {
    const listed = presentFrom([{ userId: 'a', username: 'alice', since: iso(0) }]);
    const joined = applyPresence(listed, { kind: 'join', userId: 'b', username: 'bob', at: iso(1) });
    assert.deepEqual([...joined], [['a', 'alice'], ['b', 'bob']]);
    const left = applyPresence(joined, { kind: 'leave', userId: 'a', username: 'alice', at: iso(2) });
    assert.deepEqual([...left], [['b', 'bob']]);
    assert.deepEqual([...listed], [['a', 'alice']]);
    assert.deepEqual([...applyPresence(left, { kind: 'leave', userId: 'x' })], [['b', 'bob']], 'an unknown leave');
    assert.deepEqual([...applyPresence(left, { kind: 'other', userId: 'x' })], [['b', 'bob']]);
  });

  test('events missed while the list was asked for, replayed on it, end in the same state', () => {
    const missed = [
      { kind: 'join', userId: 'c', username: 'carol' },
      { kind: 'leave', userId: 'a', username: 'alice' },
    ];
    const here = missed.reduce(applyPresence, presentFrom([{ userId: 'a', username: 'alice' }, { userId: 'c', username: 'carol' }]));
    assert.deepEqual([...here], [['c', 'carol']]);
  });

  test('an answer that is not a list is nobody', () => {
    assert.equal(presentFrom(null).size, 0);
    assert.equal(presentFrom({ error: 'not_found' }).size, 0);
  });
});

describe('typing', () => {
  const now = 1_000_000;
  const event = (userId, username, atMs, untilMs) => ({ kind: 'typing', userId, username, at: iso(atMs), until: iso(untilMs) });

  test('shown for until - at on the client clock, whatever the server clock says', () => {
    // The server's clock is an hour ahead: still shown for the 6 s the server gave, from now.
    const ahead = now + 3_600_000;
    const typing = applyTyping(new Map(), event('a', 'alice', ahead, ahead + 6000), now);
    assert.deepEqual(typing.get('a'), { username: 'alice', until: now + 6000 });
    assert.deepEqual(typingNames(typing, now + 5999, 'me'), ['alice']);
    assert.deepEqual(typingNames(typing, now + 6000, 'me'), []);
  });

  test('never longer than TYPING_SHOWN_MS; without `at`, until - now', () => {
    const long = applyTyping(new Map(), event('a', 'alice', now, now + 60_000), now);
    assert.equal(long.get('a').until, now + TYPING_SHOWN_MS);
    const noAt = applyTyping(new Map(), { userId: 'a', username: 'alice', until: iso(now + 2000) }, now);
    assert.equal(noAt.get('a').until, now + 2000);
    const over = applyTyping(noAt, { userId: 'a', username: 'alice', until: iso(now - 1) }, now);
    assert.equal(over.has('a'), false, 'an ended one removes it');
  });

  test('sent again: shown longer; a message or a leave stops it', () => {
    let typing = applyTyping(new Map(), event('a', 'alice', now, now + 6000), now);
    typing = applyTyping(typing, event('a', 'alice', now + 3000, now + 9000), now + 3000);
    assert.equal(typing.get('a').until, now + 9000);
    const stopped = stopTyping(typing, 'a');
    assert.equal(stopped.has('a'), false);
    assert.equal(typing.has('a'), true, 'the old map is left alone');
    assert.equal(stopTyping(stopped, 'b'), stopped, 'nothing to stop: the same map');
  });

  test('oneself is never shown; names sorted; the soonest end', () => {
    let typing = new Map();
    typing = applyTyping(typing, event('me', 'me', now, now + 6000), now);
    typing = applyTyping(typing, event('b', 'bob', now, now + 4000), now);
    typing = applyTyping(typing, event('a', 'alice', now, now + 6000), now);
    assert.deepEqual(typingNames(typing, now, 'me'), ['alice', 'bob']);
    assert.equal(nextTypingEnd(typing, now), now + 4000);
    assert.equal(nextTypingEnd(typing, now + 4000), now + 6000);
    assert.equal(nextTypingEnd(typing, now + 6000), null);
  });

  test('the line', () => {
    assert.equal(typingText([]), '');
    assert.equal(typingText(['alice']), 'alice is typing…');
    assert.equal(typingText(['alice', 'bob']), 'alice and bob are typing…');
    assert.equal(typingText(['alice', 'bob', 'carol']), 'alice, bob and 1 other are typing…');
    assert.equal(typingText(['alice', 'bob', 'carol', 'dave']), 'alice, bob and 2 others are typing…');
  });
});

describe('throttle', () => {
  test('yes at most once every interval while typing; reset after a send', () => {
    const t = throttle(TYPING_SEND_EVERY_MS);
    const yes = [0, 100, 2999, 3000, 3500, 6000, 6001].filter((ms) => t.ready(ms));
    assert.deepEqual(yes, [0, 3000, 6000]);
    t.reset();
    assert.equal(t.ready(6002), true);
    assert.equal(t.ready(6003), false);
  });
});

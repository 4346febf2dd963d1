// hatchat reference client: the page. All HTTP goes through api.js, all encryption through
// crypto.js; this file is state, rendering and events.
//
// Routing is the URL fragment: '' is the start screen, '#<channelId>/<key>' a channel. The key
// never leaves the browser: fragments are not sent to servers.

import {
  ApiError, Hatchat, SYSTEM_USER_ID, TYPING_SEND_EVERY_MS, applyPresence, applyTyping, createIdentity, exportIdentity,
  importIdentity, nextTypingEnd, presentFrom, randomUsername, stopTyping, throttle, typingNames, typingText,
} from './api.js';
import { decryptPayload, encryptText, exportKeyB64url, importKeyB64url, newChannelKey } from './crypto.js';

const IDENTITY_STORE = 'hatchat.identity';
const CHANNELS_STORE = 'hatchat.channels'; // {[channelId]: {key, owner, openedAt}}
const REGISTER_ATTEMPTS = 5;

const $ = (id) => document.getElementById(id);
const ui = {
  username: $('username'), renameOpen: $('rename-open'), renameForm: $('rename-form'),
  renameInput: $('rename-input'), renameCancel: $('rename-cancel'), meName: $('me-name'),
  error: $('error'),
  loadingView: $('loading-view'), startView: $('start-view'), channelView: $('channel-view'),
  startChannel: $('start-channel'), recentBlock: $('recent-block'), recent: $('recent'),
  channelTitle: $('channel-title'), channelName: $('channel-name'), status: $('status'), back: $('back'),
  shareLink: $('share-link'), copyLink: $('copy-link'),
  messages: $('messages'), composer: $('composer'), input: $('message-input'), send: $('send'),
  members: $('members'), deleteChannel: $('delete-channel'), leaveChannel: $('leave-channel'),
  presence: $('presence'), typing: $('typing'),
};

let identity = null;
let api = null;
/** The open channel, or null. Replaced (never mutated into another channel) on every switch. */
let session = null;
/** userId → Promise<username>, for join/leave notices. */
const usernames = new Map();

// ---------------------------------------------------------------------------------------------
// storage: localStorage may be missing or full (private modes); the page still works without it.

function load(name, fallback) {
  try {
    return JSON.parse(localStorage.getItem(name)) ?? fallback;
  } catch {
    return fallback;
  }
}

function save(name, value) {
  try {
    if (value === undefined) localStorage.removeItem(name);
    else localStorage.setItem(name, JSON.stringify(value));
  } catch {
    // Nothing to do: the identity or key simply won't survive a reload.
  }
}

function rememberChannel(channelId, key, extra = {}) {
  const channels = load(CHANNELS_STORE, {});
  channels[channelId] = { ...channels[channelId], key, openedAt: Date.now(), ...extra };
  save(CHANNELS_STORE, channels);
}

function forgetChannel(channelId) {
  const channels = load(CHANNELS_STORE, {});
  delete channels[channelId];
  save(CHANNELS_STORE, channels);
}

// ---------------------------------------------------------------------------------------------
// errors, in words, in the live region

const shortId = (id) => String(id).slice(0, 8);

/** What went wrong, for a person. `context` is 'channel', 'send', 'rename' or undefined. */
function describe(error, context) {
  if (!(error instanceof ApiError)) return error?.message || String(error);
  switch (error.status) {
    case 0:
      return error.code === 'timeout'
        ? 'The server did not answer in time. Check your connection and try again.'
        : 'The server cannot be reached: the network or the server is down.';
    case 400: return `The server refused this: ${error.message}`;
    case 401:
      return 'The server no longer knows this browser\'s identity (it may have been reset), ' +
        'or this device\'s clock is wrong.';
    case 403:
      return context === 'channel' || context === 'send'
        ? 'You are not a member of this channel, or not allowed to do that.'
        : `Not allowed: ${error.message}`;
    case 404: return context === 'channel' || context === 'send' ? 'This channel was deleted.' : `Not found: ${error.message}`;
    case 409: return context === 'rename' ? 'That name is taken.' : `Already taken: ${error.message}`;
    case 413: return 'That message is too large to send.';
    case 415: return 'The server refused the request format.';
    default:
      return error.status >= 500
        ? `The server had a problem (${error.status}). Try again in a moment.`
        : error.message;
  }
}

/**
 * Shows `text` with optional action buttons [{label, run}]. A `transient` error (network, 5xx)
 * goes away by itself once the connection is back.
 */
function showError(text, actions = [], { transient = false } = {}) {
  const message = document.createElement('span');
  message.className = 'error-text';
  message.textContent = text;
  const buttons = document.createElement('span');
  buttons.className = 'error-actions';
  for (const { label, run } of actions) {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = label;
    button.addEventListener('click', run);
    buttons.append(button);
  }
  const dismiss = document.createElement('button');
  dismiss.type = 'button';
  dismiss.className = 'secondary';
  dismiss.textContent = 'Dismiss';
  dismiss.addEventListener('click', clearError);
  buttons.append(dismiss);
  ui.error.replaceChildren(message, buttons);
  ui.error.dataset.transient = String(transient);
}

function clearError() {
  ui.error.replaceChildren();
  delete ui.error.dataset.transient;
}

const showingLastingError = () => ui.error.childElementCount > 0 && ui.error.dataset.transient !== 'true';

/** Shows an API error; a 401 always comes with the way out. */
function showApiError(error, context) {
  const actions = [];
  if (error instanceof ApiError && error.status === 401) {
    actions.push({ label: 'Start over with a new identity', run: startOver });
  }
  showError(describe(error, context), actions, { transient: error instanceof ApiError && error.retryable });
}

// ---------------------------------------------------------------------------------------------
// identity

/** Loads the saved identity, or makes and registers a new one, then shows the current route. */
async function ensureIdentity() {
  showView('loading');
  clearError();
  try {
    const saved = load(IDENTITY_STORE, null);
    identity = saved ? await importIdentity(saved) : await createIdentity();
    api = new Hatchat({ identity });
    // Saved before registering: if the answer is lost, the next attempt finds the same user.
    if (!saved) save(IDENTITY_STORE, { ...(await exportIdentity(identity)), registered: false });
    if (!saved?.registered) await register();
    else checkStillKnown();
    showIdentity();
    route();
  } catch (error) {
    showError(`Could not set up your identity. ${describe(error)}`, [
      { label: 'Try again', run: ensureIdentity },
      { label: 'Start over with a new identity', run: startOver },
    ]);
  }
}

/** POST /users, trying other random names while the name is taken. */
async function register() {
  for (let attempt = 1; ; attempt++) {
    try {
      const user = await api.register();
      identity.username = user.username;
      break;
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 409 || attempt >= REGISTER_ATTEMPTS) throw error;
      // 409 is also "this id is registered": ours, if an earlier answer got lost on the way.
      const existing = await api.getUser(identity.id).catch(() => null);
      if (existing?.publicKey?.trim() === identity.publicKeyPem.trim()) {
        identity.username = existing.username;
        break;
      }
      identity.username = randomUsername();
    }
  }
  save(IDENTITY_STORE, { ...(await exportIdentity(identity)), registered: true });
}

/** A reset server forgets users: say so now rather than on the first action. */
async function checkStillKnown() {
  try {
    const user = await api.getUser(identity.id);
    if (user.username !== identity.username) {
      identity.username = user.username; // renamed from another tab or client
      save(IDENTITY_STORE, { ...load(IDENTITY_STORE, {}), username: user.username });
      showIdentity();
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      showError('The server no longer knows this browser\'s identity (it may have been reset).',
        [{ label: 'Start over with a new identity', run: startOver }]);
    }
  }
}

async function startOver() {
  closeSession();
  save(IDENTITY_STORE, undefined);
  usernames.clear();
  await ensureIdentity();
}

function showIdentity() {
  ui.username.textContent = identity.username;
  ui.renameOpen.disabled = false;
}

function openRename() {
  ui.renameInput.value = identity.username;
  ui.meName.hidden = true;
  ui.renameForm.hidden = false;
  ui.renameInput.focus();
  ui.renameInput.select();
}

function closeRename() {
  ui.renameForm.hidden = true;
  ui.meName.hidden = false;
  ui.renameOpen.focus();
}

async function submitRename(event) {
  event.preventDefault();
  const username = ui.renameInput.value.trim();
  if (!username || username === identity.username) return closeRename();
  try {
    await api.renameUser(username);
    save(IDENTITY_STORE, { ...load(IDENTITY_STORE, {}), username: identity.username });
    usernames.set(identity.id, Promise.resolve(identity.username));
    showIdentity();
    clearError();
    closeRename();
    if (session) refreshMembers(session);
  } catch (error) {
    showApiError(error, 'rename');
    ui.renameInput.focus();
  }
}

// ---------------------------------------------------------------------------------------------
// views and routing

function showView(name) {
  ui.loadingView.hidden = name !== 'loading';
  ui.startView.hidden = name !== 'start';
  ui.channelView.hidden = name !== 'channel';
}

/** '#id/key' → {channelId, keyText}. The key is the part after the last '/' (ids may hold '/'). */
function parseHash(hash) {
  const text = hash.replace(/^#/, '');
  if (!text) return null;
  const slash = text.lastIndexOf('/');
  const decode = (part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  };
  if (slash < 0) {
    const channelId = decode(text);
    return { channelId, keyText: load(CHANNELS_STORE, {})[channelId]?.key ?? '' };
  }
  return { channelId: decode(text.slice(0, slash)), keyText: text.slice(slash + 1) };
}

function route() {
  if (!identity) return; // ensureIdentity routes once ready
  const target = parseHash(location.hash);
  if (!target) {
    closeSession();
    clearError();
    showStart();
  } else if (session?.channelId !== target.channelId || session?.keyText !== target.keyText) {
    clearError();
    openChannel(target);
  }
}

/** To the start screen. `replace` after a leave or delete, so Back does not rejoin. */
function goHome({ replace = false } = {}) {
  const url = location.pathname + location.search;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route();
}

function showStart() {
  const focusWasInChannel = ui.channelView.contains(document.activeElement);
  showView('start');
  if (focusWasInChannel) ui.startChannel.focus();
  const channels = Object.entries(load(CHANNELS_STORE, {}))
    .sort(([, a], [, b]) => (b.openedAt ?? 0) - (a.openedAt ?? 0));
  ui.recentBlock.hidden = channels.length === 0;
  ui.recent.replaceChildren(...channels.map(([id, { key, owner }]) => {
    const item = document.createElement('li');
    const link = document.createElement('a');
    link.href = `#${id}/${key}`;
    link.dataset.channelId = id;
    link.textContent = `Channel ${shortId(id)}`;
    item.append(link);
    if (owner) {
      const hint = document.createElement('span');
      hint.className = 'hint';
      hint.textContent = ' (yours)';
      item.append(hint);
    }
    return item;
  }));
  if (identity && channels.length) showUnreadCounts();
}

async function startChannel() {
  ui.startChannel.disabled = true;
  try {
    const keyText = await exportKeyB64url(await newChannelKey());
    const channel = await api.createChannel({ inviteModel: 'self' });
    rememberChannel(channel.id, keyText, { owner: true });
    location.hash = `${channel.id}/${keyText}`; // hashchange opens it
  } catch (error) {
    showApiError(error);
  } finally {
    ui.startChannel.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// a channel session: join, members, history + long-poll, until aborted

function closeSession() {
  if (!session) return;
  session.controller.abort();
  clearTimeout(session.membersTimer);
  clearTimeout(session.typingTimer);
  session = null;
}

function shareLinkFor(channelId, keyText) {
  return `${new URL('./', location.href).href}#${channelId}/${keyText}`;
}

async function openChannel({ channelId, keyText }) {
  closeSession();
  const s = {
    channelId, keyText, key: null, ownerId: null,
    controller: new AbortController(), ending: false, sending: false, outbox: Promise.resolve(), membersTimer: null,
    reactions: new Map(), myReactions: new Set(), seenSeq: 0, readSeq: 0, readTimer: null, draft: null,
    // Presence: who is here (null: unknown, so nothing shown), events held while it is asked for.
    here: null, presenceLoading: null,
    // Typing: userId → {username, until}, when each last sent a message, and our own sends' throttle.
    typing: new Map(), spokeAt: new Map(), typingTimer: null, typingThrottle: throttle(TYPING_SEND_EVERY_MS),
  };
  session = s;
  const { signal } = s.controller;

  showView('channel');
  ui.channelName.textContent = shortId(channelId);
  ui.shareLink.value = shareLinkFor(channelId, keyText);
  ui.messages.replaceChildren();
  ui.members.replaceChildren();
  renderPresence(s);
  renderTyping(s);
  ui.deleteChannel.hidden = true;
  ui.leaveChannel.hidden = true;
  setComposerEnabled(false);
  setStatus('connecting');
  if (ui.startView.contains(document.activeElement) || document.activeElement === document.body) {
    ui.channelTitle.focus();
  }

  try {
    s.key = await importKeyB64url(keyText);
  } catch {
    if (signal.aborted) return;
    setStatus('disconnected');
    showError('This link has no valid key, so its messages cannot be read. Ask for the full link.',
      [{ label: 'Back to start', run: () => goHome() }]);
    return;
  }
  if (signal.aborted) return;
  rememberChannel(channelId, keyText);

  try {
    await retrying(s, () => joinChannel(s));
    if (signal.aborted) return;
    await retrying(s, () => refreshMembers(s, { throwErrors: true }));
    if (signal.aborted) return;
    setComposerEnabled(true);
    if (ui.channelView.contains(document.activeElement) || document.activeElement === document.body) {
      ui.input.focus();
    }
    await api.followLive(channelId, {
      afterSeq: 0, limit: 100, wait: 25, signal,
      onMessage: (message) => renderMessage(s, message),
      onStatus: (status, detail) => { if (!signal.aborted) connectionChanged(s, status, detail); },
      onOpen: () => refreshPresence(s),
      onPresence: (event) => presenceChanged(s, event),
      onTyping: (event) => typingEvent(s, event),
    });
  } catch (error) {
    if (signal.aborted || s.ending) return; // a switch, or our own delete/leave
    channelFailed(s, error);
  }
}

/** Runs `step` again after network errors and 5xx, as follow() does, until it passes or aborts. */
async function retrying(s, step) {
  for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
    try {
      return await step();
    } catch (error) {
      if (s.controller.signal.aborted || !(error instanceof ApiError) || !error.retryable) throw error;
      connectionChanged(s, 'reconnecting', { error, delayMs: delay });
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (s.controller.signal.aborted) return undefined;
    }
  }
}

/** Adds us to the channel: a no-op if we are a member already. */
async function joinChannel(s) {
  try {
    await api.join(s.channelId);
  } catch (error) {
    // A channel that is not open to self-joins still lets its members in: check membership.
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
    await api.getChannel(s.channelId);
  }
}

function channelFailed(s, error) {
  setStatus('disconnected');
  setComposerEnabled(false);
  const actions = [];
  if (error instanceof ApiError && error.status === 401) {
    actions.push({ label: 'Start over with a new identity', run: startOver });
  } else if (error instanceof ApiError && error.status === 404) {
    forgetChannel(s.channelId);
    actions.push({ label: 'Back to start', run: () => goHome({ replace: true }) });
  } else {
    actions.push({ label: 'Try again', run: () => { if (session === s) openChannel(s); } });
  }
  showError(describe(error, 'channel'), actions);
}

/** follow()'s reports: the status line, plus words in the error region while the link is down. */
function connectionChanged(s, status, detail) {
  const wasDown = ui.status.classList.contains('reconnecting');
  setStatus(status);
  if (status === 'reconnecting' && !showingLastingError()) {
    showError(`${describe(detail.error, 'channel')} Reconnecting automatically…`, [], { transient: true });
  } else if (status === 'connected' && wasDown) {
    if (ui.error.dataset.transient === 'true') clearError();
    scheduleMembersRefresh(s); // joins and leaves we missed arrive as messages, but be sure
  }
}

function setStatus(state) {
  const text = { connecting: 'connecting…', connected: 'connected', reconnecting: 'reconnecting…', disconnected: 'disconnected' };
  ui.status.textContent = text[state] ?? state;
  ui.status.className = `status ${state}`;
}

function setComposerEnabled(enabled) {
  ui.input.disabled = !enabled;
  ui.send.disabled = !enabled;
}

// ---------------------------------------------------------------------------------------------
// members

async function refreshMembers(s, { throwErrors = false } = {}) {
  let channel;
  try {
    channel = await api.getChannel(s.channelId);
  } catch (error) {
    if (throwErrors) throw error;
    // A background refresh: the message loop reports lasting problems; retry passing ones.
    if (error instanceof ApiError && error.retryable && session === s) {
      clearTimeout(s.membersTimer);
      s.membersTimer = setTimeout(() => refreshMembers(s), 3000);
    }
    return;
  }
  if (session !== s) return;
  s.ownerId = channel.ownerId;
  const isOwner = channel.ownerId === identity.id;
  if (isOwner) rememberChannel(s.channelId, s.keyText, { owner: true });
  ui.deleteChannel.hidden = !isOwner;
  ui.leaveChannel.hidden = isOwner;
  ui.members.replaceChildren(...channel.members.map((member) => {
    usernames.set(member.id, Promise.resolve(member.username));
    const item = document.createElement('li');
    item.textContent = member.username;
    const tags = [member.id === channel.ownerId && 'owner', member.id === identity.id && 'you'].filter(Boolean);
    if (tags.length) {
      const tag = document.createElement('span');
      tag.className = 'tag';
      tag.textContent = ` (${tags.join(', ')})`;
      item.append(tag);
    }
    return item;
  }));
}

/** Join/leave notices arrive in bursts while history loads: refresh once per burst. */
function scheduleMembersRefresh(s) {
  clearTimeout(s.membersTimer);
  s.membersTimer = setTimeout(() => refreshMembers(s), 300);
}

// ---------------------------------------------------------------------------------------------
// presence and typing: niceties, so any failure just shows nothing

/** Asks who is here (each time a stream opens: events may have been missed meanwhile). */
async function refreshPresence(s) {
  if (s.presenceLoading) return;
  s.presenceLoading = [];
  let list = null;
  try {
    list = await api.getPresence(s.channelId);
  } catch {
    // An older gateway without presence, or a blip: show nothing until the next stream asks again.
  }
  const missed = s.presenceLoading;
  s.presenceLoading = null;
  s.here = list && missed.reduce(applyPresence, presentFrom(list));
  renderPresence(s);
}

function presenceChanged(s, event) {
  // Many came or went at once: the server names none of them; ask for the list, after a moment
  // chosen at random so that everyone told does not ask at the same instant.
  if (event.kind === 'resync') {
    setTimeout(() => { if (session === s) refreshPresence(s); }, Math.random() * 2000);
    return;
  }
  if (s.presenceLoading) s.presenceLoading.push(event);
  else if (s.here) s.here = applyPresence(s.here, event);
  renderPresence(s);
  if (event.kind === 'leave') setTyping(s, stopTyping(s.typing, event.userId));
}

/** "Here now: alice, bob, you", or nothing while unknown. */
function renderPresence(s) {
  if (session !== s) return;
  const here = s.here ?? new Map();
  const others = [...here].filter(([id]) => id !== identity.id).map(([, name]) => name).sort();
  const names = here.has(identity.id) ? [...others, 'you'] : others;
  ui.presence.textContent = names.length ? `Here now: ${names.join(', ')}` : '';
  ui.presence.hidden = names.length === 0;
}

function typingEvent(s, event) {
  // Typing sent before their last message (which cleared it) is stale.
  if (Date.parse(event.at) <= (s.spokeAt.get(event.userId) ?? -Infinity)) return;
  setTyping(s, applyTyping(s.typing, event, Date.now()));
}

function setTyping(s, typing) {
  s.typing = typing;
  renderTyping(s);
}

/** The typing line, again when the soonest notice ends. */
function renderTyping(s) {
  if (session !== s) return;
  const now = Date.now();
  ui.typing.textContent = typingText(typingNames(s.typing, now, identity.id));
  clearTimeout(s.typingTimer);
  const end = nextTypingEnd(s.typing, now);
  s.typingTimer = end === null ? null : setTimeout(() => renderTyping(s), end - now + 10);
}

/** Tells the others we type: at most every TYPING_SEND_EVERY_MS, failures (429 too soon) ignored. */
function onComposerInput() {
  const s = session;
  if (!s || ui.input.disabled || !ui.input.value.trim() || !s.typingThrottle.ready(Date.now())) return;
  api.sendTyping(s.channelId).catch(() => {});
}

// ---------------------------------------------------------------------------------------------
// messages

function usernameOf(userId) {
  if (!usernames.has(userId)) {
    const lookup = api.getUser(userId).then((user) => user.username, (error) => {
      // Forget network failures so a later notice asks again; a 404 (deleted user) stays.
      if (!(error instanceof ApiError) || error.status !== 404) usernames.delete(userId);
      return `user ${shortId(userId)}`;
    });
    usernames.set(userId, lookup);
  }
  return usernames.get(userId);
}

async function systemText(payload) {
  const who = payload?.userId ? await usernameOf(payload.userId) : 'someone';
  if (payload?.event === 'join') return `${who} joined`;
  if (payload?.event === 'leave') return `${who} left`;
  return typeof payload?.message === 'string' ? payload.message : 'channel event';
}

function formatTime(date) {
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : date.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * Appends one message. follow() calls this once per seq, in order; the seq check below only
 * guards against a bug elsewhere. Every await is followed by an aborted-check, so a message of a
 * channel we switched away from never lands in the new channel's list.
 */
async function renderMessage(s, message) {
  const { signal } = s.controller;
  if (message.event) {
    await applyEvent(s, message);
    noteSeen(s, message);
    return;
  }
  let kind;
  let text;
  if (message.fromUserId === SYSTEM_USER_ID) {
    kind = 'system';
    text = await systemText(message.payload);
    if (!signal.aborted) scheduleMembersRefresh(s);
  } else {
    s.spokeAt.set(message.fromUserId, Date.parse(message.createdAt));
    setTyping(s, stopTyping(s.typing, message.fromUserId));
    try {
      text = await decryptPayload(s.key, message.payload);
      kind = 'text';
    } catch {
      text = 'cannot decrypt this message';
      kind = 'undecryptable';
    }
  }
  if (signal.aborted || ui.messages.querySelector(`[data-seq="${message.seq}"]`)) return;

  const own = message.fromUserId === identity.id;
  const item = element('div', `msg${own && kind !== 'system' ? ' own' : ''}`);
  item.dataset.testid = 'message';
  item.dataset.seq = String(message.seq);
  item.dataset.kind = kind;
  const created = new Date(message.createdAt);
  const time = element('time', '', formatTime(created));
  time.dateTime = message.createdAt;
  time.title = created.toLocaleString();
  if (kind === 'system') {
    item.append(element('p', 'body', text), time);
  } else {
    const meta = element('div', 'meta');
    const sender = message.username == null
      ? element('span', 'sender deleted', 'deleted user')
      : element('span', 'sender', own ? `${message.username} (you)` : message.username);
    meta.append(sender, time);
    item.append(meta, element('p', 'body', text), messageActions(s, message.seq, own && kind === 'text'));
  }

  const list = ui.messages;
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  list.append(item);
  if (nearBottom || own) list.scrollTop = list.scrollHeight;
  noteSeen(s, message);
}

// ---------------------------------------------------------------------------------------------
// edits, deletes, reactions (events in the channel, applied in seq order) and read positions

const REACTION = '👍';

/** A message's buttons: react for everyone, edit and delete for its author. */
function messageActions(s, seq, mine) {
  const actions = element('div', 'actions');
  const reactions = element('span', 'reactions');
  const react = element('button', 'react', REACTION);
  react.type = 'button';
  react.title = 'React';
  react.addEventListener('click', () => toggleReaction(s, seq));
  actions.append(reactions, react);
  if (mine) {
    const edit = element('button', 'edit', 'Edit');
    edit.type = 'button';
    edit.addEventListener('click', () => editMessage(s, seq));
    const remove = element('button', 'delete', 'Delete');
    remove.type = 'button';
    remove.addEventListener('click', () => deleteMessage(s, seq));
    actions.append(edit, remove);
  }
  return actions;
}

/** Applies an edit, delete or reaction event to the message it targets, if it is on screen. */
async function applyEvent(s, event) {
  const target = ui.messages.querySelector(`[data-seq="${event.target}"]`);
  if (event.event === 'reaction') {
    const counts = s.reactions.get(event.target) ?? new Map();
    const { reaction, action } = event.payload ?? {};
    const n = (counts.get(reaction) ?? 0) + (action === 'add' ? 1 : -1);
    if (n > 0) counts.set(reaction, n); else counts.delete(reaction);
    s.reactions.set(event.target, counts);
    if (event.fromUserId === identity.id) {
      const key = `${event.target}|${reaction}`;
      if (action === 'add') s.myReactions.add(key); else s.myReactions.delete(key);
    }
    const shown = target?.querySelector('.reactions');
    if (shown) shown.textContent = [...counts].map(([r, count]) => `${r} ${count}`).join(' ');
    return;
  }
  if (!target) return;
  const body = target.querySelector('.body');
  if (event.event === 'edit') {
    let text;
    try {
      text = await decryptPayload(s.key, event.payload);
    } catch {
      text = 'cannot decrypt this message';
    }
    if (s.controller.signal.aborted) return;
    body.textContent = text;
    target.dataset.edited = 'true';
    target.querySelector('time')?.after(element('span', 'edited', ' (edited)'));
  } else if (event.event === 'delete') {
    body.textContent = 'message deleted';
    target.dataset.kind = 'deleted';
    target.querySelector('.actions')?.remove();
  }
}

async function toggleReaction(s, seq) {
  const remove = s.myReactions.has(`${seq}|${REACTION}`);
  try {
    await api.react(s.channelId, seq, REACTION, { remove });
  } catch (error) {
    if (session === s) showApiError(error, 'send');
  }
}

/** The new text is encrypted with the channel key, like any message. */
async function editMessage(s, seq) {
  const current = ui.messages.querySelector(`[data-seq="${seq}"] .body`)?.textContent ?? '';
  const text = prompt('Edit your message', current);
  if (text == null || !text.trim() || text === current) return;
  try {
    await api.editMessage(s.channelId, seq, await encryptText(s.key, text));
  } catch (error) {
    if (session === s) showApiError(error, 'send');
  }
}

async function deleteMessage(s, seq) {
  if (!confirm('Delete this message for everyone?')) return;
  try {
    await api.deleteMessage(s.channelId, seq);
  } catch (error) {
    if (session === s) showApiError(error, 'send');
  }
}

/** Marks the channel read up to what this person has seen: while the page is visible, batched. */
function noteSeen(s, message) {
  s.seenSeq = Math.max(s.seenSeq ?? 0, message.seq);
  if (document.visibilityState !== 'visible' || s.readTimer) return;
  s.readTimer = setTimeout(() => {
    s.readTimer = null;
    if (session !== s || (s.readSeq ?? 0) >= s.seenSeq) return;
    const seq = s.seenSeq;
    api.markRead(s.channelId, seq).then(() => { s.readSeq = Math.max(s.readSeq ?? 0, seq); }, () => {});
  }, 1000);
}

/** The start screen's unread counts, from GET /channels (only channels this browser knows). */
async function showUnreadCounts() {
  let channels;
  try {
    channels = await api.listChannels();
  } catch {
    return; // counts are a nicety: the list works without them
  }
  for (const channel of channels) {
    const link = [...ui.recent.querySelectorAll('a')].find((a) => a.dataset.channelId === channel.id);
    if (!link || !channel.unread) continue;
    const badge = element('span', 'unread', ` ${channel.unread} unread`);
    badge.dataset.testid = 'unread';
    link.after(badge);
  }
}

/**
 * Encrypts and sends; the message shows up through the poll, so it is never rendered twice. The
 * text leaves the input at once, so what is typed next is a message of its own, and sends go out
 * one at a time in the order they were typed: Enter while a send is still on its way queues the
 * next one instead of being ignored (which left it unsent, or ran two messages together).
 */
function sendMessage() {
  const s = session;
  const text = ui.input.value;
  if (!s?.key || ui.input.disabled || !text.trim()) return Promise.resolve();
  ui.input.value = '';
  s.typingThrottle.reset(); // our message ends our typing for the others: tell again at once
  s.outbox = s.outbox.then(() => sendOne(s, text));
  return s.outbox;
}

async function sendOne(s, text) {
  if (session !== s) return;
  s.sending = true;
  ui.send.disabled = true;
  try {
    // One client id per text: a retry after a failure the server may have committed is stored once.
    if (s.draft?.text !== text) s.draft = { text, clientId: crypto.randomUUID() };
    await api.sendMessage(s.channelId, await encryptText(s.key, text), { clientId: s.draft.clientId });
    s.draft = null;
    if (session === s) clearError();
  } catch (error) {
    if (session === s) {
      showApiError(error, 'send');
      // Back into the input, unless something else was typed meanwhile: Enter retries it.
      if (!ui.input.value) ui.input.value = text;
    }
  } finally {
    s.sending = false;
    if (session === s) ui.send.disabled = ui.input.disabled;
  }
}

function onComposerKey(event) {
  // isComposing: Enter that confirms an IME composition (Japanese, Chinese…) must not send.
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendMessage();
  }
}

async function copyShareLink() {
  const link = ui.shareLink.value;
  try {
    await navigator.clipboard.writeText(link);
  } catch {
    // No clipboard API (plain http, old browser): select the text and use the legacy command.
    ui.shareLink.select();
    document.execCommand?.('copy');
  }
  ui.copyLink.textContent = 'Copied';
  setTimeout(() => { ui.copyLink.textContent = 'Copy'; }, 2000);
}

async function deleteChannel() {
  const s = session;
  if (!s || !confirm('Delete this channel and all of its messages, for everyone?')) return;
  await endSession(s, () => api.deleteChannel(s.channelId));
}

async function leaveChannel() {
  const s = session;
  if (!s) return;
  await endSession(s, () => api.leaveChannel(s.channelId));
}

/** Deletes or leaves; the poll then fails with 404/403, which `ending` tells apart from trouble. */
async function endSession(s, request) {
  s.ending = true;
  ui.deleteChannel.disabled = true;
  ui.leaveChannel.disabled = true;
  try {
    await request();
    forgetChannel(s.channelId);
    if (session === s) goHome({ replace: true });
  } catch (error) {
    s.ending = false;
    if (session === s) showApiError(error, 'channel');
  } finally {
    ui.deleteChannel.disabled = false;
    ui.leaveChannel.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// wiring

function wire() {
  ui.renameOpen.addEventListener('click', openRename);
  ui.renameCancel.addEventListener('click', closeRename);
  ui.renameForm.addEventListener('submit', submitRename);
  ui.renameForm.addEventListener('keydown', (event) => { if (event.key === 'Escape') closeRename(); });
  ui.startChannel.addEventListener('click', startChannel);
  ui.back.addEventListener('click', () => goHome());
  ui.copyLink.addEventListener('click', copyShareLink);
  ui.shareLink.addEventListener('focus', () => ui.shareLink.select());
  ui.composer.addEventListener('submit', (event) => { event.preventDefault(); sendMessage(); });
  ui.input.addEventListener('keydown', onComposerKey);
  ui.input.addEventListener('input', onComposerInput);
  ui.deleteChannel.addEventListener('click', deleteChannel);
  ui.leaveChannel.addEventListener('click', leaveChannel);
  $('home-link').addEventListener('click', (event) => { event.preventDefault(); goHome(); });
  document.addEventListener('visibilitychange', () => {
    if (session && document.visibilityState === 'visible') noteSeen(session, { seq: session.seenSeq ?? 0 });
  });
  // A page left for another may stay in the back/forward cache with its stream open, present to
  // the others until the token runs out: close it, and open it again if the page comes back.
  window.addEventListener('pagehide', closeSession);
  window.addEventListener('pageshow', (event) => { if (event.persisted) route(); });
  window.addEventListener('hashchange', route);
  window.addEventListener('popstate', route); // back/forward across goHome's pushState
}

wire();
ensureIdentity();

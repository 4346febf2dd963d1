//! Messages: each channel's ordered history, and the windows clients read it through.
//!
//! Ordering by construction: a send bumps its channel's counter row (`last_seq`, `last_at`) in the
//! sending transaction. The row lock serializes the writers of one channel until they commit, so
//! commit order is `seq` order and no reader can see seq N+1 before seq N. `createdAt` comes from
//! the same row, strictly increasing (`greatest(clock_timestamp(), last_at + 1µs)`), so a client
//! paging with `since = last createdAt` is as exact as one paging with `afterSeq = last seq`. A
//! global sequence or a bare `now()` would let a later-committing sender land behind a reader's
//! cursor, and that message would never be seen.

use crate::access::{self, valid_channel_id, Access};
use crate::announce;
use crate::auth::{self, Caller, SYSTEM_USER};
use crate::commit;
use crate::db::{self, pg_uuid, Jsonb};
use crate::error::{required, HatchatError, Result, SqlResult};
use crate::limits::{self, check_payload};
use crate::placement::Placement;
use crate::time::Bound;
use hatchat_wire::api::DEFAULT_MESSAGE_LIMIT;
use pgrx::prelude::*;
use uuid::Uuid;

mod batch;
mod events;
mod fold;

/// Appends to a live channel if `from` is a member (the system user always may); no row when the
/// channel is missing, expired, or `from` is not a member. The counter row update is the
/// serialization point described above; it also refreshes the channel's expiry (in steps, see
/// `hatchat.refreshed_expiry`) and bumps the channel's running count of countable messages (a
/// user's message, not an event: $5 is the event kind or NULL). A countable post also moves its sender's read position to itself
/// (posting marks what you have seen as read), so a member's own posts are never unread and the
/// unread count needs no per-sender index (see reads.rs). With a key ($8), only a sender whose
/// stored key is that key and who may post now (not banned, muted or with chat disabled) appends:
/// a send by a token verified before authenticates in this statement (see `send_as_known`).
/// $9 says which channels it may go into (`Destination`): a room takes only the room functions'
/// writes, whatever path a caller finds. Returns the answer and the channel's retention and
/// notification settings.
const APPEND: &str = "\
    WITH counter AS ( \
        UPDATE hatchat.channels c \
           SET last_seq = last_seq + 1, \
               last_at = greatest($7, hatchat.add_interval(last_at, interval '1 microsecond')), \
               expires_at = hatchat.refreshed_expiry(expires_at, ttl_seconds, $7), \
               counted = counted + CASE WHEN $5::text IS NULL \
                                         AND $2 <> '00000000-0000-0000-0000-000000000000'::uuid THEN 1 ELSE 0 END \
         WHERE c.id = $1 AND hatchat.is_live(c.expires_at) \
           AND ($9::boolean IS NULL OR (c.type IS NOT NULL) = $9) \
           AND ($2 = '00000000-0000-0000-0000-000000000000'::uuid \
                OR EXISTS (SELECT 1 FROM hatchat.members m WHERE m.channel_id = $1 AND m.user_id = $2)) \
           AND ($8::text IS NULL \
                OR EXISTS (SELECT 1 FROM hatchat.users u WHERE u.id = $2 AND u.public_key = $8 \
                             AND NOT u.muted AND NOT u.chat_disabled \
                             AND (u.banned_until IS NULL OR u.banned_until <= now()))) \
     RETURNING last_seq, last_at, counted, max_messages, notify_members), \
    inserted AS ( \
        INSERT INTO hatchat.messages (channel_id, seq, created_at, from_user_id, payload, client_id, kind, target, counted) \
        SELECT $1, last_seq, last_at, $2, $3, $4, $5, $6, counted FROM counter \
        RETURNING channel_id, seq, created_at, from_user_id), \
    advanced AS ( \
        UPDATE hatchat.members m SET read_seq = c.last_seq, read_count = c.counted \
          FROM counter c WHERE m.channel_id = $1 AND m.user_id = $2 AND $5::text IS NULL) \
    SELECT i.seq, hatchat.sent_json(i.channel_id, i.seq, i.created_at, i.from_user_id), \
           c.max_messages, c.notify_members \
      FROM inserted i, counter c";

/// Locks a live channel's counter row (what every append takes first) and says whether it is
/// there. Whatever is decided under it — an earlier send with this client id, a target message's
/// state — stays true until the append, which takes the same lock.
pub fn lock_counter(channel_id: &str) -> Result<bool> {
    let locked = db::execute(
        "SELECT 1 FROM hatchat.channels c WHERE c.id = $1 AND hatchat.is_live(c.expires_at) FOR NO KEY UPDATE",
        &[channel_id.into()],
    )?;
    Ok(locked > 0)
}

/// The row an earlier request of `from`'s with this client id stored in the channel, if there was
/// one: a send (no kind) or an event (its kind and target), and the answer it got (the same
/// object, built from the stored row).
const EARLIER_REQUEST: &str = "\
    SELECT m.kind, m.target, hatchat.sent_json(m.channel_id, m.seq, m.created_at, m.from_user_id) \
      FROM hatchat.messages m WHERE m.channel_id = $1 AND m.from_user_id = $2 AND m.client_id = $3";

pub struct Earlier {
    pub kind: Option<String>,
    pub target: Option<i64>,
    pub answer: Jsonb,
}

pub fn earlier_request(channel_id: &str, from: Uuid, client_id: &str) -> Result<Option<Earlier>> {
    let args = [channel_id.into(), pg_uuid(from).into(), client_id.into()];
    let found = db::row(EARLIER_REQUEST, &args, |row| {
        let (kind, target) = (row.get::<String>(1)?, row.get::<i64>(2)?);
        Ok(row.get::<Jsonb>(3)?.map(|answer| Earlier { kind, target, answer }))
    })?;
    Ok(found.flatten())
}

/// What a new row is besides its payload: a send (maybe with a client id) or an event about an
/// earlier message, and where it may go. With a `key`, only a sender who holds it and may post now
/// appends (see `APPEND`, `send_as_known`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra<'a> {
    pub client_id: Option<&'a str>,
    pub kind: Option<&'static str>,
    pub target: Option<i64>,
    pub into: Destination,
    pub key: Option<&'a str>,
}

/// Which channels an append may go into. A room's messages carry the `from` the server stamped,
/// so only the room functions append to rooms; a delete (erasure is never withheld) goes into
/// either; everything else into ordinary channels only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Destination {
    #[default]
    Channel,
    Room,
    Either,
}

impl Destination {
    /// APPEND's $9: whether the channel must be a room, or NULL for either.
    fn must_be_room(self) -> Option<bool> {
        match self {
            Destination::Channel => Some(false),
            Destination::Room => Some(true),
            Destination::Either => None,
        }
    }
}

pub const MAX_CLIENT_ID_CHARS: usize = 64;

/// A client message id: 1..64 characters, no control characters.
pub fn valid_client_id(raw: &str) -> Result<&str> {
    limits::short_text(raw, "clientId", MAX_CLIENT_ID_CHARS)
}

/// What a channel's settings ask to follow new messages.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_messages: Option<i32>,
    pub notify_members: bool,
}

impl Retention {
    /// From a counter row's `max_messages` and `notify_members`.
    pub fn new(max_messages: Option<i32>, notify_members: Option<bool>) -> Self {
        Self { max_messages, notify_members: notify_members.unwrap_or(false) }
    }
}

/// Appends one message to an ordinary channel (see `APPEND`) and settles it; the answer, or None
/// when the channel is missing or `from` may not post there.
pub fn append(channel_id: &str, from: Uuid, payload: Jsonb) -> Result<Option<Jsonb>> {
    append_with(channel_id, from, payload, None, Extra::default())
}

/// `append` for the room functions, the only writers of a room's messages; `push` goes with the
/// post's notifications.
pub fn append_to_room(
    room_id: &str,
    from: Uuid,
    payload: Jsonb,
    push: Option<Jsonb>,
) -> Result<Option<Jsonb>> {
    append_with(room_id, from, payload, push, Extra { into: Destination::Room, ..Extra::default() })
}

/// `append`, with a client id, as an event, or guarded by the sender's key.
pub fn append_with(
    channel_id: &str,
    from: Uuid,
    payload: Jsonb,
    push: Option<Jsonb>,
    extra: Extra,
) -> Result<Option<Jsonb>> {
    let args = [
        channel_id.into(),
        pg_uuid(from).into(),
        payload.into(),
        extra.client_id.into(),
        extra.kind.into(),
        extra.target.into(),
        db::clock()?.into(),
        extra.key.into(),
        extra.into.must_be_room().into(),
    ];
    let appended = db::row(APPEND, &args, |row| {
        let retention = Retention::new(row.get::<i32>(3)?, row.get::<bool>(4)?);
        Ok(row.get::<i64>(1)?.zip(row.get::<Jsonb>(2)?).map(|(seq, answer)| (seq, answer, retention)))
    })?
    .flatten();
    let Some((seq, answer, retention)) = appended else { return Ok(None) };
    settle(channel_id, &[seq], retention, push)?;
    Ok(Some(answer))
}

/// What follows new messages `seqs` (ascending) of a channel, however they were appended: capping,
/// the members' notifications, and the announcement (at commit) that the channel changed.
pub fn settle(channel_id: &str, seqs: &[i64], retention: Retention, push: Option<Jsonb>) -> Result<()> {
    let Some(&last_seq) = seqs.last() else { return Ok(()) };
    if let Some(max) = retention.max_messages {
        db::execute(
            "WITH reactions AS (DELETE FROM hatchat.reactions WHERE channel_id = $1 AND seq <= $2) \
             DELETE FROM hatchat.messages WHERE channel_id = $1 AND seq <= $2",
            &[channel_id.into(), (last_seq - i64::from(max)).into()],
        )?;
    }
    if retention.notify_members {
        for seq in seqs {
            Placement::here().fan_out(channel_id, *seq, push)?;
        }
    }
    announce::channel(channel_id)?;
    commit::release_locks_early();
    Ok(())
}

/// Posts a system message about `user` (`join`, `leave`) from the reserved system user, worded as
/// Hatch@ words it; `event` and `userId` spare clients from parsing the sentence.
pub fn post_system(channel_id: &str, event: &str, user: Uuid) -> Result<()> {
    let sentence = match event {
        "join" => format!("user {user} has joined the channel"),
        "leave" => format!("user {user} has left the channel"),
        other => format!("user {user}: {other}"),
    };
    let payload = db::one::<Jsonb>(
        "SELECT jsonb_build_object('message', $1::text, 'event', $2::text, 'userId', $3::uuid)",
        &[sentence.into(), event.into(), pg_uuid(user).into()],
    )?;
    append(channel_id, SYSTEM_USER, payload)?.ok_or_else(|| access::channel_not_found(channel_id))?;
    Ok(())
}

/// A send's payload as it arrives: a JSON value, or JSON text still to be converted.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    Value(Option<Jsonb>),
    Text(Option<&'a str>),
}

/// A send that passed every check but membership.
pub struct Admitted {
    pub channel: String,
    pub sender: Caller,
    pub payload: Jsonb,
    pub client_id: Option<String>,
}

/// The checks every send passes before membership, in one order, whether it comes alone
/// (`send_message`, `send_message_text`) or in a batch: so an item of a batch fails exactly as it
/// would alone, by construction. Payload text is converted first, where a cast would be.
pub fn admit(
    sender: impl FnOnce() -> Result<Caller>,
    channel: Option<&str>,
    payload: Payload,
    client_id: Option<&str>,
) -> Result<Admitted> {
    let converted = payload.converted()?;
    let sender = sender()?;
    sender.may_post()?;
    let (channel, payload) = check_target(channel, converted)?;
    let client_id = client_id.map(valid_client_id).transpose()?.map(str::to_string);
    Ok(Admitted { channel: channel.to_string(), sender, payload, client_id })
}

/// A send's channel id and payload, checked (after its sender, in `admit`'s order).
fn check_target(channel: Option<&str>, payload: Option<Jsonb>) -> Result<(&str, Jsonb)> {
    let channel = valid_channel_id(required(channel, "channelId")?)?;
    let payload = required(payload, "payload")?;
    check_payload(&payload)?;
    Ok((channel, payload))
}

impl Payload<'_> {
    /// The payload as a JSON value: text is converted first, where a cast would be.
    fn converted(self) -> Result<Option<Jsonb>> {
        match self {
            Payload::Text(text) => text.map(limits::payload_from_text).transpose(),
            Payload::Value(value) => Ok(value),
        }
    }
}

/// What a muted sender is answered: the usual shape, but nothing was stored (`seq` null).
pub fn muted_answer(channel_id: &str, sender: Uuid) -> Result<String> {
    Ok(serde_json::json!({"channelId": channel_id, "seq": null, "createdAt": null, "fromUserId": sender})
        .to_string())
}

/// Sends `payload` (any JSON value) to a channel the caller is a member of. With a `client_id`, a
/// second send with the same (channel, sender, client id) stores nothing and answers the first
/// send's answer (its payload is not compared: the id names the send).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn send_message(
    token: Option<&str>,
    channel_id: Option<&str>,
    payload: Option<Jsonb>,
    client_id: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(send(token, channel_id, Payload::Value(payload), client_id)?)
}

/// `send_message` with the payload as JSON text: `send_message(token, channel_id,
/// payload_text::jsonb)`, except that text jsonb cannot hold (or nested past
/// `hatchat.max_json_depth`) fails with this call's own error, converted exactly as a
/// `send_messages` item's `payloadText`. The gateway sends through this or a batch of those items,
/// so a send answers the same whether or not it was batched.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn send_message_text(
    token: Option<&str>,
    channel_id: Option<&str>,
    payload_text: Option<&str>,
    client_id: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(send(token, channel_id, Payload::Text(payload_text), client_id)?)
}

/// One send alone. A token this backend verified before goes in one statement: the append, which
/// checks the sender's stored key and state itself (`send_as_known`). Anything else — a new
/// token, a client id, a refusal of any kind — goes the whole way, `admit` then `send_alone`,
/// which decides every error and its order; the short way changed nothing when it found nothing.
fn send(
    token: Option<&str>,
    channel_id: Option<&str>,
    payload: Payload,
    client_id: Option<&str>,
) -> Result<Jsonb> {
    let payload = payload.converted()?;
    if client_id.is_none() && Placement::here().sends_known_signers_in_one_statement() {
        if let Some(known) = auth::recognize(token) {
            if let Some(answer) = send_as_known(&known, channel_id, payload)? {
                return Ok(answer);
            }
        }
    }
    send_alone(admit(|| auth::authenticate(token), channel_id, Payload::Value(payload), client_id)?)
}

/// Appends for a recognized signer if their stored key is still the one their token verified
/// against and they may post (APPEND's guard), in the append's own snapshot; None otherwise,
/// having written nothing. Without a client id only: a retry's earlier answer is read before the
/// append, where the guard cannot stand.
fn send_as_known(
    known: &auth::Known,
    channel_id: Option<&str>,
    payload: Option<Jsonb>,
) -> Result<Option<Jsonb>> {
    let Ok((channel, payload)) = check_target(channel_id, payload) else { return Ok(None) };
    append_with(channel, known.id, payload, None, Extra { key: Some(&known.pem), ..Extra::default() })
}

/// One admitted send: membership (a muted sender is answered, nothing stored), then the append.
fn send_alone(send: Admitted) -> Result<Jsonb> {
    let Admitted { channel, sender, client_id, .. } = &send;
    if sender.is_muted() {
        Access::load(channel, sender)?.require_poster()?;
        return Jsonb::from_text(&muted_answer(channel, sender.id())?);
    }
    // A retry racing the first send waits here for it to commit, then finds it.
    if let Some(client_id) = client_id.as_deref() {
        if lock_counter(channel)? {
            if let Some(earlier) = earlier_request(channel, sender.id(), client_id)? {
                return Ok(earlier.answer);
            }
        }
    }
    Placement::here().append_alone(&send)?.ok_or_else(|| why_not_appended(channel, sender))
}

impl Placement {
    /// How a send alone appends (`send_message`), once admitted: the one statement of modifying
    /// CTEs, `APPEND`, on one node. On a cluster that statement runs as several steps over two
    /// connections to the channel's worker, which then commits in two phases: there the batch's
    /// per-channel statements append it, over one connection. None when the channel is missing or
    /// the sender may not post there.
    fn append_alone(self, send: &Admitted) -> Result<Option<Jsonb>> {
        match self {
            Placement::OneNode => {
                let extra = Extra { client_id: send.client_id.as_deref(), ..Extra::default() };
                append_with(&send.channel, send.sender.id(), send.payload, None, extra)
            }
            Placement::Sharded => batch::append_alone_per_channel(send),
        }
    }
}

/// An append bumped no counter: the channel is missing, the sender is not a member, or it is a room.
fn why_not_appended(channel_id: &str, sender: &Caller) -> HatchatError {
    match Access::load(channel_id, sender).and_then(|access| access.require_poster()) {
        Err(error) => error,
        // A member, yet no row: the channel was deleted between the two statements.
        Ok(()) => access::channel_not_found(channel_id),
    }
}

/// A validated read window: `since < createdAt < until` and `seq > after_seq`, oldest first.
#[derive(Debug, PartialEq)]
pub struct Window {
    pub since: Bound,
    pub until: Bound,
    pub row_limit: i32,
    pub after_seq: Option<i64>,
}

impl Window {
    pub fn parse(since: &str, until: &str, row_limit: i32, after_seq: Option<i64>) -> Result<Self> {
        let bound = |text: &str, name: &str| {
            Bound::parse(text).ok_or_else(|| {
                HatchatError::invalid(format!(
                    "{name} must be an ISO-8601 timestamp with a time zone \
                     (2026-11-22T14:42:24.123456Z), -infinity or infinity; got {text:?}"
                ))
            })
        };
        limits::check_row_limit(row_limit)?;
        if after_seq.is_some_and(|seq| seq < 0) {
            return Err(HatchatError::invalid("afterSeq must be 0 or more"));
        }
        Ok(Self { since: bound(since, "since")?, until: bound(until, "until")?, row_limit, after_seq })
    }
}

/// Every plan reads the window in `seq` order (which is `createdAt` order) and walks the index
/// that starts nearest the cursor it was given, so a deep cursor does not scan old history. An
/// `after_seq` read without time bounds (every stream, long-poll and resume) has no time
/// predicates at all: with them, the generic plan PostgreSQL settles on after a few calls walked
/// the `(channel_id, created_at)` index and filtered on seq, reading the whole channel to find
/// that nothing follows its head.
const WINDOW_AFTER_SEQ: &str = "\
    SELECT coalesce(jsonb_agg(w.message ORDER BY w.seq), '[]'::jsonb) \
      FROM (SELECT m.seq, hatchat.message_json(m.seq, m.created_at, m.from_user_id, u.username, m.payload, m.kind, m.target, m.client_id) AS message \
              FROM hatchat.messages m LEFT JOIN hatchat.users u ON u.id = m.from_user_id \
             WHERE m.channel_id = $1 AND m.seq > $5 \
             ORDER BY m.seq LIMIT $4) w";
const WINDOW_BY_SEQ: &str = "\
    SELECT coalesce(jsonb_agg(w.message ORDER BY w.seq), '[]'::jsonb) \
      FROM (SELECT m.seq, hatchat.message_json(m.seq, m.created_at, m.from_user_id, u.username, m.payload, m.kind, m.target, m.client_id) AS message \
              FROM hatchat.messages m LEFT JOIN hatchat.users u ON u.id = m.from_user_id \
             WHERE m.channel_id = $1 AND m.seq > $5 \
               AND m.created_at > $2::timestamptz AND m.created_at < $3::timestamptz \
             ORDER BY m.seq LIMIT $4) w";
const WINDOW_BY_TIME: &str = "\
    SELECT coalesce(jsonb_agg(w.message ORDER BY w.seq), '[]'::jsonb) \
      FROM (SELECT m.seq, hatchat.message_json(m.seq, m.created_at, m.from_user_id, u.username, m.payload, m.kind, m.target, m.client_id) AS message \
              FROM hatchat.messages m LEFT JOIN hatchat.users u ON u.id = m.from_user_id \
             WHERE m.channel_id = $1 \
               AND m.created_at > $2::timestamptz AND m.created_at < $3::timestamptz \
             ORDER BY m.created_at LIMIT $4) w";

/// A window's three plans: after a seq without time bounds, after a seq within them, and by time.
type Plans = [&'static str; 3];

/// Every row of the window, events included (`fold::FOLDED` folds them).
const UNFOLDED: Plans = [WINDOW_AFTER_SEQ, WINDOW_BY_SEQ, WINDOW_BY_TIME];

/// A window read with the plan of `plans` that fits it.
fn read_window(channel_id: &str, window: &Window, plans: Plans) -> Result<Jsonb> {
    let since = window.since.to_sql_literal();
    let until = window.until.to_sql_literal();
    let limit = i64::from(window.row_limit);
    let mut args = vec![channel_id.into(), since.as_str().into(), until.as_str().into(), limit.into()];
    args.extend(window.after_seq.map(Into::into));
    let [after_seq, by_seq, by_time] = plans;
    let unbounded = matches!((&window.since, &window.until), (Bound::NegativeInfinity, Bound::Infinity));
    let plan = match window.after_seq {
        Some(_) if unbounded => after_seq,
        Some(_) => by_seq,
        None => by_time,
    };
    db::one::<Jsonb>(plan, &args)
}

/// The checks every read of a channel's messages passes, in one order, whether it is
/// `get_messages` or a stream opening (`open_stream`): the caller, the channel id, the window
/// (`(since, until, row_limit)` and `after_seq`), then membership. So a stream is refused exactly
/// as its read would be, by construction.
pub fn admit_read<'a>(
    token: Option<&str>,
    channel_id: Option<&'a str>,
    (since, until, row_limit): (&str, &str, i32),
    after_seq: Option<i64>,
) -> Result<(Caller, &'a str, Window)> {
    let caller = auth::authenticate(token)?;
    let channel_id = valid_channel_id(required(channel_id, "channelId")?)?;
    let window = Window::parse(since, until, row_limit, after_seq)?;
    Access::load(channel_id, &caller)?.require_member()?;
    Ok((caller, channel_id, window))
}

/// Messages of a channel the caller is a member of, oldest first: `since` and `until` are
/// exclusive bounds on `createdAt`, `after_seq` an exact cursor, `row_limit` 1..1000. With `fold`,
/// only messages, each in its current state (see fold.rs); otherwise every row, events included.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn get_messages(
    token: Option<&str>,
    channel_id: Option<&str>,
    since: default!(Option<&str>, "'-infinity'"),
    until: default!(Option<&str>, "'infinity'"),
    row_limit: default!(Option<i32>, 20),
    after_seq: default!(Option<i64>, "NULL"),
    fold: default!(Option<bool>, false),
) -> SqlResult<Jsonb> {
    let bounds = (
        since.unwrap_or("-infinity"),
        until.unwrap_or("infinity"),
        row_limit.unwrap_or(DEFAULT_MESSAGE_LIMIT),
    );
    let (_, channel_id, window) = admit_read(token, channel_id, bounds, after_seq)?;
    let plans = if fold.unwrap_or(false) { fold::FOLDED } else { UNFOLDED };
    let page = read_window(channel_id, &window, plans)?;
    commit::durable_reads()?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_bounded() {
        assert_eq!(valid_client_id("a-17").unwrap(), "a-17");
        assert!(valid_client_id(&"é".repeat(64)).is_ok(), "64 characters, not bytes");
        for bad in ["", &"x".repeat(65), "a\nb", "\u{0}"] {
            assert_eq!(valid_client_id(bad).unwrap_err().sqlstate_code(), "22023", "{bad:?}");
        }
    }

    #[test]
    fn windows_check_their_bounds() {
        let window = Window::parse("-infinity", "2026-11-22T14:42:24Z", 20, Some(3)).unwrap();
        assert_eq!(window.since, Bound::NegativeInfinity);
        assert_eq!(window.after_seq, Some(3));
        for (since, until, limit, after, field) in [
            ("yesterday", "infinity", 20, None, "since"),
            ("-infinity", "2026-11-22", 20, None, "until"),
            ("-infinity", "infinity", 0, None, "limit"),
            ("-infinity", "infinity", 1001, None, "limit"),
            ("-infinity", "infinity", 20, Some(-1), "afterSeq"),
        ] {
            let error = Window::parse(since, until, limit, after).unwrap_err();
            assert_eq!(error.sqlstate_code(), "22023");
            assert!(error.to_string().starts_with(field), "{error}");
        }
    }
}

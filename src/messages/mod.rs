//! Messages: each channel's ordered history, and the windows clients read it through.
//!
//! Ordering by construction: a send bumps its channel's counter row (`last_seq`, `last_at`) in the
//! sending transaction. The row lock serializes the writers of one channel until they commit, so
//! commit order is `seq` order and no reader can see seq N+1 before seq N. `createdAt` comes from
//! the same row, strictly increasing (`greatest(clock_timestamp(), last_at + 1µs)`), so a client
//! paging with `since = last createdAt` is as exact as one paging with `afterSeq = last seq`. A
//! global sequence or a bare `now()` would let a later-committing sender land behind a reader's
//! cursor, and that message would never be seen.

use crate::auth::{self, Caller, SYSTEM_USER};
use crate::channels::{self, valid_channel_id, Access};
use crate::db::{self, pg_uuid};
use crate::error::{required, HatchatError, Result, SqlResult};
use crate::jsonb::Jsonb;
use crate::notifications;
use crate::settings;
use crate::time::Bound;
use pgrx::prelude::*;
use uuid::Uuid;

mod batch;

/// The NOTIFY channel every hatchat listener LISTENs on.
pub const NOTIFY_CHANNEL: &str = "hatchat";
/// The most rows one page returns (messages or notifications).
pub const MAX_ROW_LIMIT: i32 = 1000;

/// Refuses a page size outside 1..MAX_ROW_LIMIT.
pub fn check_row_limit(row_limit: i32) -> Result<()> {
    if (1..=MAX_ROW_LIMIT).contains(&row_limit) {
        Ok(())
    } else {
        Err(HatchatError::invalid(format!("limit must be 1..{MAX_ROW_LIMIT}, got {row_limit}")))
    }
}

/// Appends to a live channel if `from` is a member (the system user always may); no row when the
/// channel is missing, expired, or `from` is not a member. The counter row update is the
/// serialization point described above; it also refreshes the channel's expiry. Returns the
/// answer and the channel's retention and notification settings.
const APPEND: &str = "\
    WITH counter AS ( \
        UPDATE hatchat.channels c \
           SET last_seq = last_seq + 1, \
               last_at = greatest(clock_timestamp(), last_at + interval '1 microsecond'), \
               expires_at = clock_timestamp() + ttl_seconds * interval '1 second' \
         WHERE c.id = $1 AND hatchat.is_live(c) \
           AND ($2 = '00000000-0000-0000-0000-000000000000'::uuid \
                OR EXISTS (SELECT 1 FROM hatchat.members m WHERE m.channel_id = $1 AND m.user_id = $2)) \
     RETURNING last_seq, last_at, max_messages, notify), \
    inserted AS ( \
        INSERT INTO hatchat.messages (channel_id, seq, created_at, from_user_id, payload) \
        SELECT $1, last_seq, last_at, $2, $3 FROM counter \
        RETURNING channel_id, seq, created_at, from_user_id) \
    SELECT i.seq, jsonb_build_object('channelId', i.channel_id, 'seq', i.seq, \
                                     'createdAt', hatchat.iso_time(i.created_at), 'fromUserId', i.from_user_id), \
           c.max_messages, c.notify \
      FROM inserted i, counter c";

/// A message appended, and what the channel's settings ask to follow it.
pub struct Appended {
    pub seq: i64,
    pub answer: Jsonb,
    pub max_messages: Option<i32>,
    pub notify: bool,
}

/// Appends one message (see `APPEND`) and applies what follows: capping, notifications (with
/// `push` attached to them, for room posts), and the NOTIFY when `announce`.
pub fn append(
    channel_id: &str,
    from: Uuid,
    payload: Jsonb,
    announce: bool,
    push: Option<Jsonb>,
) -> Result<Option<Appended>> {
    let appended = db::query(APPEND, &[channel_id.into(), pg_uuid(from).into(), payload.into()], |rows| {
        if rows.is_empty() {
            return Ok(None);
        }
        let row = rows.first();
        Ok(row.get::<i64>(1)?.zip(row.get::<Jsonb>(2)?).map(|(seq, answer)| -> Result<Appended> {
            Ok(Appended {
                seq,
                answer,
                max_messages: row.get::<i32>(3)?,
                notify: row.get::<bool>(4)?.unwrap_or(false),
            })
        }))
    })?;
    let Some(appended) = appended.transpose()? else { return Ok(None) };
    cap(channel_id, appended.seq, appended.max_messages)?;
    if appended.notify {
        notifications::fan_out(channel_id, appended.seq, push)?;
    }
    if announce {
        notify_channel(channel_id, Some(appended.seq));
    }
    Ok(Some(appended))
}

/// Keeps only the newest `max_messages` of a channel, `last_seq` being the newest. The messages
/// that remain keep their seqs: capping never reorders or renumbers.
pub fn cap(channel_id: &str, last_seq: i64, max_messages: Option<i32>) -> Result<()> {
    if let Some(max) = max_messages {
        db::execute(
            "DELETE FROM hatchat.messages WHERE channel_id = $1 AND seq <= $2",
            &[channel_id.into(), (last_seq - i64::from(max)).into()],
        )?;
    }
    Ok(())
}

/// Queues `NOTIFY hatchat, '{"channel": …, "seq": …}'`; Postgres delivers it at commit, so a
/// listener never hears of a message it cannot yet read. `seq: null` means "re-read: the channel
/// changed" (it was deleted). The payload stays far under NOTIFY's 8000 bytes: channel ids are at
/// most 200 characters.
pub fn notify_channel(channel_id: &str, seq: Option<i64>) {
    notify(&serde_json::json!({ "channel": channel_id, "seq": seq }).to_string());
}

/// Queues one NOTIFY on the hatchat channel.
pub fn notify(payload: &str) {
    // SAFETY: pg_notify(text, text) is called with two non-null text datums, as SQL would.
    unsafe {
        pgrx::direct_function_call_as_datum(
            pgrx::pg_sys::pg_notify,
            &[NOTIFY_CHANNEL.into_datum(), payload.into_datum()],
        );
    }
}

/// Posts a system message about `user` (`join`, `leave`) from the reserved system user, worded as
/// the seed words it; `event` and `userId` spare clients from parsing the sentence.
pub fn post_system(channel_id: &str, event: &str, user: Uuid) -> Result<()> {
    let sentence = match event {
        "join" => format!("user {user} has joined the channel"),
        "leave" => format!("user {user} has left the channel"),
        other => format!("user {user}: {other}"),
    };
    let payload = db::first::<Jsonb>(
        "SELECT jsonb_build_object('message', $1::text, 'event', $2::text, 'userId', $3::uuid)",
        &[sentence.into(), event.into(), pg_uuid(user).into()],
    )?
    .expect("a SELECT without FROM returns one row");
    append(channel_id, SYSTEM_USER, payload, true, None)?
        .ok_or_else(|| channels::channel_not_found(channel_id))?;
    Ok(())
}

/// Checks a payload's size and nesting from one rendering of it as text (what `octet_length(
/// payload::text)` measures): over `hatchat.max_payload_bytes` is 54000, deeper than
/// `hatchat.max_json_depth` 22023.
/// Returns that text, for a caller that reads the payload's fields too (room posts).
pub fn check_payload(payload: &Jsonb) -> Result<String> {
    let text = payload.to_text();
    check_size(text.len())?;
    crate::jsonb::check_depth(&text)?;
    Ok(text)
}

/// A payload given as JSON text, converted as `text::jsonb` would convert it, except that a text
/// jsonb cannot hold is this call's own error (PostgreSQL's SQLSTATE and message), never the
/// statement's: one bad item of a batch then fails only itself. Nesting is checked first, in Rust,
/// so PostgreSQL's recursive parser never meets a 20,000-deep array (54001, an internal error).
pub fn payload_from_text(text: &str) -> Result<Jsonb> {
    crate::jsonb::check_depth(text)?;
    convert_refusably(text)
}

/// `jsonb_in` in an internal subtransaction, as PL/pgSQL runs a block with an EXCEPTION clause.
///
/// Why a subtransaction rather than a bare `PgTryBuilder` catch: PostgreSQL allows recovering
/// from an ERROR only by aborting a (sub)transaction, which releases whatever the failed code held
/// (locks, buffer pins, memory, resource owners). `jsonb_in` happens to hold none of those today,
/// but that is an implementation detail of PostgreSQL, not a promise; pgrx's docs leave the
/// clean-up to the catcher. A subtransaction that writes nothing gets no transaction id, costs a
/// few microseconds and never overflows the subxid cache.
///
/// Only data exceptions (class 22: bad escapes, bad syntax, numbers out of range) and program
/// limits (class 54: a string too long for jsonb) become the item's error; anything else (a query
/// cancel, out of memory, a bug) is raised again after the rollback, as an uncaught error would be.
fn convert_refusably(text: &str) -> Result<Jsonb> {
    use pgrx::pg_sys::panic::CaughtError;
    use pgrx::PgTryBuilder;
    // SAFETY: the sequence PL/pgSQL's exec_stmt_block uses. The value is allocated in the caller's
    // memory context, which outlives the subtransaction; context and resource owner are restored
    // on both paths; the error state is flushed (by pgrx's FFI guard and PgTryBuilder) before the
    // rollback. No SPI connection is open here.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let outcome = PgTryBuilder::new(|| Ok(Jsonb::from_text(text)))
            .catch_others(Err::<Result<Jsonb>, CaughtError>)
            .execute();
        match outcome {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        match outcome {
            Ok(converted) => converted,
            Err(CaughtError::PostgresError(report))
                if matches!(&crate::error::sqlstate_text(report.sql_error_code())[..2], "22" | "54") =>
            {
                let sqlstate = report.sql_error_code();
                Err(HatchatError::Refused {
                    sqlstate,
                    code: crate::error::sqlstate_text(sqlstate),
                    message: report.message().to_string(),
                    detail: report.detail().map(str::to_string),
                })
            }
            Err(other) => other.rethrow(),
        }
    }
}

fn check_size(size: usize) -> Result<()> {
    let limit = settings::max_payload_bytes();
    if size > limit {
        return Err(HatchatError::PayloadTooLarge { size, limit });
    }
    Ok(())
}

/// What a muted sender is answered: the usual shape, but nothing was stored (`seq` null).
pub fn muted_answer(channel_id: &str, sender: Uuid) -> Result<String> {
    Ok(serde_json::json!({"channelId": channel_id, "seq": null, "createdAt": null, "fromUserId": sender})
        .to_string())
}

/// Sends `payload` (any JSON value) to a channel the caller is a member of.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn send_message(token: Option<&str>, channel_id: Option<&str>, payload: Option<Jsonb>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    caller.may_post()?;
    let channel_id = valid_channel_id(required(channel_id, "channelId")?)?;
    Ok(send_checked(&caller, channel_id, required(payload, "payload")?)?)
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
) -> SqlResult<Jsonb> {
    // Converted first, where the cast would be: the checks below are `send_message`'s, in order.
    let payload = payload_text.map(payload_from_text).transpose()?;
    let caller = auth::authenticate(token)?;
    caller.may_post()?;
    let channel_id = valid_channel_id(required(channel_id, "channelId")?)?;
    Ok(send_checked(&caller, channel_id, required(payload, "payload")?)?)
}

/// The rest of a send once the sender and channel id are checked: the payload's limits, then
/// membership (a muted sender is answered, nothing stored), then the append.
fn send_checked(caller: &Caller, channel_id: &str, payload: Jsonb) -> Result<Jsonb> {
    check_payload(&payload)?;
    if caller.is_muted() {
        Access::load(channel_id, caller)?.require_member()?;
        return Jsonb::from_text(&muted_answer(channel_id, caller.id())?);
    }
    if let Some(sent) = append(channel_id, caller.id(), payload, settings::sends_notify(), None)? {
        return Ok(sent.answer);
    }
    Err(why_not_appended(channel_id, caller))
}

/// An append bumped no counter: the channel is missing or the sender is not a member.
fn why_not_appended(channel_id: &str, sender: &Caller) -> HatchatError {
    match Access::load(channel_id, sender).and_then(|access| access.require_member()) {
        Err(error) => error,
        // A member, yet no row: the channel was deleted between the two statements.
        Ok(()) => channels::channel_not_found(channel_id),
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
        check_row_limit(row_limit)?;
        if after_seq.is_some_and(|seq| seq < 0) {
            return Err(HatchatError::invalid("afterSeq must be 0 or more"));
        }
        Ok(Self { since: bound(since, "since")?, until: bound(until, "until")?, row_limit, after_seq })
    }
}

/// Both plans read the window in `seq` order (which is `createdAt` order); each walks the index
/// that starts nearest the cursor it was given, so a deep cursor does not scan old history.
const WINDOW_BY_SEQ: &str = "\
    SELECT coalesce(jsonb_agg(w.message ORDER BY w.seq), '[]'::jsonb) \
      FROM (SELECT m.seq, hatchat.message_json(m, u.username) AS message \
              FROM hatchat.messages m LEFT JOIN hatchat.users u ON u.id = m.from_user_id \
             WHERE m.channel_id = $1 AND m.seq > $5 \
               AND m.created_at > $2::timestamptz AND m.created_at < $3::timestamptz \
             ORDER BY m.seq LIMIT $4) w";
const WINDOW_BY_TIME: &str = "\
    SELECT coalesce(jsonb_agg(w.message ORDER BY w.seq), '[]'::jsonb) \
      FROM (SELECT m.seq, hatchat.message_json(m, u.username) AS message \
              FROM hatchat.messages m LEFT JOIN hatchat.users u ON u.id = m.from_user_id \
             WHERE m.channel_id = $1 \
               AND m.created_at > $2::timestamptz AND m.created_at < $3::timestamptz \
             ORDER BY m.created_at LIMIT $4) w";

pub fn read_window(channel_id: &str, window: &Window) -> Result<Jsonb> {
    let since = window.since.to_sql_literal();
    let until = window.until.to_sql_literal();
    let messages = match window.after_seq {
        Some(after_seq) => db::first::<Jsonb>(
            WINDOW_BY_SEQ,
            &[
                channel_id.into(),
                since.as_str().into(),
                until.as_str().into(),
                i64::from(window.row_limit).into(),
                after_seq.into(),
            ],
        )?,
        None => db::first::<Jsonb>(
            WINDOW_BY_TIME,
            &[
                channel_id.into(),
                since.as_str().into(),
                until.as_str().into(),
                i64::from(window.row_limit).into(),
            ],
        )?,
    };
    Ok(messages.expect("an aggregate returns one row"))
}

/// Messages of a channel the caller is a member of, oldest first: `since` and `until` are
/// exclusive bounds on `createdAt`, `after_seq` an exact cursor, `row_limit` 1..1000.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn get_messages(
    token: Option<&str>,
    channel_id: Option<&str>,
    since: default!(Option<&str>, "'-infinity'"),
    until: default!(Option<&str>, "'infinity'"),
    row_limit: default!(Option<i32>, 20),
    after_seq: default!(Option<i64>, "NULL"),
) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    let channel_id = valid_channel_id(required(channel_id, "channelId")?)?;
    let window = Window::parse(
        since.unwrap_or("-infinity"),
        until.unwrap_or("infinity"),
        row_limit.unwrap_or(20),
        after_seq,
    )?;
    Access::load(channel_id, &caller)?.require_member()?;
    Ok(read_window(channel_id, &window)?)
}

#[cfg(test)]
mod tests {
    use super::*;

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

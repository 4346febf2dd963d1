//! Reading one channel's window once for many readers: what a gateway's live streams (SSE,
//! WebSocket, long-polls) share on every wake-up, instead of one `get_messages` per reader.
//!
//! `channel_window` trusts the user ids it is given (the gateway verified each one's token when
//! its stream started, through `stream_caller`), so only the gateway's role may call it: EXECUTE
//! is revoked from PUBLIC and granted to `hatchat_gateway` alone. Membership is still decided
//! here, per user, in the same snapshot as the messages.

use crate::access::valid_channel_id;
use crate::auth::{self, Caller};
use crate::commit;
use crate::db::{self, Jsonb};
use crate::error::{item_answers, required, HatchatError, Result, SqlResult};
use crate::limits;
use crate::messages::admit_read;
use hatchat_wire::api::StreamItem;
use pgrx::prelude::*;

/// One statement, so the messages, the members and the bounds come from one snapshot: a member
/// removed before seq N is reported gone in the same answer that holds N. The system user (nil
/// uuid) reads every live channel, as it does through `get_messages`. No row when the channel is
/// missing or expired (`GONE` answers then): driven by the channel's own row, the statement reads
/// one channel's shard, so Citus runs it on that shard's node.
const CHANNEL_WINDOW: &str = "\
    SELECT jsonb_build_object( \
        'live', true, \
        'messages', ( \
            SELECT coalesce(jsonb_agg(w.message ORDER BY w.seq), '[]'::jsonb) \
              FROM (SELECT m.seq, hatchat.message_json(m.seq, m.created_at, m.from_user_id, u.username, m.payload, \
                                                       m.kind, m.target, m.client_id) AS message \
                      FROM hatchat.messages m LEFT JOIN hatchat.users u ON u.id = m.from_user_id \
                     WHERE m.channel_id = $1 AND m.seq > $2 \
                     ORDER BY m.seq LIMIT $3) w), \
        'members', ( \
            SELECT coalesce(jsonb_agg(DISTINCT r.id), '[]'::jsonb) FROM unnest($4::uuid[]) r(id) \
             WHERE r.id = '00000000-0000-0000-0000-000000000000'::uuid \
                OR EXISTS (SELECT 1 FROM hatchat.members m WHERE m.channel_id = $1 AND m.user_id = r.id)), \
        'oldestSeq', (SELECT min(m.seq) FROM hatchat.messages m WHERE m.channel_id = $1), \
        'lastSeq', c.last_seq) \
      FROM hatchat.channels c WHERE c.id = $1 AND hatchat.is_live(c.expires_at)";

/// The answer for a missing or expired channel: no messages, no members, no last seq.
const GONE: &str = "\
    SELECT jsonb_build_object('live', false, 'messages', '[]'::jsonb, 'members', '[]'::jsonb, \
                              'oldestSeq', (SELECT min(m.seq) FROM hatchat.messages m WHERE m.channel_id = $1), \
                              'lastSeq', NULL)";

/// The most users one call may ask about: a gateway asks about the readers of one channel.
const MAX_USERS: usize = 100_000;

/// `{"live", "messages" (as get_messages returns them, seq > after_seq, at most row_limit),
/// "members" (those of user_ids who may read the channel now), "oldestSeq" (the oldest message
/// still held, null when none), "lastSeq"}`. For the gateway's role only (see the module doc).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn channel_window(
    channel_id: Option<&str>,
    after_seq: Option<i64>,
    row_limit: Option<i32>,
    user_ids: Option<Vec<Option<pgrx::Uuid>>>,
) -> SqlResult<Jsonb> {
    let channel_id = valid_channel_id(required(channel_id, "channelId")?)?;
    let after_seq = after_seq.unwrap_or(0);
    if after_seq < 0 {
        return Err(HatchatError::invalid("afterSeq must be 0 or more").into());
    }
    let row_limit = row_limit.unwrap_or(1000);
    limits::check_row_limit(row_limit)?;
    let users: Vec<pgrx::Uuid> = user_ids.unwrap_or_default().into_iter().flatten().collect();
    if users.len() > MAX_USERS {
        return Err(HatchatError::invalid(format!("at most {MAX_USERS} user ids per call")).into());
    }
    let args = [channel_id.into(), after_seq.into(), i64::from(row_limit).into(), users.into()];
    let answer = match db::first::<Jsonb>(CHANNEL_WINDOW, &args)? {
        Some(answer) => answer,
        None => db::one::<Jsonb>(GONE, &[channel_id.into()])?,
    };
    commit::durable_reads()?;
    Ok(answer)
}

/// `{"userId", "expiresAt"}` for a token: who it speaks for (verified as every call does) and
/// when it stops being valid (null for the server secret), so a stream can end when it expires.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn stream_caller(token: Option<&str>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    Ok(Jsonb::from_text(&caller_json(&caller, token)?.to_string())?)
}

fn caller_json(caller: &Caller, token: Option<&str>) -> Result<serde_json::Value> {
    let expires_at = match caller {
        Caller::System => None,
        Caller::User(_) => Some(auth::expires_at(token.unwrap_or_default())?.to_string()),
    };
    Ok(serde_json::json!({"userId": caller.id().to_string(), "expiresAt": expires_at}))
}

/// What a stream of `channel_id` after `after_seq` checks as it opens, in one call: `get_messages(
/// token, channel_id, after_seq => after_seq, row_limit => 1)`'s checks and errors, in its order,
/// then `{"backlog", "caller"}`: whether a message follows `after_seq`, and `stream_caller`'s
/// answer. One function and one token verification where a reconnect storm made two of each. For
/// the gateway's role only, as `channel_window`; `open_streams` checks many at once.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn open_stream(token: Option<&str>, channel_id: Option<&str>, after_seq: Option<i64>) -> SqlResult<Jsonb> {
    let answer = opening(token, channel_id, after_seq)?;
    commit::durable_reads()?;
    Ok(Jsonb::from_text(&answer.to_string())?)
}

/// Whether a message follows a stream's position: one index probe, whatever the plan, where
/// building the first message's answer cost a window read per opening.
const BACKLOG: &str =
    "SELECT EXISTS (SELECT 1 FROM hatchat.messages m WHERE m.channel_id = $1 AND m.seq > $2)";

/// The most streams one `open_streams` call opens.
const MAX_OPENS: usize = 1000;

/// Opens many streams in one call (a gateway's storm of reconnects): for each item `{token,
/// channelId, afterSeq}`, what `open_stream` answers, or `{"error": {sqlstate, message, detail?}}`
/// with the error it gives that opening alone. An item without `channelId` is a connection that
/// has no channel yet (a WebSocket, a notification feed): it answers `{"caller"}`, what
/// `stream_caller` answers. One transaction and one round trip for the lot. For the gateway's
/// role only.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn open_streams(items: Option<&str>) -> SqlResult<Jsonb> {
    let items: Vec<StreamItem> = serde_json::from_str(required(items, "items")?)
        .map_err(|e| HatchatError::invalid(format!("items must be [{{token, channelId, afterSeq}}]: {e}")))?;
    if items.len() > MAX_OPENS {
        return Err(HatchatError::invalid(format!("at most {MAX_OPENS} streams per call")).into());
    }
    let answers = item_answers(items.iter().map(|item| {
        let token = item.token.as_deref();
        let answer = match item.channel_id.as_deref() {
            Some(channel_id) => opening(token, Some(channel_id), item.after_seq),
            None => connecting(token),
        };
        answer.map(|answer| answer.to_string())
    }));
    commit::durable_reads()?;
    Ok(Jsonb::from_text(&answers)?)
}

/// One opening: `get_messages(token, channel_id, after_seq => after_seq, row_limit => 1)`'s checks,
/// then whether a message follows and whom the token speaks for.
fn opening(
    token: Option<&str>,
    channel_id: Option<&str>,
    after_seq: Option<i64>,
) -> Result<serde_json::Value> {
    let (caller, channel_id, window) =
        admit_read(token, channel_id, ("-infinity", "infinity", 1), after_seq)?;
    let backlog = match window.after_seq {
        Some(after_seq) => db::one::<bool>(BACKLOG, &[channel_id.into(), after_seq.into()])?,
        None => false,
    };
    Ok(serde_json::json!({"backlog": backlog, "caller": caller_json(&caller, token)?}))
}

/// A connection with no channel yet: whom its token speaks for.
fn connecting(token: Option<&str>) -> Result<serde_json::Value> {
    let caller = auth::authenticate(token)?;
    Ok(serde_json::json!({"caller": caller_json(&caller, token)?}))
}

// hatchat_gateway is created with the other roles, in sql/schema.sql.
extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION hatchat.channel_window(text, bigint, integer, uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.channel_window(text, bigint, integer, uuid[]) TO hatchat_gateway;
REVOKE EXECUTE ON FUNCTION hatchat.open_stream(text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.open_stream(text, text, bigint) TO hatchat_gateway;
REVOKE EXECUTE ON FUNCTION hatchat.open_streams(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.open_streams(text) TO hatchat_gateway;
"#,
    name = "channel_window_grants",
    requires = [channel_window, open_stream, open_streams]
);

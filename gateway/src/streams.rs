//! What every live stream (SSE, WebSocket subscription, shared long-poll) does before it reads:
//! the database checks the token and the channel exactly as `get_messages` does (so a stream
//! refuses exactly what a read refuses, with the same error), and says whose the token is and
//! until when, which is what the shared reads check membership for and when the stream ends.

use crate::db;
use crate::error::ApiError;
use crate::fanout::{Interest, Reader};
use crate::long_poll::admit;
use crate::poll_quota::PollPermit;
use crate::state::AppState;
use serde::Deserialize;
use std::time::Duration;
use tokio::time::Instant;

/// The user a verified token speaks for, and when it expires (never, for the server secret).
pub struct StreamCaller {
    pub user: String,
    pub expires: Option<Instant>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallerJson {
    user_id: String,
    expires_at: Option<String>,
}

/// Asks the database whose `token` is (`hatchat.stream_caller`: 401 for a bad token).
pub async fn caller_of(app: &AppState, token: &Option<String>) -> Result<StreamCaller, ApiError> {
    let text = db::call_json(&app.pool, "SELECT hatchat.stream_caller($1)::text", &[token]).await?;
    let caller: CallerJson = serde_json::from_str(&text)
        .map_err(|e| ApiError::internal(format!("stream_caller answered unexpected JSON: {e}")))?;
    Ok(StreamCaller { user: caller.user_id, expires: caller.expires_at.as_deref().map(instant_of) })
}

/// The monotonic instant of a wall-clock time the database wrote (already passed: now).
fn instant_of(iso: &str) -> Instant {
    let left = iso
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|at| Duration::try_from(at.duration_since(jiff::Timestamp::now())).ok())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

/// A channel's reader, counted against its user's share of waiting reads until dropped.
pub struct ChannelStream {
    pub reader: Reader,
    pub permit: PollPermit,
}

/// Checks that `token` may read `channel` after `after_seq` (as one `get_messages` call would),
/// then opens a reader that catches up from there and follows the channel live. Each stream
/// counts against the user's long-polls (`--max-polls-per-user`): a stream costs what a waiting
/// long-poll costs, and without a bound one client could open any number.
pub async fn open_channel(
    app: &AppState,
    token: &Option<String>,
    channel: &str,
    after_seq: i64,
) -> Result<ChannelStream, ApiError> {
    let check = "SELECT hatchat.get_messages($1, $2, NULL, NULL, 1, $3)::text";
    db::call_json(&app.pool, check, &[token, &channel, &after_seq]).await?;
    let caller = caller_of(app, token).await?;
    let permit = admit(&app.polls, &caller.user)?;
    let reader = app.fanout.open(Interest {
        channel: channel.to_string(),
        user: caller.user,
        after_seq,
        expires: caller.expires,
        buffer: app.streams.buffer,
    });
    Ok(ChannelStream { reader, permit })
}

/// Startup check: live streams and long-polls read through `hatchat.channel_window`, which only
/// `hatchat_gateway` may call. A login that is neither a superuser nor an admin runs requests as
/// itself, and then needs that role granted; say so now rather than refuse every stream later.
pub async fn check_window_access(pool: &deadpool_postgres::Pool) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| format!("cannot connect to the database: {e}"))?;
    let sql =
        "SELECT has_function_privilege('hatchat.channel_window(text, bigint, integer, uuid[])', 'EXECUTE'), \
                      current_user::text";
    let row = client.query_one(sql, &[]).await.map_err(|e| e.to_string())?;
    let (allowed, role): (bool, String) = (row.get(0), row.get(1));
    if allowed {
        return Ok(());
    }
    Err(format!(
        "role {role} may not call hatchat.channel_window, which live streams and long-polls read \
         through: GRANT hatchat_gateway TO {role}"
    ))
}

//! Notifications: when a message is posted in a channel that notifies (rooms do), every other
//! member gets one in their own ordered stream — unless they blocked the sender, are muted, or
//! disabled chat (then the sender is told, with a `chat-disabled` notification). Shape as in the
//! seed: `{from: "chat/v1", to, type: "message", data: {roomId, from, timestamp, type, message},
//! push?}`.
//!
//! A user's stream is ordered by a per-user counter bumped in the posting transaction, for the
//! reason a channel's seq is: a reader paging with `after_id` must never miss one that commits
//! late. Counters are bumped in user-id order, so concurrent posts never deadlock each other.

use crate::auth::{self, secret};
use crate::db::{self, pg_uuid};
use crate::error::{HatchatError, Result, SqlResult};
use crate::jsonb::Jsonb;
use crate::messages;
use pgrx::prelude::*;

/// The notifications of message ($1, $2), with `push` ($3) attached to the message ones.
const FAN_OUT: &str = "\
    WITH msg AS ( \
        SELECT m.channel_id, m.from_user_id, \
               CASE WHEN m.from_user_id = '00000000-0000-0000-0000-000000000000' THEN '$$' ELSE s.username END AS sender, \
               CASE WHEN c.type IS NOT NULL THEN m.payload || jsonb_build_object('roomId', m.channel_id) \
                    ELSE jsonb_build_object('roomId', m.channel_id, \
                                            'from', CASE WHEN m.from_user_id = '00000000-0000-0000-0000-000000000000' \
                                                         THEN '$$' ELSE s.username END, \
                                            'timestamp', floor(extract(epoch FROM m.created_at) * 1000)::bigint, \
                                            'type', 'message', 'message', m.payload) END AS data \
          FROM hatchat.messages m \
          JOIN hatchat.channels c ON c.id = m.channel_id \
          LEFT JOIN hatchat.users s ON s.id = m.from_user_id \
         WHERE m.channel_id = $1 AND m.seq = $2), \
    receivers AS ( \
        SELECT r.id, r.username, r.chat_disabled, msg.from_user_id, msg.sender, msg.data \
          FROM msg \
          JOIN hatchat.members mb ON mb.channel_id = msg.channel_id \
          JOIN hatchat.users r ON r.id = mb.user_id \
         WHERE r.id <> msg.from_user_id AND NOT r.muted \
           AND NOT EXISTS (SELECT 1 FROM hatchat.blocks b \
                            WHERE b.user_id = r.id AND b.blocked_user_id = msg.from_user_id)), \
    targets AS ( \
        SELECT id AS user_id, \
               jsonb_build_object('from', 'chat/v1', 'to', username, 'type', 'message', 'data', data) \
               || CASE WHEN $3::jsonb IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('push', $3::jsonb) END AS body \
          FROM receivers WHERE NOT chat_disabled \
        UNION ALL \
        SELECT from_user_id, jsonb_build_object('from', 'chat/v1', 'to', sender, 'type', 'chat-disabled', \
                                                'data', jsonb_build_object('receiver', username)) \
          FROM receivers WHERE chat_disabled AND from_user_id <> '00000000-0000-0000-0000-000000000000'), \
    counts AS (SELECT user_id, count(*) AS n FROM targets GROUP BY user_id), \
    bumped AS ( \
        INSERT INTO hatchat.inboxes AS i (user_id, last_id) \
        SELECT user_id, n FROM counts ORDER BY user_id \
        ON CONFLICT (user_id) DO UPDATE SET last_id = i.last_id + EXCLUDED.last_id \
        RETURNING i.user_id, i.last_id) \
    INSERT INTO hatchat.notifications (user_id, id, body) \
    SELECT t.user_id, b.last_id - count(*) OVER w + row_number() OVER w, t.body \
      FROM targets t JOIN bumped b ON b.user_id = t.user_id \
    WINDOW w AS (PARTITION BY t.user_id) \
    RETURNING user_id";

/// Creates the notifications of message `seq` of `channel_id` and queues a NOTIFY naming the
/// users whose streams grew (delivered at commit).
pub fn fan_out(channel_id: &str, seq: i64, push: Option<Jsonb>) -> Result<()> {
    let mut users: Vec<String> = db::query(FAN_OUT, &[channel_id.into(), seq.into(), push.into()], |rows| {
        rows.map(|row| Ok(row.get::<pgrx::Uuid>(1)?.map(|u| u.to_string()).unwrap_or_default())).collect()
    })?;
    users.sort();
    users.dedup();
    // 100 uuids a NOTIFY: about 4 kB, well under PostgreSQL's 8000-byte payload limit.
    for chunk in users.chunks(100) {
        messages::notify(&serde_json::json!({ "users": chunk }).to_string());
    }
    Ok(())
}

/// The caller's notifications after `after_id`, oldest first: `[{id, createdAt, from, to, type,
/// data, push?}]`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn get_notifications(
    token: Option<&str>,
    after_id: default!(Option<i64>, 0),
    row_limit: default!(Option<i32>, 50),
) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    let user = caller.user()?;
    let after_id = after_id.unwrap_or(0);
    let row_limit = row_limit.unwrap_or(50);
    if after_id < 0 {
        return Err(HatchatError::invalid("after must be 0 or more").into());
    }
    messages::check_row_limit(row_limit)?;
    let page = db::first::<Jsonb>(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('id', n.id, 'createdAt', hatchat.iso_time(n.created_at)) \
                                   || n.body ORDER BY n.id), '[]'::jsonb) \
           FROM (SELECT * FROM hatchat.notifications WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3) n",
        &[pg_uuid(user.id).into(), after_id.into(), i64::from(row_limit).into()],
    )?;
    Ok(page.expect("an aggregate returns one row"))
}

/// Forwarding is for the role that forwards (the gateway's, granted hatchat_forwarder): it reads
/// everyone's notifications.
fn require_forwarder() -> Result<()> {
    if secret::caller_has_role(c"hatchat_forwarder") || secret::caller_role_is_admin() {
        Ok(())
    } else {
        Err(HatchatError::Forbidden("only a role granted hatchat_forwarder may forward notifications".into()))
    }
}

/// The oldest notifications not yet forwarded: `[{userId, id, body}]`, each user's in order.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn notifications_to_forward(row_limit: default!(Option<i32>, 100)) -> SqlResult<Jsonb> {
    require_forwarder()?;
    let row_limit = row_limit.unwrap_or(100).clamp(1, messages::MAX_ROW_LIMIT);
    let page = db::first::<Jsonb>(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('userId', n.user_id, 'id', n.id, 'body', n.body) \
                                   ORDER BY n.created_at, n.user_id, n.id), '[]'::jsonb) \
           FROM (SELECT * FROM hatchat.notifications WHERE forwarded_at IS NULL \
                  ORDER BY created_at, user_id, id LIMIT $1) n",
        &[i64::from(row_limit).into()],
    )?;
    Ok(page.expect("an aggregate returns one row"))
}

/// Records that `user_id`'s notifications up to `up_to_id` were forwarded; how many were marked.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn mark_forwarded(user_id: Option<pgrx::Uuid>, up_to_id: Option<i64>) -> SqlResult<i32> {
    require_forwarder()?;
    let user_id = crate::error::required(user_id, "user_id")?;
    let up_to_id = crate::error::required(up_to_id, "up_to_id")?;
    let marked = db::execute(
        "UPDATE hatchat.notifications SET forwarded_at = now() \
          WHERE user_id = $1 AND id <= $2 AND forwarded_at IS NULL RETURNING id",
        &[user_id.into(), up_to_id.into()],
    )?;
    Ok(i32::try_from(marked).unwrap_or(i32::MAX))
}

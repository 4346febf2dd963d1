//! Notifications: when a message is posted in a channel that notifies (rooms do), every other
//! member gets one in their own ordered stream — unless they blocked the sender, are muted, or
//! disabled chat (then the sender is told, with a `chat-disabled` notification). Shape as in
//! ganomede-chat: `{from: "chat/v1", to, type: "message", data: {roomId, from, timestamp, type, message},
//! push?}`.
//!
//! A user's stream is ordered by a per-user counter bumped in the posting transaction, for the
//! reason a channel's seq is: a reader paging with `after_id` must never miss one that commits
//! late. Counters are bumped in user-id order, so concurrent posts never deadlock each other.
//! Each user keeps the newest `hatchat.max_notifications`; a purged channel takes its
//! notifications with it.
//!
//! Forwarding (the gateway's, to HATCHAT_NOTIFY_URL) is fair: users are taken by their oldest
//! waiting notification, a share of the batch each, so one user's backlog never holds up the
//! others; and a notification the receiver will not take is set aside as undeliverable, so the
//! user's next ones go on. Whoever touches a user's waiting notifications takes their inbox row
//! lock first (fan_out does, by bumping the counter), then the notifications: one lock order.

use crate::announce;
use crate::auth::{self, secret};
use crate::commit;
use crate::db::{self, pg_uuid, Jsonb};
use crate::error::{required, HatchatError, Result, SqlResult};
use crate::limits;
use crate::names;
use crate::placement::Placement;
use crate::settings;
use pgrx::prelude::*;

/// The notifications message ($1, $2) creates, as CTEs ending in `targets`: one row per
/// notification, `(receiver, user_id, sender, body)`, `receiver` being the member whose settings
/// decided it (a message notification goes to the receiver; a `chat-disabled` one goes back to the
/// sender), who is who may have blocked the sender. `push` ($3) is attached to the message ones;
/// the server secret posts as $4, the chat service is $5. `$blocks` is a condition on each
/// receiver `r` (a user) and the message `msg`, more than that they are not the sender and not
/// muted. Reads the channel's rows and the users (a reference table on Citus) only: each of its
/// tables is named by the channel id, so on a cluster Citus runs it on the channel's shard.
macro_rules! notification_targets {
    ($blocks:literal) => {
        concat!(
            "msg AS ( \
                SELECT m.channel_id, m.from_user_id, m.kind, m.target, \
                       CASE WHEN m.from_user_id = '00000000-0000-0000-0000-000000000000' THEN $4::text ELSE s.username END AS sender, \
                       CASE WHEN c.type IS NOT NULL THEN m.payload || jsonb_build_object('roomId', m.channel_id) \
                            ELSE jsonb_build_object('roomId', m.channel_id, \
                                                    'from', CASE WHEN m.from_user_id = '00000000-0000-0000-0000-000000000000' \
                                                                 THEN $4::text ELSE s.username END, \
                                                    'timestamp', floor(extract(epoch FROM m.created_at) * 1000)::bigint, \
                                                    'type', 'message', 'message', m.payload) END AS data \
                  FROM hatchat.messages m \
                  JOIN hatchat.channels c ON c.id = m.channel_id \
                  LEFT JOIN hatchat.users s ON s.id = m.from_user_id \
                 WHERE m.channel_id = $1 AND c.id = $1 AND m.seq = $2 AND (c.type IS NULL OR m.kind IS NULL)), \
            receivers AS ( \
                SELECT r.id, r.username, r.chat_disabled, msg.from_user_id, msg.sender, msg.data, msg.kind, msg.target \
                  FROM msg \
                  JOIN hatchat.members mb ON mb.channel_id = $1 \
                  JOIN hatchat.users r ON r.id = mb.user_id \
                 WHERE r.id <> msg.from_user_id AND NOT r.muted ",
            $blocks,
            "), \
            targets AS ( \
                SELECT id AS receiver, id AS user_id, from_user_id AS sender, \
                       jsonb_build_object('from', $5::text, 'to', username, 'type', 'message', 'data', data) \
                       || jsonb_strip_nulls(jsonb_build_object('event', kind, 'target', target)) \
                       || CASE WHEN $3::jsonb IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('push', $3::jsonb) END AS body \
                  FROM receivers WHERE NOT chat_disabled \
                UNION ALL \
                SELECT id, from_user_id, from_user_id, \
                       jsonb_build_object('from', $5::text, 'to', sender, 'type', 'chat-disabled', \
                                          'data', jsonb_build_object('receiver', username)) \
                  FROM receivers WHERE chat_disabled AND from_user_id <> '00000000-0000-0000-0000-000000000000')"
        )
    };
}

/// What bumps a user's notification counter (`i`, an inbox) by `EXCLUDED.last_id` when they have
/// an inbox already, after an `INSERT INTO hatchat.inboxes AS i (user_id, last_id, pending_since)`.
macro_rules! bump_inbox {
    () => {
        "ON CONFLICT (user_id) DO UPDATE SET last_id = i.last_id + EXCLUDED.last_id, \
                                            pending_since = coalesce(i.pending_since, EXCLUDED.pending_since)"
    };
}

mod per_user;

/// The notifications of message ($1, $2) (`notification_targets`, without those decided by a
/// receiver who blocked the sender); each user keeps the newest $6.
const FAN_OUT: &str = concat!(
    "WITH ",
    notification_targets!(
        "AND NOT EXISTS (SELECT 1 FROM hatchat.blocks b \
                          WHERE b.user_id = r.id AND b.blocked_user_id = msg.from_user_id)"
    ),
    ", \
    counts AS (SELECT user_id, count(*) AS n FROM targets GROUP BY user_id), \
    bumped AS ( \
        INSERT INTO hatchat.inboxes AS i (user_id, last_id, pending_since) \
        SELECT user_id, n, clock_timestamp() FROM counts ORDER BY user_id ",
    bump_inbox!(),
    " RETURNING i.user_id, i.last_id), \
    trimmed AS ( \
        DELETE FROM hatchat.notifications n USING bumped b \
         WHERE n.user_id = b.user_id AND n.id <= b.last_id - $6), \
    numbered AS ( \
        SELECT t.user_id, b.last_id - count(*) OVER w + row_number() OVER w AS id, b.last_id, t.body \
          FROM targets t JOIN bumped b ON b.user_id = t.user_id \
        WINDOW w AS (PARTITION BY t.user_id)) \
    INSERT INTO hatchat.notifications (user_id, id, body, channel_id, seq) \
    SELECT user_id, id, body, $1, $2 FROM numbered WHERE id > last_id - $6 \
    RETURNING user_id"
);

/// Creates the notifications of message `seq` of `channel_id` and queues a NOTIFY naming the
/// users whose streams grew (delivered at commit). Each of those users keeps only the newest
/// `hatchat.max_notifications`: older ones are deleted in the same statement (`trimmed` sees the
/// rows from before it; the new ones past the limit are never inserted), ids are never reused.
///
/// On one node (`Placement::fan_out` chooses): on Citus the statement cannot run (it writes the
/// inboxes of users on any shard in one statement), and `per_user::fan_out` does the same one user
/// at a time.
fn fan_out_in_one_statement(channel_id: &str, seq: i64, push: Option<Jsonb>) -> Result<()> {
    let args = [
        channel_id.into(),
        seq.into(),
        push.into(),
        names::SERVER_SECRET_NAME.into(),
        hatchat_wire::CHAT_SERVICE.into(),
        settings::MAX_NOTIFICATIONS.get().into(),
    ];
    announce::users(&db::column::<pgrx::Uuid>(FAN_OUT, &args)?)
}

impl Placement {
    /// Creates the notifications of message `seq` of `channel_id`: one statement for all its
    /// receivers on one node; on a cluster one receiver at a time, as the inboxes are sharded by
    /// user and a statement that writes several users' rows cannot be routed.
    pub fn fan_out(self, channel_id: &str, seq: i64, push: Option<Jsonb>) -> Result<()> {
        match self {
            Placement::OneNode => fan_out_in_one_statement(channel_id, seq, push),
            Placement::Sharded => per_user::fan_out(channel_id, seq, push),
        }
    }
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
    limits::check_row_limit(row_limit)?;
    let page = db::one::<Jsonb>(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('id', n.id, 'createdAt', hatchat.iso_time(n.created_at)) \
                                   || n.body ORDER BY n.id), '[]'::jsonb) \
           FROM (SELECT * FROM hatchat.notifications WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3) n",
        &[pg_uuid(user.id).into(), after_id.into(), i64::from(row_limit).into()],
    )?;
    commit::durable_reads()?;
    Ok(page)
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

/// Longest reason kept for an undeliverable notification, in characters.
pub const MAX_REASON_CHARS: i32 = 500;

/// The users waiting longest (but those in `$2`), at most `$1`, in forwarding order.
const WAITING: &str = "\
    SELECT i.user_id FROM hatchat.inboxes i \
     WHERE i.pending_since IS NOT NULL AND NOT (i.user_id = ANY($2)) \
     ORDER BY i.pending_since, i.user_id LIMIT $1";

/// The first `$2` notifications waiting to be forwarded of each of users `$1`, as JSON in the
/// users' order, and the users it found nothing for (their `pending_since` is stale). The lateral
/// subquery with its LIMIT is joined to the inboxes table itself, not to a list or a CTE: on Citus
/// it then runs on each user's shard (a LIMIT correlated with anything else cannot be pushed down).
const PICKED: &str = "\
    WITH picked AS ( \
        SELECT w.user_id, n.id, n.body FROM hatchat.inboxes w CROSS JOIN LATERAL ( \
               SELECT n.id, n.body FROM hatchat.notifications n \
                WHERE n.user_id = w.user_id AND n.forwarded_at IS NULL AND n.undeliverable_at IS NULL \
                ORDER BY n.id LIMIT $2) n \
         WHERE w.user_id = ANY($1)) \
    SELECT (SELECT coalesce(jsonb_agg(jsonb_build_object('userId', p.user_id, 'id', p.id, 'body', p.body) \
                                      ORDER BY array_position($1, p.user_id), p.id), '[]'::jsonb) \
              FROM picked p), \
           (SELECT coalesce(array_agg(u), '{}') FROM unnest($1) AS u \
             WHERE NOT EXISTS (SELECT 1 FROM picked p WHERE p.user_id = u))";

/// Notifications to forward: `[{userId, id, body}]`, each user's in id order. Fair: users are
/// taken by their oldest waiting notification (at most `row_limit` users), each with an equal
/// share of `row_limit`, so a user with a long backlog gets a share, never the whole batch.
/// `except_users` (the forwarder's users in backoff or in flight) are skipped, so users it cannot
/// serve now do not take the places of those it can. Reads two partial indexes, never all pending
/// notifications.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn notifications_to_forward(
    row_limit: default!(Option<i32>, 100),
    except_users: default!(Option<Vec<Option<pgrx::Uuid>>>, "NULL"),
) -> SqlResult<Jsonb> {
    require_forwarder()?;
    let row_limit = row_limit.unwrap_or(100).clamp(1, limits::MAX_ROW_LIMIT);
    let except: Vec<pgrx::Uuid> = except_users.unwrap_or_default().into_iter().flatten().collect();
    let waiting = db::column::<pgrx::Uuid>(WAITING, &[row_limit.into(), except.into()])?;
    // An equal share each, so one user's backlog never takes the whole batch.
    let share = i64::from(row_limit) / (waiting.len().max(1) as i64);
    let (batch, stale) = db::query(PICKED, &[waiting.into(), share.max(1).into()], |rows| {
        let row = rows.first();
        let batch = row.get::<Jsonb>(1)?.ok_or_else(|| HatchatError::Internal("no batch".into()))?;
        Ok((batch, row.get::<Vec<pgrx::Uuid>>(2)?.unwrap_or_default()))
    })?;
    // Their waiting notifications were deleted (a purge, or marked behind the API's back): left
    // as they are, enough of them would fill every batch with nobody.
    if !stale.is_empty() {
        lock_inboxes(&stale)?;
        refresh_pending(&stale)?;
    }
    commit::durable_reads()?;
    Ok(batch)
}

/// Locks the inbox rows of `users` (in user order, as fan_out does), so their notifications can
/// change without a concurrent fan_out slipping in between a change and `refresh_pending`.
/// One statement per user: Citus takes row locks only in single-shard queries.
fn lock_inboxes(users: &[pgrx::Uuid]) -> Result<()> {
    let mut sorted = users.to_vec();
    sorted.sort_unstable_by_key(|u| *u.as_bytes());
    sorted.dedup();
    for user in sorted {
        db::execute("SELECT 1 FROM hatchat.inboxes WHERE user_id = $1 FOR UPDATE", &[user.into()])?;
    }
    Ok(())
}

/// Sets `pending_since` of `users` from their oldest waiting notification. A statement of its own
/// (a fresh snapshot) after `lock_inboxes`: it sees every notification committed before the lock
/// was granted, so a user who still has one waiting is never dropped from forwarding.
fn refresh_pending(users: &[pgrx::Uuid]) -> Result<()> {
    db::execute(
        "UPDATE hatchat.inboxes i SET pending_since = \
                (SELECT n.created_at FROM hatchat.notifications n \
                  WHERE n.user_id = i.user_id AND n.forwarded_at IS NULL AND n.undeliverable_at IS NULL \
                  ORDER BY n.id LIMIT 1) \
          WHERE i.user_id = ANY($1)",
        &[users.to_vec().into()],
    )?;
    Ok(())
}

/// Records that `user_id`'s notifications up to `up_to_id` were forwarded; how many were marked
/// (those set aside as undeliverable are not).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn mark_forwarded(user_id: Option<pgrx::Uuid>, up_to_id: Option<i64>) -> SqlResult<i32> {
    require_forwarder()?;
    let user_id = required(user_id, "user_id")?;
    let up_to_id = required(up_to_id, "up_to_id")?;
    Ok(mark(
        user_id,
        "UPDATE hatchat.notifications SET forwarded_at = now() \
          WHERE user_id = $1 AND id <= $2 AND forwarded_at IS NULL AND undeliverable_at IS NULL RETURNING id",
        &[user_id.into(), up_to_id.into()],
    )?)
}

/// Marks some of `user_id`'s waiting notifications with `sql` (forwarded, or set aside), the
/// user's inbox locked first and its `pending_since` recomputed after; how many were marked.
fn mark(user_id: pgrx::Uuid, sql: &'static str, args: &[pgrx::datum::DatumWithOid<'_>]) -> Result<i32> {
    lock_inboxes(&[user_id])?;
    let marked = db::execute(sql, args)?;
    if marked > 0 {
        refresh_pending(&[user_id])?;
    }
    Ok(i32::try_from(marked).unwrap_or(i32::MAX))
}

/// Sets notification `id` of `user_id` aside as undeliverable, with `reason` (its first 500
/// characters: the forwarder quotes the receiver, and a long answer must not stop it from setting
/// the notification aside). It is no longer forwarded; the user's next ones are. How many were
/// marked: 1, or 0 when it was not waiting to be forwarded.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn mark_undeliverable(user_id: Option<pgrx::Uuid>, id: Option<i64>, reason: Option<&str>) -> SqlResult<i32> {
    require_forwarder()?;
    let user_id = required(user_id, "user_id")?;
    let id = required(id, "id")?;
    let reason = required(reason, "reason")?;
    Ok(mark(
        user_id,
        "UPDATE hatchat.notifications SET undeliverable_at = now(), undeliverable_reason = left($3, $4) \
          WHERE user_id = $1 AND id = $2 AND forwarded_at IS NULL AND undeliverable_at IS NULL RETURNING id",
        &[user_id.into(), id.into(), reason.into(), MAX_REASON_CHARS.into()],
    )?)
}

/// The notifications set aside as undeliverable, newest first: `[{userId, id, reason, at, body}]`.
/// For the forwarder and admins (they read everyone's).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn undeliverable_notifications(row_limit: default!(Option<i32>, 100)) -> SqlResult<Jsonb> {
    require_forwarder()?;
    let row_limit = row_limit.unwrap_or(100);
    limits::check_row_limit(row_limit)?;
    Ok(db::one::<Jsonb>(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('userId', n.user_id, 'id', n.id, \
                                                      'reason', n.undeliverable_reason, \
                                                      'at', hatchat.iso_time(n.undeliverable_at), 'body', n.body) \
                                   ORDER BY n.undeliverable_at DESC, n.user_id, n.id DESC), '[]'::jsonb) \
           FROM (SELECT * FROM hatchat.notifications WHERE undeliverable_at IS NOT NULL \
                  ORDER BY undeliverable_at DESC, user_id, id DESC LIMIT $1) n",
        &[i64::from(row_limit).into()],
    )?)
}

/// `{pending, undeliverable}`: how many notifications wait to be forwarded, and how many were set
/// aside. Counts the two partial indexes (index-only scans): the gateway calls it every few
/// seconds while it forwards, and shows the answer in /health. For the forwarder and admins.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn forwarding_status() -> SqlResult<Jsonb> {
    require_forwarder()?;
    Ok(db::one::<Jsonb>(
        "SELECT jsonb_build_object( \
                'pending', (SELECT count(*) FROM hatchat.notifications \
                             WHERE forwarded_at IS NULL AND undeliverable_at IS NULL), \
                'undeliverable', (SELECT count(*) FROM hatchat.notifications WHERE undeliverable_at IS NOT NULL))",
        &[],
    )?)
}

/// Erases the copies that notifications hold of message `seq` of `channel_id` and of its edits:
/// a delete reaches every copy, not only the channel's rows. Where the payload stood there is JSON
/// null, and a room post's `push` goes. Copies already forwarded to HATCHAT_NOTIFY_URL left
/// hatchat before the delete and are out of its reach.
pub fn erase(channel_id: &str, seq: i64) -> Result<()> {
    let seqs = db::column::<i64>(
        "SELECT $2::bigint UNION ALL \
         SELECT m.seq FROM hatchat.messages m WHERE m.channel_id = $1 AND m.kind = 'edit' AND m.target = $2",
        &[channel_id.into(), seq.into()],
    )?;
    // Their inboxes are locked first, as every writer of a user's notifications does.
    let users = db::column::<pgrx::Uuid>(
        "SELECT DISTINCT user_id FROM hatchat.notifications WHERE channel_id = $1 AND seq = ANY($2)",
        &[channel_id.into(), seqs.clone().into()],
    )?;
    if users.is_empty() {
        return Ok(());
    }
    lock_inboxes(&users)?;
    db::execute(
        "UPDATE hatchat.notifications SET body = jsonb_set(body, '{data,message}', 'null'::jsonb) - 'push' \
          WHERE channel_id = $1 AND seq = ANY($2) AND body->>'type' = 'message'",
        &[channel_id.into(), seqs.into()],
    )?;
    Ok(())
}

/// Deletes the notifications about `channels` (being purged), keeping their users' place in the
/// forwarding order right.
pub fn forget_channels(channels: &[String]) -> Result<()> {
    if channels.is_empty() {
        return Ok(());
    }
    let users = db::column::<pgrx::Uuid>(
        "SELECT DISTINCT user_id FROM hatchat.notifications WHERE channel_id = ANY($1)",
        &[channels.to_vec().into()],
    )?;
    if users.is_empty() {
        return Ok(());
    }
    lock_inboxes(&users)?;
    db::execute("DELETE FROM hatchat.notifications WHERE channel_id = ANY($1)", &[channels.to_vec().into()])?;
    refresh_pending(&users)
}

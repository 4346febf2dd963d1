//! Read positions and read receipts. A member's read position (`readSeq`) only moves forward: by
//! `mark_read`, or to their own post when they post. Unread counts are computed when read, from
//! running counts (`channels.counted`, `members.read_count`; see schema.sql's `hatchat.unread`),
//! so a send stays O(1) whatever the number of members.

use crate::access::{valid_channel_id, Access};
use crate::auth;
use crate::db::{self, pg_uuid, Jsonb};
use crate::error::{required, HatchatError, SqlResult};
use pgrx::prelude::*;

/// Moves the caller's read position to `$3` unless it is already there or beyond. `read_count`
/// is the channel's count as of `$3`: from the last row at or before it, else (retention removed
/// those) from the first row after it less that row's own count, else the channel's.
const MARK_READ: &str = "\
    UPDATE hatchat.members m \
       SET read_seq = $3, \
           read_count = coalesce( \
               (SELECT r.counted FROM hatchat.messages r WHERE r.channel_id = $1 AND r.seq <= $3 \
                 ORDER BY r.seq DESC LIMIT 1), \
               (SELECT r.counted - (r.kind IS NULL AND r.from_user_id <> '00000000-0000-0000-0000-000000000000')::int \
                  FROM hatchat.messages r WHERE r.channel_id = $1 AND r.seq > $3 ORDER BY r.seq LIMIT 1), \
               (SELECT c.counted FROM hatchat.channels c WHERE c.id = $1)) \
     WHERE m.channel_id = $1 AND m.user_id = $2 AND m.read_seq < $3";

/// The caller's read state in a channel, after the update (a statement of its own sees it).
const READ_STATE: &str = "\
    SELECT jsonb_build_object('channelId', c.id) \
           || hatchat.read_state_json(c.last_seq, m.read_seq, c.counted, m.read_count, \
                    (SELECT count(*) FROM hatchat.messages d \
                      WHERE d.channel_id = c.id AND d.kind = 'delete' AND d.target > m.read_seq)) \
      FROM hatchat.channels c JOIN hatchat.members m ON m.channel_id = c.id AND m.user_id = $2 \
     WHERE c.id = $1";

/// Records that the caller has read channel `channel_id` up to `seq` (0..lastSeq); a position
/// already further on stays. The answer: `{channelId, lastSeq, readSeq, unread}`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn mark_read(token: Option<&str>, channel_id: Option<&str>, seq: Option<i64>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    // A read position is a write (it moves what others see as read), so a ban refuses it.
    caller.may_write()?;
    let user = caller.user()?.id;
    let channel_id = valid_channel_id(required(channel_id, "channelId")?)?;
    let seq = required(seq, "seq")?;
    Access::load(channel_id, &caller)?.require_member()?;
    let last =
        db::first::<i64>("SELECT c.last_seq FROM hatchat.channels c WHERE c.id = $1", &[channel_id.into()])?
            .unwrap_or(0);
    // Both answers below name lastSeq: only once what it counts is durable, as every read.
    crate::commit::durable_reads()?;
    if !(0..=last).contains(&seq) {
        return Err(HatchatError::invalid(format!(
            "seq must be 0..{last} (the channel's lastSeq), got {seq}"
        ))
        .into());
    }
    db::execute(MARK_READ, &[channel_id.into(), pg_uuid(user).into(), seq.into()])?;
    let state = db::first::<Jsonb>(READ_STATE, &[channel_id.into(), pg_uuid(user).into()])?;
    Ok(state.ok_or_else(|| crate::access::members_only(channel_id))?)
}

/// Whether other members see the caller's read position in `get_channel` (they do by default).
/// `self_id`, when given (the gateway's `/users/:id/...`), must be the caller.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn set_read_receipts(
    token: Option<&str>,
    enabled: Option<bool>,
    self_id: default!(Option<pgrx::Uuid>, "NULL"),
) -> SqlResult<Jsonb> {
    let user = auth::require_self(token, self_id)?.id;
    let enabled = required(enabled, "enabled")?;
    let answer = db::first::<Jsonb>(
        "WITH w AS (UPDATE hatchat.users u SET read_receipts = $2 WHERE u.id = $1 RETURNING u.id, u.read_receipts) \
         SELECT jsonb_build_object('userId', w.id, 'readReceipts', w.read_receipts) FROM w",
        &[pg_uuid(user).into(), enabled.into()],
    )?;
    Ok(answer.ok_or_else(HatchatError::unauthenticated)?)
}

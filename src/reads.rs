//! Read positions and unread counts: how far each member has read a channel (`mark_read`), how
//! many messages wait for them (`unread`), and whether others may see their position (read
//! receipts).
//!
//! `members.unread` is exact, not estimated: the messages with `seq > read_seq` that still exist,
//! sent neither by the member nor by the system. It is kept as messages arrive (a send adds one to
//! every other member's count), as capping deletes them (each deleted message still unread for a
//! member takes one off) and as the member reads (the messages read take theirs off). Each of these
//! runs under the channel's counter row lock — sends and capping hold it anyway, joins and
//! `mark_read` take it first — so the counts of one channel change one transaction at a time and
//! every statement sees the others' committed work: no count can drift under concurrency. A
//! channel list then reads one row per channel instead of counting messages.

use crate::access::{valid_channel_id, Access};
use crate::auth::{self, SYSTEM_USER};
use crate::db::{self, pg_uuid};
use crate::error::{required, HatchatError, Result, SqlResult};
use crate::jsonb::Jsonb;
use pgrx::prelude::*;
use uuid::Uuid;

/// New messages from one sender: one more unread for every other member.
const COUNT_FROM_ONE: &str = "\
    UPDATE hatchat.members m SET unread = m.unread + $3 \
     WHERE m.channel_id = $1 AND m.user_id <> $2";

/// New messages from several senders (a batch): each member counts those not their own.
const COUNT_FROM_MANY: &str = "\
    UPDATE hatchat.members m SET unread = m.unread + n.others \
      FROM (SELECT mm.user_id, count(*) AS others \
              FROM hatchat.members mm CROSS JOIN unnest($2::uuid[]) AS s(sender) \
             WHERE mm.channel_id = $1 AND s.sender <> mm.user_id \
             GROUP BY mm.user_id) n \
     WHERE m.channel_id = $1 AND m.user_id = n.user_id";

/// Counts newly appended messages of a channel (one sender per message, the system's left out)
/// as unread for the other members. Called by the send pipeline under the counter row lock.
pub fn count_unread(channel_id: &str, senders: &[Uuid]) -> Result<()> {
    let senders: Vec<Uuid> = senders.iter().copied().filter(|s| *s != SYSTEM_USER).collect();
    let Some(first) = senders.first() else { return Ok(()) };
    if senders.iter().all(|s| s == first) {
        let n = senders.len() as i64;
        db::execute(COUNT_FROM_ONE, &[channel_id.into(), pg_uuid(*first).into(), n.into()])?;
    } else {
        let senders: Vec<pgrx::Uuid> = senders.into_iter().map(pg_uuid).collect();
        db::execute(COUNT_FROM_MANY, &[channel_id.into(), senders.into()])?;
    }
    Ok(())
}

/// Holds the counter row against senders (not against other readers) while a read position
/// moves, so the messages counted off are exactly those that exist.
const LOCK_FOR_READING: &str = "SELECT 1 FROM hatchat.channels c WHERE c.id = $1 FOR SHARE";

/// Moves the caller's position forward to `$3`, clamped to the channel's last seq; counts off the
/// messages passed over (none to count when the position reaches the end).
const MOVE_READ_SEQ: &str = "\
    UPDATE hatchat.members m \
       SET read_seq = t.target, \
           unread = CASE WHEN t.target = t.last_seq THEN 0 ELSE m.unread - ( \
               SELECT count(*) FROM hatchat.messages x \
                WHERE x.channel_id = $1 AND x.seq > m.read_seq AND x.seq <= t.target \
                  AND x.from_user_id <> m.user_id \
                  AND x.from_user_id <> '00000000-0000-0000-0000-000000000000') END \
      FROM (SELECT least($3, c.last_seq) AS target, c.last_seq FROM hatchat.channels c WHERE c.id = $1) t \
     WHERE m.channel_id = $1 AND m.user_id = $2 AND m.read_seq < t.target";

const READ_STATE: &str = "\
    SELECT jsonb_build_object('channelId', c.id, 'lastSeq', c.last_seq, 'readSeq', m.read_seq, \
                              'unread', m.unread) \
      FROM hatchat.channels c JOIN hatchat.members m ON m.channel_id = c.id AND m.user_id = $2 \
     WHERE c.id = $1";

/// Records that the caller has read the channel up to `seq`: `{channelId, lastSeq, readSeq,
/// unread}`. A position never moves backwards (an older seq changes nothing); a seq past the
/// channel's last is clamped to it. Members only; reading is not posting, so banned and muted
/// users may mark too.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn mark_read(token: Option<&str>, channel_id: Option<&str>, seq: Option<i64>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    let user = caller.user()?.id;
    let channel_id = valid_channel_id(required(channel_id, "channelId")?)?;
    let seq = required(seq, "seq")?;
    if seq < 0 {
        return Err(HatchatError::invalid(format!("seq must be 0 or more, got {seq}")).into());
    }
    Access::load(channel_id, &caller)?.require_member()?;
    db::execute(LOCK_FOR_READING, &[channel_id.into()])?;
    let args = [channel_id.into(), pg_uuid(user).into(), seq.into()];
    db::execute(MOVE_READ_SEQ, &args)?;
    let state = db::first::<Jsonb>(READ_STATE, &[channel_id.into(), pg_uuid(user).into()])?;
    // No row: the caller left, or the channel went, since the access check.
    Ok(state.ok_or_else(|| crate::access::members_only(channel_id))?)
}

/// Whether the other members of the caller's channels see how far the caller has read
/// (`get_channel`'s `members[].readSeq`, null when off). On by default.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn set_read_receipts(token: Option<&str>, enabled: Option<bool>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    let user = caller.user()?.id;
    let enabled = required(enabled, "enabled")?;
    let answer = db::first::<Jsonb>(
        "UPDATE hatchat.users u SET read_receipts = $2 WHERE u.id = $1 \
         RETURNING jsonb_build_object('userId', u.id, 'readReceipts', u.read_receipts)",
        &[pg_uuid(user).into(), enabled.into()],
    )?;
    Ok(answer.ok_or_else(|| HatchatError::NotFound(format!("user {user} not found")))?)
}

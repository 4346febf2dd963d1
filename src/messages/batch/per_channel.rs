//! `send_messages` on Citus: the batch's locks and appends one channel at a time, in channel-id
//! order, each statement naming its channel, so that Citus runs it on that channel's shard (a
//! router query). The set-based statements of batch.rs read arrays against `channels`: Citus takes
//! row locks only in single-shard queries and cannot route an UPDATE joined with `unnest`. Same
//! answers, same order of locks among batches, more statements: `Placement` chooses them where
//! Citus is loaded.

use super::super::{settle, Retention};
use super::{may_post, Candidate, MayPost, Outcomes};
use crate::access;
use crate::auth::SYSTEM_USER;
use crate::db::{self, pg_uuid};
use crate::error::{HatchatError, Result};
use pgrx::datum::TimestampWithTimeZone;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Locks a live channel's counter row; whether it is a room.
const LOCK: &str = "\
    SELECT c.type IS NOT NULL FROM hatchat.channels c WHERE c.id = $1 AND hatchat.is_live(c.expires_at) \
       FOR NO KEY UPDATE";

/// Which of users $2 are members of channel $1.
const MEMBERS: &str =
    "SELECT m.user_id FROM hatchat.members m WHERE m.channel_id = $1 AND m.user_id = ANY($2)";

/// Moves channel $1's counter by $2 items ($3 of them countable) at time $4, as APPEND_ALL does:
/// the base seq, base count and base createdAt of the channel's items, its settings.
const BUMP: &str = concat!(
    "UPDATE hatchat.channels c SET ",
    bump_counter!("$2", "$3", "$4"),
    " WHERE c.id = $1 RETURNING ",
    counter_bases!("$2", "$3")
);

/// One item: seq $2, createdAt $3 + $4 µs; its answer, shaped outside the write (Citus refuses
/// non-IMMUTABLE functions in RETURNING).
const INSERT: &str = "\
    WITH i AS ( \
        INSERT INTO hatchat.messages (channel_id, seq, created_at, from_user_id, payload, client_id, counted) \
        VALUES ($1, $2, hatchat.add_interval($3, $4 * interval '1 microsecond'), $5, $6, $7, $8) \
        RETURNING channel_id, seq, created_at, from_user_id) \
    SELECT hatchat.sent_json(i.channel_id, i.seq, i.created_at, i.from_user_id)::text FROM i";

/// A sender's read position moves to their last post in the batch, as alone.
const ADVANCE: &str = "\
    UPDATE hatchat.members SET read_seq = $3, read_count = $4 WHERE channel_id = $1 AND user_id = $2";

/// Each candidate's channel, in id order (the order every batch locks in).
fn by_channel(candidates: &[Candidate]) -> BTreeMap<&str, Vec<&Candidate>> {
    let mut channels: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for candidate in candidates {
        channels.entry(candidate.channel.as_str()).or_default().push(candidate);
    }
    channels
}

/// Locks the batch's live channels and says, for each (channel, sender) of a live channel, whether
/// the sender may post there.
pub(super) fn membership(candidates: &[Candidate]) -> Result<MayPost> {
    let mut members = HashMap::new();
    for (channel, items) in by_channel(candidates) {
        let Some(room) = db::first::<bool>(LOCK, &[channel.into()])? else { continue };
        let senders: Vec<pgrx::Uuid> = items.iter().map(|c| pg_uuid(c.sender)).collect();
        let found = db::column::<pgrx::Uuid>(MEMBERS, &[channel.into(), senders.into()])?;
        for item in items {
            let member = item.sender == SYSTEM_USER || found.contains(&pg_uuid(item.sender));
            members.insert((channel.to_string(), item.sender), may_post(channel, member, room));
        }
    }
    Ok(members)
}

/// Appends every accepted item, channel by channel; each item's outcome, by its position.
pub(super) fn append_all(accepted: &[Candidate]) -> Result<Outcomes> {
    let now = db::clock()?;
    let mut outcomes = Vec::with_capacity(accepted.len());
    for (channel, items) in by_channel(accepted) {
        outcomes.extend(append_channel(channel, &items, now)?);
    }
    Ok(outcomes)
}

fn append_channel(channel: &str, items: &[&Candidate], now: TimestampWithTimeZone) -> Result<Outcomes> {
    let n = items.len() as i64;
    let countable = items.iter().filter(|c| c.sender != SYSTEM_USER).count() as i64;
    let bumped = db::row(BUMP, &[channel.into(), n.into(), countable.into(), now.into()], |row| {
        let retention = Retention::new(row.get::<i32>(4)?, row.get::<bool>(5)?);
        Ok((row.get::<i64>(1)?, row.get::<i64>(2)?, row.get::<TimestampWithTimeZone>(3)?, retention))
    })?;
    let Some((Some(base_seq), Some(mut counted), Some(base_at), retention)) = bumped else {
        // The counter row was gone: the channel was deleted since it was locked-checked.
        return Ok(items.iter().map(|c| (c.ord, Err(access::channel_not_found(channel)))).collect());
    };
    let mut outcomes = Vec::with_capacity(items.len());
    let mut last_posts: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
    let mut seqs = Vec::with_capacity(items.len());
    for (k, item) in (0i64..).zip(items) {
        let seq = base_seq + k + 1;
        counted += i64::from(item.sender != SYSTEM_USER);
        let args = [
            channel.into(),
            seq.into(),
            base_at.into(),
            k.into(),
            pg_uuid(item.sender).into(),
            item.payload.into(),
            item.client_id.as_deref().into(),
            counted.into(),
        ];
        let answer = db::first::<String>(INSERT, &args)?
            .ok_or_else(|| HatchatError::Internal("an insert returns its row".into()));
        last_posts.insert(item.sender, (seq, counted));
        seqs.push(seq);
        outcomes.push((item.ord, answer));
    }
    for (sender, (seq, counted)) in last_posts {
        db::execute(ADVANCE, &[channel.into(), pg_uuid(sender).into(), seq.into(), counted.into()])?;
    }
    settle(channel, &seqs, retention, None)?;
    Ok(outcomes)
}

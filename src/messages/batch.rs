//! `send_messages`: many sends in one transaction, for group commit. Each item is authenticated,
//! validated and authorized on its own and gets its own answer — the object `send_message` returns,
//! or `{"error": {"sqlstate", "message", "detail"}}` with exactly the error it would raise alone —
//! and a failed item stores nothing. An item's payload is `payload` (a JSON value) or `payloadText`
//! (a string holding JSON text, converted per item as `send_message_text` converts it): the gateway
//! uses the text form, so a payload PostgreSQL cannot store fails only its own item instead of the
//! cast of the whole array. Items may name any channels: the good items of one channel
//! bump its counter once, so they take consecutive seqs in item order.
//!
//! The work is set-based so a batch costs a fixed number of statements whatever its size: one
//! read of the items, one lookup of all senders' keys, one lock of the channels in id order that
//! also checks every (channel, sender) membership, one append for all of them.

use super::{admit, muted_answer, settle, Admitted, Payload, Retention};
use crate::access;
use crate::auth::{self, Caller, SYSTEM_USER};
use crate::db::{self, pg_uuid, Jsonb};
use crate::error::{item_answers, required, HatchatError, Result, SqlResult};
use crate::placement::Placement;
use pgrx::prelude::*;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// How a send moves its channel's counter row `c`: by `$n` items, `$countable` of them countable (not
/// from the system user), at time `$now`; see APPEND_ALL. The time arithmetic is `add_interval`
/// (IMMUTABLE), not `+` (STABLE): Citus refuses a STABLE function of a column in an UPDATE of a
/// distributed table.
macro_rules! bump_counter {
    ($n:literal, $countable:literal, $now:literal) => {
        concat!(
            "last_seq = c.last_seq + ",
            $n,
            ", \
             last_at = hatchat.add_interval(greatest(",
            $now,
            ", hatchat.add_interval(c.last_at, interval '1 microsecond')), \
                                            (",
            $n,
            " - 1) * interval '1 microsecond'), \
             expires_at = hatchat.refreshed_expiry(c.expires_at, c.ttl_seconds, ",
            $now,
            "), \
             counted = c.counted + ",
            $countable
        )
    };
}

/// What a counter row `c` bumped by `bump_counter!` returns: the channel's seq, count and
/// createdAt before the first of its `$n` items (`$countable` of them countable), and its
/// retention and notification settings.
macro_rules! counter_bases {
    ($n:literal, $countable:literal) => {
        concat!(
            "c.last_seq - ",
            $n,
            " AS base_seq, c.counted - ",
            $countable,
            " AS base_counted, \
             hatchat.add_interval(c.last_at, (1 - ",
            $n,
            ") * interval '1 microsecond') AS base_at, \
             c.max_messages, c.notify_members"
        )
    };
}

mod per_channel;

pub const MAX_BATCH_ITEMS: i64 = 1000;

/// One item as read from the array, before any check.
struct Item {
    is_object: bool,
    token: Option<String>,
    channel_id: Option<String>,
    channel_id_is_text: bool,
    payload: Option<Jsonb>,
    payload_text: Option<String>,
    payload_text_is_text: bool,
    client_id: Option<String>,
    client_id_is_text: bool,
}

/// An item that passed the checks made before the membership check.
struct Candidate {
    /// 1-based position in the array.
    ord: i64,
    channel: String,
    sender: Uuid,
    muted: bool,
    payload: Jsonb,
    client_id: Option<String>,
}

const READ_ITEMS: &str = "\
    SELECT jsonb_typeof(t.item) = 'object', t.item->>'token', t.item->>'channelId', \
           jsonb_typeof(t.item->'channelId') = 'string', t.item->'payload', \
           t.item->>'payloadText', jsonb_typeof(t.item->'payloadText') = 'string', \
           t.item->>'clientId', jsonb_typeof(t.item->'clientId') = 'string' \
      FROM jsonb_array_elements($1) WITH ORDINALITY AS t(item, ord) ORDER BY t.ord";

/// Locks the counter rows of the batch's live channels in id order — so concurrent batches never
/// deadlock each other — and says, for each (channel, sender) pair whose channel is live, whether
/// the sender may post there (a member, or the system). Per-row index probes: one generic plan
/// serves every batch size (the function runs generic plans, planned once per backend). The
/// membership is a scalar subquery, not EXISTS: the planner may run an EXISTS as a hashed subplan,
/// which reads every row of `members` to answer a few pairs (it chose so while the table was
/// small, and then kept the plan).
const LOCK_AND_CHECK: &str = "\
    SELECT c.id, p.sender, \
           p.sender = '00000000-0000-0000-0000-000000000000' \
           OR (SELECT true FROM hatchat.members m WHERE m.channel_id = c.id AND m.user_id = p.sender) \
              IS NOT NULL, \
           c.type IS NOT NULL \
      FROM unnest($1::text[], $2::uuid[]) AS p(channel, sender) \
      JOIN hatchat.channels c ON c.id = p.channel \
     WHERE hatchat.is_live(c.expires_at) \
     ORDER BY c.id \
       FOR NO KEY UPDATE OF c";

/// Each channel's counter moves once by its number of items ($5, $6) and its running count by its
/// countable items ($7: those not from the system user); the item that is k-th of its channel in
/// array order ($1) gets seq base+k and createdAt base_at + (k-1) µs: consecutive and strictly
/// increasing, as alone. Its `counted` is the channel's count before the batch plus the countable
/// items up to it ($8). Each sender's read position moves to their last post in it, as alone.
/// The time is read once, in Rust ($10): a volatile `clock_timestamp()` among its arguments kept
/// `hatchat.refreshed_expiry` from being inlined, so PostgreSQL planned the function's body again
/// for every batch (a sixth of a batch's database CPU).
const APPEND_ALL: &str = concat!(
    "WITH counters AS ( \
        UPDATE hatchat.channels c SET ",
    bump_counter!("w.n", "w.counted", "$10"),
    " FROM unnest($5::text[], $6::bigint[], $7::bigint[]) AS w(channel, n, counted) \
         WHERE c.id = w.channel \
     RETURNING c.id, ",
    counter_bases!("w.n", "w.counted"),
    "), \
    inserted AS ( \
        INSERT INTO hatchat.messages (channel_id, seq, created_at, from_user_id, payload, client_id, counted) \
        SELECT u.channel, c.base_seq + u.k, c.base_at + (u.k - 1) * interval '1 microsecond', u.sender, u.payload, \
               u.client_id, c.base_counted + u.counted \
          FROM unnest($1::bigint[], $2::text[], $3::uuid[], $4::jsonb[], $8::bigint[], $9::text[]) \
               AS u(k, channel, sender, payload, counted, client_id) \
          JOIN counters c ON c.id = u.channel \
        RETURNING channel_id, seq, created_at, from_user_id, counted), \
    advanced AS ( \
        UPDATE hatchat.members m SET read_seq = a.seq, read_count = a.counted \
          FROM (SELECT DISTINCT ON (channel_id, from_user_id) channel_id, from_user_id, seq, counted \
                  FROM inserted ORDER BY channel_id, from_user_id, seq DESC) a \
         WHERE m.channel_id = a.channel_id AND m.user_id = a.from_user_id) \
    SELECT i.channel_id, i.seq - c.base_seq, i.seq, \
           hatchat.sent_json(i.channel_id, i.seq, i.created_at, i.from_user_id)::text, \
           c.max_messages, c.notify_members \
      FROM inserted i JOIN counters c ON c.id = i.channel_id"
);

/// `items` is a JSON array of `{token, channelId, payload, clientId?}` (or `payloadText` instead of
/// `payload`); the answer is an array of the same length, in the same order. An item whose
/// client id was sent before (alone or earlier in this batch) answers that send's answer.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn send_messages(items: Option<Jsonb>) -> SqlResult<Jsonb> {
    let items = required(items, "items")?;
    let read = read_items(items)?;
    let mut outcomes: Vec<Result<String>> = Vec::with_capacity(read.len());
    let tokens: Vec<Option<&str>> = read.iter().map(|item| item.token.as_deref()).collect();
    let senders = auth::authenticate_all(&tokens)?;
    let mut candidates = Vec::new();
    for (index, (item, sender)) in read.iter().zip(senders).enumerate() {
        match check(item, sender) {
            Ok(Admitted { channel, sender, payload, client_id }) => {
                let (muted, sender) = (sender.is_muted(), sender.id());
                let ord = index as i64 + 1;
                candidates.push(Candidate { ord, channel, sender, muted, payload, client_id });
                outcomes.push(Err(HatchatError::Internal("not appended".into())));
            }
            Err(error) => outcomes.push(Err(error)),
        }
    }
    let placement = Placement::here();
    let may_post = placement.lock_and_check(&candidates)?;
    let mut accepted = Vec::new();
    for candidate in candidates {
        let outcome = &mut outcomes[candidate.ord as usize - 1];
        match may_post.get(&(candidate.channel.clone(), candidate.sender)) {
            // A muted sender is answered as usual, but nothing is stored.
            Some(Ok(())) if candidate.muted => *outcome = muted_answer(&candidate.channel, candidate.sender),
            Some(Ok(())) => accepted.push(candidate),
            Some(Err(refusal)) => *outcome = Err(refusal.clone()),
            None => *outcome = Err(access::channel_not_found(&candidate.channel)),
        }
    }
    let (accepted, repeats) = set_aside_repeats(accepted, &mut outcomes)?;
    for (ord, outcome) in placement.append_batch(&accepted)? {
        outcomes[ord as usize - 1] = outcome;
    }
    // A repeat within the batch answers what its first got (under the same locks, so final).
    for (ord, first) in repeats {
        outcomes[ord as usize - 1] = outcomes[first as usize - 1].clone();
    }
    Ok(Jsonb::from_text(&item_answers(outcomes))?)
}

fn read_items(items: Jsonb) -> Result<Vec<Item>> {
    let (kind, length) = db::query(
        "SELECT jsonb_typeof($1), CASE WHEN jsonb_typeof($1) = 'array' THEN jsonb_array_length($1) END",
        &[items.into()],
        |rows| {
            let row = rows.first();
            Ok((row.get::<String>(1)?, row.get::<i32>(2)?))
        },
    )?;
    let length = match (kind.as_deref(), length) {
        (Some("array"), Some(length)) => i64::from(length),
        _ => return Err(HatchatError::invalid("items must be a JSON array of {token, channelId, payload}")),
    };
    if length > MAX_BATCH_ITEMS {
        return Err(HatchatError::invalid(format!(
            "items may hold at most {MAX_BATCH_ITEMS} sends, got {length}"
        )));
    }
    db::query(READ_ITEMS, &[items.into()], |rows| {
        rows.map(|row| {
            Ok(Item {
                is_object: row.get::<bool>(1)?.unwrap_or(false),
                token: row.get::<String>(2)?,
                channel_id: row.get::<String>(3)?,
                channel_id_is_text: row.get::<bool>(4)?.unwrap_or(false),
                payload: row.get::<Jsonb>(5)?,
                payload_text: row.get::<String>(6)?,
                payload_text_is_text: row.get::<bool>(7)?.unwrap_or(false),
                client_id: row.get::<String>(8)?,
                client_id_is_text: row.get::<bool>(9)?.unwrap_or(false),
            })
        })
        .collect()
    })
}

/// An item's shape (an object; `channelId` a string; `payload` or `payloadText`, not both), then
/// exactly the checks a send alone passes (`admit`), in its order.
fn check(item: &Item, sender: Result<Caller>) -> Result<Admitted> {
    if !item.is_object {
        return Err(HatchatError::invalid("each item must be an object {token, channelId, payload}"));
    }
    let payload = match (&item.payload_text, item.payload) {
        (None, value) => Payload::Value(value),
        (Some(_), Some(_)) => return Err(HatchatError::invalid("give payload or payloadText, not both")),
        (Some(_), None) if !item.payload_text_is_text => {
            return Err(HatchatError::invalid("payloadText must be a string holding JSON text"))
        }
        (Some(text), None) => Payload::Text(Some(text)),
    };
    if item.channel_id.is_some() && !item.channel_id_is_text {
        return Err(HatchatError::invalid("channelId must be a string"));
    }
    if item.client_id.is_some() && !item.client_id_is_text {
        return Err(HatchatError::invalid("clientId must be a string"));
    }
    admit(|| sender, item.channel_id.as_deref(), payload, item.client_id.as_deref())
}

/// Sends already stored under their client id (found under the channels' locks, so a racing
/// first send has committed or not started).
const EARLIER_SENDS: &str = "\
    SELECT p.ord, hatchat.sent_json(m.channel_id, m.seq, m.created_at, m.from_user_id)::text \
      FROM unnest($1::bigint[], $2::text[], $3::uuid[], $4::text[]) AS p(ord, channel, sender, client_id) \
      JOIN hatchat.messages m ON m.channel_id = p.channel AND m.from_user_id = p.sender \
                             AND m.client_id = p.client_id";

/// Items of a batch that repeat an earlier one's client id: (the repeat's ord, the first's ord).
type Repeats = Vec<(i64, i64)>;

/// Takes out of `accepted` the items whose client id was sent before (answered here, in
/// `outcomes`) or repeats an earlier item of this batch (returned apart, to answer as their first).
fn set_aside_repeats(
    accepted: Vec<Candidate>,
    outcomes: &mut [Result<String>],
) -> Result<(Vec<Candidate>, Repeats)> {
    let with_ids: Vec<&Candidate> = accepted.iter().filter(|c| c.client_id.is_some()).collect();
    if with_ids.is_empty() {
        return Ok((accepted, Vec::new()));
    }
    let args = [
        with_ids.iter().map(|c| c.ord).collect::<Vec<i64>>().into(),
        with_ids.iter().map(|c| c.channel.as_str()).collect::<Vec<&str>>().into(),
        with_ids.iter().map(|c| pg_uuid(c.sender)).collect::<Vec<pgrx::Uuid>>().into(),
        with_ids.iter().map(|c| c.client_id.as_deref().unwrap_or_default()).collect::<Vec<&str>>().into(),
    ];
    let earlier: HashMap<i64, String> = db::query(EARLIER_SENDS, &args, |rows| {
        rows.filter_map(|row| match (row.get::<i64>(1), row.get::<String>(2)) {
            (Ok(Some(ord)), Ok(Some(answer))) => Some(Ok((ord, answer))),
            _ => None,
        })
        .collect()
    })?;
    let mut firsts: HashMap<(String, Uuid, String), i64> = HashMap::new();
    let (mut fresh, mut repeats) = (Vec::new(), Vec::new());
    for candidate in accepted {
        if let Some(answer) = earlier.get(&candidate.ord) {
            outcomes[candidate.ord as usize - 1] = Ok(answer.clone());
            continue;
        }
        if let Some(client_id) = &candidate.client_id {
            let key = (candidate.channel.clone(), candidate.sender, client_id.clone());
            if let Some(first) = firsts.get(&key) {
                repeats.push((candidate.ord, *first));
                continue;
            }
            firsts.insert(key, candidate.ord);
        }
        fresh.push(candidate);
    }
    Ok((fresh, repeats))
}

/// Each item's outcome of a batch's append, by its position in the array.
type Outcomes = Vec<(i64, Result<String>)>;

impl Placement {
    /// Locks a batch's live channels in id order and says, for each (channel, sender) of a live
    /// channel, whether the sender may post there: one statement for the whole batch on one node,
    /// two per channel on a cluster (Citus takes row locks only in single-shard statements).
    fn lock_and_check(self, candidates: &[Candidate]) -> Result<MayPost> {
        match self {
            Placement::OneNode => membership(candidates),
            Placement::Sharded => per_channel::membership(candidates),
        }
    }

    /// Appends a batch's accepted items: one statement for the whole batch on one node, a few per
    /// channel on a cluster (Citus cannot route an UPDATE joined with the batch's arrays).
    fn append_batch(self, accepted: &[Candidate]) -> Result<Outcomes> {
        match self {
            Placement::OneNode => append_all(accepted),
            Placement::Sharded => per_channel::append_all(accepted),
        }
    }
}

/// One send alone, by the per-channel statements (`Placement::append_alone` says why). None when
/// the channel is missing or the sender may not post there (the caller says which, as alone).
pub(super) fn append_alone_per_channel(send: &Admitted) -> Result<Option<Jsonb>> {
    let candidate = Candidate {
        ord: 1,
        channel: send.channel.clone(),
        sender: send.sender.id(),
        muted: false,
        payload: send.payload,
        client_id: send.client_id.clone(),
    };
    let may_post = per_channel::membership(std::slice::from_ref(&candidate))?;
    if may_post.get(&(candidate.channel.clone(), candidate.sender)) != Some(&Ok(())) {
        return Ok(None);
    }
    match per_channel::append_all(std::slice::from_ref(&candidate))?.pop() {
        Some((_, Ok(answer))) => Ok(Some(Jsonb::from_text(&answer)?)),
        Some((_, Err(_))) | None => Ok(None),
    }
}

/// Whether each (channel, sender) of a live channel may post there, or the error it would get
/// alone; a pair whose channel is missing is not there.
type MayPost = HashMap<(String, Uuid), Result<()>>;

/// Whether a sender who is (or is not) a `member` of live channel `channel` may post there, as a
/// send alone: not to a room (only the room functions write to one, see `Access`).
pub(super) fn may_post(channel: &str, member: bool, room: bool) -> Result<()> {
    match (member, room) {
        (false, _) => Err(access::members_only(channel)),
        (true, true) => Err(access::rooms_take_room_posts(channel)),
        (true, false) => Ok(()),
    }
}

/// Locks the batch's live channels (LOCK_AND_CHECK) and says, for each (channel, sender) of a live
/// channel, whether the sender may post there.
fn membership(candidates: &[Candidate]) -> Result<MayPost> {
    let channels: Vec<&str> = candidates.iter().map(|c| c.channel.as_str()).collect();
    let senders: Vec<pgrx::Uuid> = candidates.iter().map(|c| pg_uuid(c.sender)).collect();
    db::query(LOCK_AND_CHECK, &[channels.into(), senders.into()], |rows| {
        rows.map(|row| {
            let channel = row.get::<String>(1)?.unwrap_or_default();
            let sender = db::rust_uuid(row.get::<pgrx::Uuid>(2)?.expect("unnest keeps the sender"));
            let member = row.get::<bool>(3)?.unwrap_or(false);
            let may_post = may_post(&channel, member, row.get::<bool>(4)?.unwrap_or(false));
            Ok(((channel, sender), may_post))
        })
        .collect()
    })
}

/// Appends every accepted item in one statement (APPEND_ALL); each item's outcome, by its position
/// in the array.
fn append_all(accepted: &[Candidate]) -> Result<Outcomes> {
    if accepted.is_empty() {
        return Ok(Vec::new());
    }
    // Each item's place within its channel, its countable place (a system post counts for no
    // unread), and each channel's counts.
    let mut counts: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let (places, counted): (Vec<i64>, Vec<i64>) = accepted
        .iter()
        .map(|c| {
            let count = counts.entry(c.channel.as_str()).or_default();
            count.0 += 1;
            count.1 += i64::from(c.sender != SYSTEM_USER);
            *count
        })
        .unzip();
    let channels: Vec<&str> = accepted.iter().map(|c| c.channel.as_str()).collect();
    let senders: Vec<pgrx::Uuid> = accepted.iter().map(|c| pg_uuid(c.sender)).collect();
    let payloads: Vec<Jsonb> = accepted.iter().map(|c| c.payload).collect();
    let client_ids: Vec<Option<&str>> = accepted.iter().map(|c| c.client_id.as_deref()).collect();
    let distinct: Vec<&str> = counts.keys().copied().collect();
    let (sizes, countable): (Vec<i64>, Vec<i64>) = counts.values().copied().unzip();
    // (channel, place) -> answer
    let mut answers: HashMap<(String, i64), String> = HashMap::new();
    // channel -> (its new seqs, its retention)
    let mut settled: BTreeMap<String, (Vec<i64>, Retention)> = BTreeMap::new();
    let args = [
        places.clone().into(),
        channels.into(),
        senders.into(),
        payloads.into(),
        distinct.into(),
        sizes.into(),
        countable.into(),
        counted.into(),
        client_ids.into(),
        db::clock()?.into(),
    ];
    db::query(APPEND_ALL, &args, |rows| {
        for row in rows {
            let (Some(channel), Some(place), Some(seq), Some(answer)) =
                (row.get::<String>(1)?, row.get::<i64>(2)?, row.get::<i64>(3)?, row.get::<String>(4)?)
            else {
                return Err(HatchatError::Internal("an appended row without its answer".into()));
            };
            let retention = Retention::new(row.get::<i32>(5)?, row.get::<bool>(6)?);
            settled.entry(channel.clone()).or_insert((Vec::new(), retention)).0.push(seq);
            answers.insert((channel, place), answer);
        }
        Ok(())
    })?;
    for (channel, (mut seqs, retention)) in settled {
        seqs.sort_unstable();
        settle(&channel, &seqs, retention, None)?;
    }
    Ok(accepted
        .iter()
        .zip(places)
        .map(|(candidate, place)| {
            let outcome = answers
                .remove(&(candidate.channel.clone(), place))
                // The counter row was gone: the channel was deleted since it was locked-checked.
                .ok_or_else(|| access::channel_not_found(&candidate.channel));
            (candidate.ord, outcome)
        })
        .collect())
}

//! `send_messages`: many sends in one transaction, for group commit. Each item is authenticated,
//! validated and authorized on its own and gets its own answer — the object `send_message` returns,
//! or `{"error": {"sqlstate", "message", "detail"}}` with exactly the error it would raise alone —
//! and a failed item stores nothing. The good items of one channel bump its counter once, so they
//! take consecutive seqs in item order and the whole batch costs one commit.

use super::{check_size, notify_channel, why_not_appended};
use crate::auth;
use crate::channels::{self, valid_channel_id};
use crate::db::{self, pg_uuid};
use crate::error::{required, HatchatError, Result, SqlResult};
use crate::jsonb::Jsonb;
use crate::settings;
use pgrx::prelude::*;
use std::collections::HashMap;
use uuid::Uuid;

pub const MAX_BATCH_ITEMS: i64 = 1000;

/// One item as read from the array, before any check.
struct Item {
    ord: i64,
    is_object: bool,
    token: Option<String>,
    channel_id: Option<String>,
    channel_id_is_text: bool,
    payload_size: Option<i64>,
}

/// An item that passed every check and waits to be appended.
struct Accepted {
    ord: i64,
    sender: Uuid,
}

const READ_ITEMS: &str = "\
    SELECT t.ord, jsonb_typeof(t.item) = 'object', t.item->>'token', t.item->>'channelId', \
           jsonb_typeof(t.item->'channelId') = 'string', octet_length((t.item->'payload')::text) \
      FROM jsonb_array_elements($1) WITH ORDINALITY AS t(item, ord) ORDER BY t.ord";

/// Appends the accepted items of one channel: the counter moves once by their number, and item k
/// of the group gets seq base+k and createdAt base_at + (k-1) µs — strictly increasing, as alone.
const APPEND_GROUP: &str = "\
    WITH counter AS ( \
        UPDATE hatchat.channels \
           SET last_seq = last_seq + cardinality($2::bigint[]), \
               last_at = greatest(clock_timestamp(), last_at + interval '1 microsecond') \
                         + (cardinality($2::bigint[]) - 1) * interval '1 microsecond' \
         WHERE id = $1 \
     RETURNING last_seq - cardinality($2::bigint[]) AS base_seq, \
               last_at - (cardinality($2::bigint[]) - 1) * interval '1 microsecond' AS base_at), \
    batch AS ( \
        SELECT u.k, u.sender, t.item->'payload' AS payload \
          FROM unnest($2::bigint[], $3::uuid[]) WITH ORDINALITY AS u(ord, sender, k) \
          JOIN jsonb_array_elements($4) WITH ORDINALITY AS t(item, ord) ON t.ord = u.ord) \
    INSERT INTO hatchat.messages (channel_id, seq, created_at, from_user_id, payload) \
    SELECT $1, c.base_seq + b.k, c.base_at + (b.k - 1) * interval '1 microsecond', b.sender, b.payload \
      FROM counter c, batch b \
    RETURNING seq, jsonb_build_object('channelId', channel_id, 'seq', seq, \
                                      'createdAt', hatchat.iso_time(created_at), 'fromUserId', from_user_id)";

const ASSEMBLE: &str = "\
    SELECT coalesce(jsonb_agg(coalesce(r.ok, r.error::jsonb) ORDER BY r.i), '[]'::jsonb) \
      FROM unnest($1::jsonb[], $2::text[]) WITH ORDINALITY AS r(ok, error, i)";

/// `items` is a JSON array of `{token, channelId, payload}`; the answer is an array of the same
/// length, in the same order.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn send_messages(items: Option<Jsonb>) -> SqlResult<Jsonb> {
    let items = required(items, "items")?;
    let read = read_items(items)?;
    let mut outcomes: Vec<Result<Jsonb>> = Vec::with_capacity(read.len());
    let mut groups: Vec<(String, Vec<Accepted>)> = Vec::new();
    let mut authorized: HashMap<(String, Uuid), Result<()>> = HashMap::new();
    for item in &read {
        match check(item, &mut authorized) {
            Ok((channel, accepted)) => {
                match groups.iter_mut().find(|(c, _)| *c == channel) {
                    Some((_, group)) => group.push(accepted),
                    None => groups.push((channel, vec![accepted])),
                }
                // A placeholder, replaced once the group is appended.
                outcomes.push(Err(HatchatError::Internal("not appended".into())));
            }
            Err(error) => outcomes.push(Err(error)),
        }
    }
    for (channel, group) in groups {
        for (ord, outcome) in append_group(&channel, &group, items)? {
            outcomes[ord as usize - 1] = outcome;
        }
    }
    Ok(assemble(outcomes)?)
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
                ord: row.get::<i64>(1)?.unwrap_or_default(),
                is_object: row.get::<bool>(2)?.unwrap_or(false),
                token: row.get::<String>(3)?,
                channel_id: row.get::<String>(4)?,
                channel_id_is_text: row.get::<bool>(5)?.unwrap_or(false),
                payload_size: row.get::<i32>(6)?.map(i64::from),
            })
        })
        .collect()
    })
}

/// The checks of `send_message`, in its order, so an item fails as it would alone.
fn check(item: &Item, authorized: &mut HashMap<(String, Uuid), Result<()>>) -> Result<(String, Accepted)> {
    if !item.is_object {
        return Err(HatchatError::invalid("each item must be an object {token, channelId, payload}"));
    }
    let sender = auth::authenticate(item.token.as_deref())?;
    if item.channel_id.is_some() && !item.channel_id_is_text {
        return Err(HatchatError::invalid("channelId must be a string"));
    }
    let channel = valid_channel_id(required(item.channel_id.as_deref(), "channelId")?)?;
    let size = required(item.payload_size, "payload")?;
    check_size(usize::try_from(size).unwrap_or(usize::MAX))?;
    authorized
        .entry((channel.to_string(), sender))
        .or_insert_with(|| channels::Access::load(channel, sender).and_then(|access| access.require_member()))
        .clone()?;
    Ok((channel.to_string(), Accepted { ord: item.ord, sender }))
}

/// Appends one channel's accepted items; each item's outcome, by its position in the array.
fn append_group(channel: &str, group: &[Accepted], items: Jsonb) -> Result<Vec<(i64, Result<Jsonb>)>> {
    let ords: Vec<i64> = group.iter().map(|a| a.ord).collect();
    let senders: Vec<pgrx::Uuid> = group.iter().map(|a| pg_uuid(a.sender)).collect();
    let mut appended = db::query(
        APPEND_GROUP,
        &[channel.into(), ords.clone().into(), senders.into(), items.into()],
        |rows| {
            rows.map(|row| Ok((row.get::<i64>(1)?.unwrap_or_default(), row.get::<Jsonb>(2)?)))
                .collect::<Result<Vec<_>>>()
        },
    )?;
    if appended.is_empty() {
        // The counter row was gone: the channel was deleted since the checks.
        let missing = why_not_appended(channel, group[0].sender);
        return Ok(ords.into_iter().map(|ord| (ord, Err(missing.clone()))).collect());
    }
    // Seqs follow item order within the group (RETURNING itself has no order).
    appended.sort_by_key(|(seq, _)| *seq);
    if settings::sends_notify() {
        notify_channel(channel, appended.last().map(|(seq, _)| *seq));
    }
    Ok(ords
        .into_iter()
        .zip(appended)
        .map(|(ord, (_, sent))| (ord, sent.ok_or_else(|| HatchatError::Internal("no answer".into()))))
        .collect())
}

fn assemble(outcomes: Vec<Result<Jsonb>>) -> Result<Jsonb> {
    let (oks, errors): (Vec<Option<Jsonb>>, Vec<Option<String>>) = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(sent) => (Some(sent), None),
            Err(error) => (None, Some(error_json(&error))),
        })
        .unzip();
    Ok(db::first::<Jsonb>(ASSEMBLE, &[oks.into(), errors.into()])?.expect("an aggregate returns one row"))
}

fn error_json(error: &HatchatError) -> String {
    let mut body = serde_json::json!({"sqlstate": error.sqlstate_code(), "message": error.to_string()});
    if let Some(detail) = error.detail() {
        body["detail"] = detail.into();
    }
    serde_json::json!({ "error": body }).to_string()
}

//! Edits, deletes and reactions, as ordered events: each is a new row of the channel with its own
//! seq, appended like any send (same counter lock, same announcement), so a follower sees it in
//! order through every transport. The kind and target live in their own columns (`event`,
//! `target` in the message JSON), outside the payload, so no payload can pass for an event. Each
//! also updates its target's current state (fold.rs), under the counter lock that the append
//! takes again: the checks below stay true until the event is in.
//!
//! - edit: the author only; the event's payload is the new payload.
//! - delete: the author, the channel's owner, or an admin; the target's payload and its edits'
//!   payloads are overwritten with JSON null in the table (erased, not hidden), so are the copies
//!   in notifications, and its reactions go. The event's payload is null.
//! - reaction: members; `{"reaction": "👍", "action": "add" | "remove"}`, one of each per user.
//!
//! Each takes an optional client id, stored on its event row as a send's is: a retry with the same
//! id is answered the first answer and appends nothing (`earlier_event`).

use super::{
    admit, append_with, earlier_request, lock_counter, muted_answer, valid_client_id, Destination, Extra,
    Payload,
};
use crate::access::{channel_not_found, valid_channel_id, Access, Role};
use crate::auth::{self, Caller, SYSTEM_USER};
use crate::db::{self, pg_uuid, rust_uuid, Jsonb};
use crate::error::{required, HatchatError, Result, SqlResult};
use crate::settings;
use pgrx::prelude::*;

pub const MAX_REACTION_CHARS: usize = 64;

/// Message `seq` of a channel whose counter row the caller holds (`lock_target`), checked: it exists
/// (not removed by retention), is a user's message (not an event, not a system message) and is not
/// deleted. Its author; `verb` (`edited`) names the event in errors.
fn check_target(channel_id: &str, seq: i64, verb: &str) -> Result<uuid::Uuid> {
    let found = db::row(
        "SELECT m.from_user_id, m.kind, m.deleted FROM hatchat.messages m WHERE m.channel_id = $1 AND m.seq = $2",
        &[channel_id.into(), seq.into()],
        |row| {
            let author = row.get::<pgrx::Uuid>(1)?.map(rust_uuid).unwrap_or(SYSTEM_USER);
            Ok((author, row.get::<String>(2)?, row.get::<bool>(3)?.unwrap_or(false)))
        },
    )?;
    // What the answer or the error says of the target must not be taken back by a crash.
    crate::commit::durable_reads()?;
    let (author, kind, deleted) = found.ok_or_else(|| message_not_found(channel_id, seq))?;
    if let Some(kind) = kind {
        return Err(HatchatError::invalid(format!(
            "seq {seq} is a {kind} event: only messages can be {verb}"
        )));
    }
    if author == SYSTEM_USER {
        return Err(HatchatError::invalid(format!("seq {seq} is a system message: it cannot be {verb}")));
    }
    if deleted {
        return Err(HatchatError::NotFound(format!("message {seq} of channel {channel_id:?} was deleted")));
    }
    Ok(author)
}

/// The target's seq, checked for range, with the channel's counter row locked: everything decided
/// from here on (an earlier answer for this client id, the target's state) stays true until the
/// event is appended under the same lock.
fn lock_target(channel_id: &str, seq: Option<i64>) -> Result<i64> {
    let seq = required(seq, "seq")?;
    if seq < 1 {
        return Err(HatchatError::invalid(format!("seq must be 1 or more, got {seq}")));
    }
    if !lock_counter(channel_id)? {
        return Err(channel_not_found(channel_id));
    }
    Ok(seq)
}

/// A request's client id (1..64 characters, no control characters), checked.
fn valid_retry_id(client_id: Option<&str>) -> Result<Option<&str>> {
    client_id.map(valid_client_id).transpose()
}

/// What the caller's earlier request with this client id was answered, if there was one: a retry
/// of an event (after a lost answer, a failover) gets the first answer and appends nothing, so an
/// edit, a reaction or a delete never applies twice. The id names one request of the caller's in
/// the channel: an id already used for another message or event is 409. Read under the counter
/// lock, so a retry racing the first request waits for it, then finds it.
fn earlier_event(
    channel_id: &str,
    from: uuid::Uuid,
    client_id: Option<&str>,
    kind: &str,
    target: i64,
) -> Result<Option<Jsonb>> {
    let Some(client_id) = client_id else { return Ok(None) };
    let found = earlier_request(channel_id, from, client_id)?;
    crate::commit::durable_reads()?;
    match found {
        None => Ok(None),
        Some(earlier) if earlier.kind.as_deref() == Some(kind) && earlier.target == Some(target) => {
            Ok(Some(earlier.answer))
        }
        Some(_) => Err(HatchatError::Conflict(format!(
            "clientId {client_id:?} already names another message or event of yours in channel {channel_id:?}"
        ))),
    }
}

fn message_not_found(channel_id: &str, seq: i64) -> HatchatError {
    HatchatError::NotFound(format!("message {seq} not found in channel {channel_id:?}"))
}

/// Appends the event, with the request's client id; the channel was checked under the lock the
/// append takes again.
fn append_event(
    channel_id: &str,
    from: &Caller,
    payload: Jsonb,
    kind: &'static str,
    target: i64,
    client_id: Option<&str>,
) -> Result<Jsonb> {
    // Only a delete reaches a room's messages: the room checks refused edits and reactions before.
    let into = if kind == "delete" { Destination::Either } else { Destination::Channel };
    let extra = Extra { kind: Some(kind), target: Some(target), into, client_id, ..Extra::default() };
    append_with(channel_id, from.id(), payload, None, extra)?.ok_or_else(|| channel_not_found(channel_id))
}

/// Replaces the payload of message `seq` (the caller's own) with `payload`, as an `edit` event
/// whose payload is the new one. The answer is the event's, as a send's. With a `client_id`, a
/// retry answers the first edit's answer and appends nothing (`earlier_event`).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn edit_message(
    token: Option<&str>,
    channel_id: Option<&str>,
    seq: Option<i64>,
    payload: Option<Jsonb>,
    client_id: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    let edit = admit(|| auth::authenticate(token), channel_id, Payload::Value(payload), client_id)?;
    let client_id = edit.client_id.as_deref();
    Access::load(&edit.channel, &edit.sender)?.require_poster()?;
    let seq = lock_target(&edit.channel, seq)?;
    if let Some(answer) = earlier_event(&edit.channel, edit.sender.id(), client_id, "edit", seq)? {
        return Ok(answer);
    }
    let author = check_target(&edit.channel, seq, "edited")?;
    if author != edit.sender.id() {
        return Err(HatchatError::Forbidden(format!("only the author of message {seq} may edit it")).into());
    }
    if edit.sender.is_muted() {
        return Ok(Jsonb::from_text(&muted_answer(&edit.channel, edit.sender.id())?)?);
    }
    let answer = append_event(&edit.channel, &edit.sender, edit.payload, "edit", seq, client_id)?;
    db::execute(
        "UPDATE hatchat.messages SET edit_seq = ($3::jsonb->>'seq')::bigint WHERE channel_id = $1 AND seq = $2",
        &[edit.channel.as_str().into(), seq.into(), answer.into()],
    )?;
    Ok(answer)
}

/// Deletes message `seq`: its author, the channel's owner, or an admin (the server secret) may.
/// Erases the payloads (see the module comment). `client_id` as for `edit_message`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn delete_message(
    token: Option<&str>,
    channel_id: Option<&str>,
    seq: Option<i64>,
    client_id: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    caller.may_write()?;
    let channel_id = valid_channel_id(required(channel_id, "channelId")?)?;
    let client_id = valid_retry_id(client_id)?;
    let access = Access::load(channel_id, &caller)?;
    access.require_member()?;
    let seq = lock_target(channel_id, seq)?;
    if let Some(answer) = earlier_event(channel_id, caller.id(), client_id, "delete", seq)? {
        return Ok(answer);
    }
    let author = check_target(channel_id, seq, "deleted")?;
    // An admin is the server secret here: a token names a user, and the database role a gateway
    // runs as must not turn each of its users into an admin.
    let privileged = matches!(access.role, Role::Owner | Role::System);
    if author != caller.id() && !privileged {
        return Err(HatchatError::Forbidden(format!(
            "only the author of message {seq}, the channel's owner or an admin may delete it"
        ))
        .into());
    }
    let null = db::one::<Jsonb>("SELECT 'null'::jsonb", &[])?;
    let answer = append_event(channel_id, &caller, null, "delete", seq, client_id)?;
    db::execute(
        "WITH erased AS (UPDATE hatchat.messages SET payload = 'null'::jsonb \
                          WHERE channel_id = $1 AND kind = 'edit' AND target = $2), \
              reactions AS (DELETE FROM hatchat.reactions WHERE channel_id = $1 AND seq = $2) \
         UPDATE hatchat.messages SET payload = 'null'::jsonb, deleted = true WHERE channel_id = $1 AND seq = $2",
        &[channel_id.into(), seq.into()],
    )?;
    crate::notifications::erase(channel_id, seq)?;
    Ok(answer)
}

/// 1..64 characters, no control characters.
fn valid_reaction(raw: Option<&str>) -> Result<&str> {
    crate::limits::short_text(required(raw, "reaction")?, "reaction", MAX_REACTION_CHARS)
}

/// One reaction request: which, to which message, whether it adds or removes, and its client id.
struct ReactionRequest<'a> {
    channel_id: Option<&'a str>,
    seq: Option<i64>,
    reaction: Option<&'a str>,
    add: bool,
    client_id: Option<&'a str>,
}

/// Adds or removes a reaction of the caller's to message `seq`, as a `reaction` event.
fn reaction(token: Option<&str>, request: ReactionRequest) -> Result<Jsonb> {
    let caller = auth::authenticate(token)?;
    caller.may_post()?;
    let user = caller.user()?.id;
    let channel_id = valid_channel_id(required(request.channel_id, "channelId")?)?;
    let reaction = valid_reaction(request.reaction)?;
    let client_id = valid_retry_id(request.client_id)?;
    Access::load(channel_id, &caller)?.require_poster()?;
    let seq = lock_target(channel_id, request.seq)?;
    if let Some(answer) = earlier_event(channel_id, user, client_id, "reaction", seq)? {
        return Ok(answer);
    }
    check_target(channel_id, seq, "reacted to")?;
    if caller.is_muted() {
        return Jsonb::from_text(&muted_answer(channel_id, user)?);
    }
    let add = request.add;
    let args = [channel_id.into(), seq.into(), pg_uuid(user).into(), reaction.into()];
    let changed = if add {
        check_reaction_limits(channel_id, seq, user, reaction)?;
        db::execute(
            "INSERT INTO hatchat.reactions (channel_id, seq, user_id, reaction) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING RETURNING 1",
            &args,
        )?
    } else {
        db::execute(
            "DELETE FROM hatchat.reactions WHERE channel_id = $1 AND seq = $2 AND user_id = $3 AND reaction = $4 \
             RETURNING 1",
            &args,
        )?
    };
    if changed == 0 && add {
        return Err(HatchatError::Conflict(format!("you already reacted {reaction:?} to message {seq}")));
    }
    if changed == 0 {
        return Err(HatchatError::NotFound(format!("you have not reacted {reaction:?} to message {seq}")));
    }
    let body = db::one::<Jsonb>(
        "SELECT jsonb_build_object('reaction', $1::text, 'action', $2::text)",
        &[reaction.into(), (if add { "add" } else { "remove" }).into()],
    )?;
    append_event(channel_id, &caller, body, "reaction", seq, client_id)
}

/// A message holds a bounded set of reactions, so its folded form has a stated bound too: each
/// user at most `hatchat.max_reactions_per_user` distinct ones, and all users together at most
/// `hatchat.max_reactions_per_message` distinct ones. Decided under the counter lock that every
/// reaction to the channel takes (`lock_target`), so two at once cannot both take the last place.
fn check_reaction_limits(channel_id: &str, seq: i64, user: uuid::Uuid, reaction: &str) -> Result<()> {
    let (mine, distinct, present) = db::query(
        "SELECT count(*) FILTER (WHERE r.user_id = $3), count(DISTINCT r.reaction), \
                coalesce(bool_or(r.reaction = $4), false) \
           FROM hatchat.reactions r WHERE r.channel_id = $1 AND r.seq = $2",
        &[channel_id.into(), seq.into(), pg_uuid(user).into(), reaction.into()],
        |rows| {
            let row = rows.first();
            Ok((
                row.get::<i64>(1)?.unwrap_or(0),
                row.get::<i64>(2)?.unwrap_or(0),
                row.get::<bool>(3)?.unwrap_or(false),
            ))
        },
    )?;
    let per_user = i64::from(settings::MAX_REACTIONS_PER_USER.get());
    if mine >= per_user {
        return Err(HatchatError::Conflict(format!(
            "you have {mine} reactions on message {seq}, the most one user may have \
             (hatchat.max_reactions_per_user): remove one first"
        )));
    }
    let per_message = i64::from(settings::MAX_REACTIONS_PER_MESSAGE.get());
    if !present && distinct >= per_message {
        return Err(HatchatError::Conflict(format!(
            "message {seq} has {distinct} distinct reactions, the most it may have \
             (hatchat.max_reactions_per_message): add one of those instead"
        )));
    }
    Ok(())
}

/// Adds the caller's `reaction` (1..64 characters) to message `seq`; 409 if it is already there,
/// or if the message or the caller has as many reactions as it may (`check_reaction_limits`).
/// `client_id` as for `edit_message`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn react(
    token: Option<&str>,
    channel_id: Option<&str>,
    seq: Option<i64>,
    reaction: Option<&str>,
    client_id: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(self::reaction(token, ReactionRequest { channel_id, seq, reaction, add: true, client_id })?)
}

/// Removes the caller's `reaction` from message `seq`; 404 if it is not there. `client_id` as for
/// `edit_message`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn unreact(
    token: Option<&str>,
    channel_id: Option<&str>,
    seq: Option<i64>,
    reaction: Option<&str>,
    client_id: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(self::reaction(token, ReactionRequest { channel_id, seq, reaction, add: false, client_id })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_are_bounded() {
        assert_eq!(valid_reaction(Some("👍")).unwrap(), "👍");
        assert!(valid_reaction(Some(&"🎉".repeat(64))).is_ok(), "64 characters, not bytes");
        for bad in [Some(""), Some("\u{7}"), None] {
            assert_eq!(valid_reaction(bad).unwrap_err().sqlstate_code(), "22023", "{bad:?}");
        }
        assert_eq!(valid_reaction(Some(&"x".repeat(65))).unwrap_err().sqlstate_code(), "22023");
    }
}

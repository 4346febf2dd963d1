//! Rooms: ganomede-chat's multi-room chat service, on the same tables as channels. A room is
//! a channel whose id is `type/user1/user2…` (the players' usernames, sorted), with a type, a fixed
//! member list, retention (the newest `hatchat.room_max_messages`, expiring `hatchat.room_ttl`
//! after the last post or refresh) and notifications. Its messages are `{timestamp, from, type,
//! message}`, `from` being the sender's username, or `$$` for the server secret.
//!
//! Status codes follow ganomede-chat: a caller who is not one of the room's users gets 401 (not 403),
//! a banned one 403, a missing or expired room 404.

use crate::access::{self, valid_channel_id, Access, Role};
use crate::auth::{self, Caller};
use crate::commit;
use crate::db::{self, pg_uuid, Jsonb};
use crate::error::{required, HatchatError, Result, SqlResult};
use crate::limits;
use crate::messages;
use crate::names;
use crate::settings;
use pgrx::prelude::*;
use serde::Deserialize;

pub const MAX_TYPE_CHARS: usize = 100;
pub const MAX_ROOM_USERS: usize = 32;

/// 1..100 characters, no control characters.
pub fn valid_room_type(raw: &str) -> Result<&str> {
    limits::short_text(raw, "type", MAX_TYPE_CHARS)
}

/// The room id of `room_type` and its users' canonical usernames, as ganomede-chat forms it.
pub fn room_id(room_type: &str, usernames: &[String]) -> Result<String> {
    let mut sorted: Vec<&str> = usernames.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let id = format!("{room_type}/{}", sorted.join("/"));
    valid_channel_id(&id).map_err(|_| {
        HatchatError::invalid(format!(
            "the room id {id:?} would be longer than {} characters",
            access::MAX_CHANNEL_ID_CHARS
        ))
    })?;
    Ok(id)
}

/// 1..32 usernames, no two the same ignoring case.
pub fn valid_usernames(names: &[String]) -> Result<Vec<String>> {
    if names.is_empty() || names.len() > MAX_ROOM_USERS {
        return Err(HatchatError::invalid(format!("users must name 1..{MAX_ROOM_USERS} usernames")));
    }
    let mut seen = std::collections::HashSet::new();
    names
        .iter()
        .map(|name| {
            let name = names::valid_username(name)?.to_string();
            if !seen.insert(name.to_lowercase()) {
                return Err(HatchatError::invalid(format!("users names {name:?} twice")));
            }
            Ok(name)
        })
        .collect()
}

/// A posted room message's body: `timestamp` a finite number, `type` and `message` non-empty
/// strings (`push` is passed on to the notifications, untouched).
#[derive(Deserialize)]
struct PostedBody {
    timestamp: Option<serde_json::Value>,
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
    message: Option<serde_json::Value>,
}

pub fn check_message_body(json: &str) -> Result<()> {
    let body: PostedBody = serde_json::from_str(json).map_err(|e| {
        if e.to_string().contains("out of range") {
            HatchatError::invalid("timestamp must be a finite number")
        } else {
            HatchatError::invalid("the body must be an object {timestamp, type, message, push?}")
        }
    })?;
    if !body.timestamp.as_ref().is_some_and(|t| t.as_f64().is_some_and(f64::is_finite)) {
        return Err(HatchatError::invalid("timestamp must be a finite number"));
    }
    for (name, value) in [("type", &body.kind), ("message", &body.message)] {
        if value.as_ref().and_then(|v| v.as_str()).is_none_or(str::is_empty) {
            return Err(HatchatError::invalid(format!("{name} must be a non-empty string")));
        }
    }
    Ok(())
}

/// Resolves usernames (ignoring case) to their registered spelling; 404 naming the unknown ones.
fn resolve_usernames(names: &[String]) -> Result<Vec<(pgrx::Uuid, String)>> {
    // One row per name, in order (usernames are unique ignoring case): the user, or none.
    let users: Vec<Option<(pgrx::Uuid, String)>> = db::query(
        "SELECT u.id, u.username FROM unnest($1::text[]) WITH ORDINALITY AS g(n, i) \
           LEFT JOIN hatchat.users u ON lower(u.username) = lower(g.n) \
                                    AND u.id <> '00000000-0000-0000-0000-000000000000' \
          ORDER BY g.i",
        &[names.to_vec().into()],
        |rows| rows.map(|row| Ok(row.get::<pgrx::Uuid>(1)?.zip(row.get::<String>(2)?))).collect(),
    )?;
    let unknown: Vec<&str> =
        names.iter().zip(&users).filter(|(_, user)| user.is_none()).map(|(n, _)| n.as_str()).collect();
    if !unknown.is_empty() {
        return Err(HatchatError::NotFound(format!("unknown users: {}", unknown.join(", "))));
    }
    Ok(users.into_iter().flatten().collect())
}

/// Opens the room of `room_type` and `usernames`: creates it, or finds it and refreshes its expiry;
/// its id. Names only lead to ids here. Usernames change hands (a rename, an account deleted and
/// its name registered again), so an existing room is entered by its members' ids, and only when
/// the names given resolve to exactly those members: a later holder of a name never walks into the
/// old holder's rooms, and no member is ever added to an existing room.
///
/// Channels and rooms share one id space, so anyone may create an ordinary channel under the id a
/// room would get (`type/alice/bob`) before the room exists. Such a squatter blocks that room id
/// (409 for the room's users), but never reads or writes the room: room functions act on rooms
/// only, and the squatted channel gets neither members nor messages from them.
fn open_room(caller: &Caller, room_type: &str, usernames: &[String]) -> Result<String> {
    let room_type = valid_room_type(room_type)?;
    let names = valid_usernames(usernames)?;
    let (ids, canonical): (Vec<pgrx::Uuid>, Vec<String>) = resolve_usernames(&names)?.into_iter().unzip();
    if !caller.is_system() && !ids.contains(&pg_uuid(caller.id())) {
        return Err(not_a_user_of_the_room());
    }
    let id = room_id(room_type, &canonical)?;
    access::drop_if_expired(&id)?;
    let created = db::execute(
        "INSERT INTO hatchat.channels (id, owner_id, invite_model, type, max_messages, ttl_seconds, expires_at, notify_members) \
         VALUES ($1, '00000000-0000-0000-0000-000000000000', 'owner', $2, $3, $4, \
                 clock_timestamp() + $4 * interval '1 second', true) \
         ON CONFLICT (id) DO NOTHING",
        &[id.as_str().into(), room_type.into(), settings::ROOM_MAX_MESSAGES.get().into(), settings::ROOM_TTL.get().into()],
    )?;
    if created > 0 {
        access::clear_leftovers(std::slice::from_ref(&id))?;
        db::execute(
            "INSERT INTO hatchat.members (channel_id, user_id) SELECT $1, u FROM unnest($2::uuid[]) AS u",
            &[id.as_str().into(), ids.into()],
        )?;
    } else {
        check_existing_room(&id, room_type, caller, ids)?;
        // The time as a parameter, added in UTC: Citus refuses volatile functions, and stable ones
        // applied to columns, in an UPDATE of a distributed table.
        db::execute(
            "UPDATE hatchat.channels SET expires_at = hatchat.add_interval($2, ttl_seconds * interval '1 second') \
              WHERE id = $1 AND ttl_seconds IS NOT NULL",
            &[id.as_str().into(), db::clock()?.into()],
        )?;
    }
    Ok(id)
}

/// What an existing channel under a room id is to an opener: its type (NULL: an ordinary channel),
/// whether the caller is a member, and whether its members are exactly the named users.
const EXISTING_ROOM: &str = "\
    SELECT c.type, \
           EXISTS (SELECT 1 FROM hatchat.members m WHERE m.channel_id = c.id AND m.user_id = $2), \
           (SELECT array_agg(m.user_id ORDER BY m.user_id) FROM hatchat.members m WHERE m.channel_id = c.id) \
               IS NOT DISTINCT FROM (SELECT array_agg(u ORDER BY u) FROM unnest($3::uuid[]) AS u) \
      FROM hatchat.channels c WHERE c.id = $1";

/// An existing id opens only the room of that type, for one of its members (or the server
/// secret), named by its very members. The 409s say nothing of what the id holds.
fn check_existing_room(id: &str, room_type: &str, caller: &Caller, ids: Vec<pgrx::Uuid>) -> Result<()> {
    let found = db::row(EXISTING_ROOM, &[id.into(), pg_uuid(caller.id()).into(), ids.into()], |row| {
        Ok((
            row.get::<String>(1)?,
            row.get::<bool>(2)?.unwrap_or(false),
            row.get::<bool>(3)?.unwrap_or(false),
        ))
    })?;
    // Gone between the insert and this read: deleted or purged meanwhile.
    let (kind, caller_is_member, same_members) = found.ok_or_else(|| room_not_found(id))?;
    let Some(kind) = kind else {
        return Err(HatchatError::Conflict(format!(
            "room id {id:?} is taken by a channel that is not a room"
        )));
    };
    if kind != room_type {
        return Err(HatchatError::Conflict(format!("room id {id:?} is taken by a room of another type")));
    }
    if !caller.is_system() && !caller_is_member {
        return Err(not_a_user_of_the_room());
    }
    if !same_members {
        return Err(HatchatError::Conflict(format!(
            "room {id:?} exists with other members: a username it was named by changed hands"
        )));
    }
    Ok(())
}

fn not_a_user_of_the_room() -> HatchatError {
    HatchatError::unauthenticated_with("you are not one of the room's users")
}

/// `{id, type, users, messages}`, messages newest first: the room's posts only (no delete events,
/// no deleted posts).
fn room_json(id: &str) -> Result<Jsonb> {
    let room = db::first::<Jsonb>(
        "SELECT jsonb_build_object('id', c.id, 'type', c.type, \
                'users', (SELECT coalesce(jsonb_agg(u.username ORDER BY u.username), '[]'::jsonb) \
                            FROM hatchat.members m JOIN hatchat.users u ON u.id = m.user_id \
                           WHERE m.channel_id = c.id), \
                'messages', (SELECT coalesce(jsonb_agg(msg.payload ORDER BY msg.seq DESC), '[]'::jsonb) \
                               FROM hatchat.messages msg \
                              WHERE msg.channel_id = c.id AND msg.kind IS NULL AND NOT msg.deleted)) \
           FROM hatchat.channels c WHERE c.id = $1",
        &[id.into()],
    )?;
    room.ok_or_else(|| room_not_found(id))
}

fn room_not_found(id: &str) -> HatchatError {
    HatchatError::NotFound(format!("room {id:?} not found"))
}

/// Loads a live room for `caller`: 404 if missing or expired (or not a room), 401 unless the
/// caller is one of its users or the system.
fn load_room(room_id: &str, caller: &Caller) -> Result<Access> {
    let access = Access::load(valid_channel_id(room_id)?, caller).map_err(|_| room_not_found(room_id))?;
    if !access.is_room {
        return Err(room_not_found(room_id));
    }
    if access.role == Role::Stranger {
        return Err(not_a_user_of_the_room());
    }
    Ok(access)
}

/// A posted body's JSON text, checked as channel sends are: nesting (`hatchat.max_json_depth`) and
/// size (`hatchat.max_payload_bytes`: the body carries the `push` that every user's notification
/// stores), then its fields.
fn checked_body(body: Jsonb) -> Result<String> {
    let text = limits::check_payload(&body)?;
    check_message_body(&text)?;
    Ok(text)
}

/// Appends `body`'s message to a room as `caller` (who is checked), and answers the message with
/// its room id. A muted caller is answered the same, but nothing is stored.
fn post(caller: &Caller, room_id: &str, body: Jsonb, kind: Option<&str>) -> Result<Jsonb> {
    // What the server secret posts is from `$$`, as in ganomede-chat (reserved: no user takes it).
    let author = match caller {
        Caller::User(user) => user.username.as_str(),
        Caller::System => names::SERVER_SECRET_NAME,
    };
    let message = db::one::<Jsonb>(
        "SELECT jsonb_build_object('timestamp', $1->'timestamp', 'from', $2::text, \
                                   'type', coalesce(to_jsonb($3::text), $1->'type'), 'message', $1->'message')",
        &[body.into(), author.into(), kind.into()],
    )?;
    // The stored message adds `from` to the body's fields: it obeys the limit itself.
    limits::check_payload(&message)?;
    if !caller.is_muted() {
        let push = db::first::<Jsonb>("SELECT $1->'push'", &[body.into()])?;
        messages::append_to_room(room_id, caller.id(), message, push)?
            .ok_or_else(|| room_not_found(room_id))?;
    }
    db::one::<Jsonb>("SELECT jsonb_build_object('roomId', $1::text) || $2", &[room_id.into(), message.into()])
}

/// Creates a room (or returns the existing one, refreshing its expiry).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn create_room(
    token: Option<&str>,
    room_type: Option<&str>,
    usernames: Option<Vec<Option<String>>>,
) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    caller.may_write()?;
    let names: Vec<String> =
        required(usernames, "users")?.into_iter().map(Option::unwrap_or_default).collect();
    let id = open_room(&caller, required(room_type, "type")?, &names)?;
    let room = room_json(&id)?;
    // Opening an existing room may write nothing: its answer is then a read like get_room's.
    commit::durable_reads()?;
    Ok(room)
}

/// A room with its messages, newest first.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn get_room(token: Option<&str>, room_id: Option<&str>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    let room_id = required(room_id, "room id")?;
    load_room(room_id, &caller)?;
    let room = room_json(room_id)?;
    commit::durable_reads()?;
    Ok(room)
}

/// Posts `{timestamp, type, message, push?}` to a room: stored (capped), the room's expiry
/// refreshed, the other users notified.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn post_room_message(token: Option<&str>, room_id: Option<&str>, body: Option<Jsonb>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    let body = required(body, "body")?;
    checked_body(body)?;
    let room_id = required(room_id, "room id")?;
    load_room(room_id, &caller)?;
    caller.may_post()?;
    Ok(post(&caller, room_id, body, None)?)
}

/// The server secret posts `{type, users, timestamp, message}`: the room is created (or joined
/// and refreshed) and an `event` message from `$$` appended, notifying all its users.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn post_system_message(secret: Option<&str>, body: Option<Jsonb>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(secret)?;
    if !caller.is_system() {
        return Err(HatchatError::unauthenticated_with("system messages need the server secret").into());
    }
    let body = required(body, "body")?;
    // The body's `type` is the room's type here: a non-empty string too, then checked as a type.
    let text = checked_body(body)?;
    #[derive(Deserialize)]
    struct Target {
        r#type: Option<String>,
        users: Option<Vec<String>>,
    }
    let target: Target = serde_json::from_str(&text).map_err(|_| {
        HatchatError::invalid(
            "the body must be {type, users, timestamp, message}: users an array of usernames",
        )
    })?;
    let id =
        open_room(&caller, required(target.r#type.as_deref(), "type")?, &required(target.users, "users")?)?;
    Ok(post(&caller, &id, body, Some("event"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_sort_usernames_as_the_seed_does() {
        let names = vec!["bob".to_string(), "alice".to_string()];
        assert_eq!(room_id("triominos/v1", &names).unwrap(), "triominos/v1/alice/bob");
        let long = vec!["w".repeat(64), "x".repeat(64), "y".repeat(64), "z".repeat(64)];
        assert_eq!(room_id("t", &long).unwrap_err().sqlstate_code(), "22023");
    }

    #[test]
    fn usernames_are_distinct_ignoring_case() {
        assert!(valid_usernames(&["alice".into(), "bob".into()]).is_ok());
        assert!(valid_usernames(&["alice".into(), "ALICE".into()]).is_err());
        assert!(valid_usernames(&[]).is_err());
        assert!(valid_usernames(&["a/b".into()]).is_err());
    }

    #[test]
    fn message_bodies_name_their_bad_field() {
        assert!(check_message_body(
            r#"{"timestamp": 1429084016939, "type": "txt", "message": "hi", "push": {"n": 1e400}}"#
        )
        .is_ok());
        for (body, field) in [
            (r#"{"type": "txt", "message": "hi"}"#, "timestamp"),
            (r#"{"timestamp": "now", "type": "txt", "message": "hi"}"#, "timestamp"),
            (r#"{"timestamp": 1e400, "type": "txt", "message": "hi"}"#, "timestamp"),
            (r#"{"timestamp": 1, "type": "", "message": "hi"}"#, "type"),
            (r#"{"timestamp": 1, "type": 5, "message": "hi"}"#, "type"),
            (r#"{"timestamp": 1, "type": "txt"}"#, "message"),
            (r#"{"timestamp": 1, "type": "txt", "message": ""}"#, "message"),
        ] {
            let error = check_message_body(body).unwrap_err();
            assert_eq!(error.sqlstate_code(), "22023");
            assert!(error.to_string().starts_with(field), "{body}: {error}");
        }
    }
}

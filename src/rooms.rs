//! Rooms: the multi-room chat service of the second seed, on the same tables as channels. A room is
//! a channel whose id is `type/user1/user2…` (the players' usernames, sorted), with a type, a fixed
//! member list, retention (the newest `hatchat.room_max_messages`, expiring `hatchat.room_ttl`
//! after the last post or refresh) and notifications. Its messages are `{timestamp, from, type,
//! message}`, `from` being the sender's username, or `$$` for the server secret.
//!
//! Status codes follow the seed: a caller who is not one of the room's users gets 401 (not 403),
//! a banned one 403, a missing or expired room 404.

use crate::auth::{self, Caller};
use crate::channels::{self, valid_channel_id, Access, Role};
use crate::db;
use crate::error::{required, HatchatError, Result, SqlResult};
use crate::jsonb::Jsonb;
use crate::messages;
use crate::settings;
use crate::users;
use pgrx::prelude::*;
use serde::Deserialize;

pub const MAX_TYPE_CHARS: usize = 100;
pub const MAX_ROOM_USERS: usize = 32;
/// The author name of what the server secret posts, as in the seed (reserved: no user takes it).
pub const SYSTEM_NAME: &str = users::SERVER_SECRET_NAME;

pub fn valid_room_type(raw: &str) -> Result<&str> {
    let chars = raw.chars().count();
    if chars == 0 || chars > MAX_TYPE_CHARS || raw.chars().any(char::is_control) {
        return Err(HatchatError::invalid(format!(
            "type must be 1..{MAX_TYPE_CHARS} characters without control characters"
        )));
    }
    Ok(raw)
}

/// The room id of `room_type` and its users' canonical usernames, as the seed forms it.
pub fn room_id(room_type: &str, usernames: &[String]) -> Result<String> {
    let mut sorted: Vec<&str> = usernames.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let id = format!("{room_type}/{}", sorted.join("/"));
    valid_channel_id(&id).map_err(|_| {
        HatchatError::invalid(format!(
            "the room id {id:?} would be longer than {} characters",
            channels::MAX_CHANNEL_ID_CHARS
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
            let name = users::valid_username(name)?.to_string();
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
    let rows: Vec<(String, Option<pgrx::Uuid>, Option<String>)> = db::query(
        "SELECT n, u.id, u.username FROM unnest($1::text[]) WITH ORDINALITY AS g(n, i) \
           LEFT JOIN hatchat.users u ON lower(u.username) = lower(g.n) \
                                    AND u.id <> '00000000-0000-0000-0000-000000000000' \
          ORDER BY g.i",
        &[names.to_vec().into()],
        |rows| {
            rows.map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<pgrx::Uuid>(2)?,
                    row.get::<String>(3)?,
                ))
            })
            .collect()
        },
    )?;
    let unknown: Vec<&str> =
        rows.iter().filter(|(_, id, _)| id.is_none()).map(|(n, _, _)| n.as_str()).collect();
    if !unknown.is_empty() {
        return Err(HatchatError::NotFound(format!("unknown users: {}", unknown.join(", "))));
    }
    Ok(rows.into_iter().filter_map(|(_, id, name)| id.zip(name)).collect())
}

/// Creates the room of `room_type` and `usernames` or, if it exists, refreshes its expiry; its id.
/// With `caller` a user, they must be one of the users (401 otherwise, as the seed says).
fn open_room(caller: &Caller, room_type: &str, usernames: &[String]) -> Result<String> {
    let room_type = valid_room_type(room_type)?;
    let names = valid_usernames(usernames)?;
    let players = resolve_usernames(&names)?;
    if let Caller::User(user) = caller {
        if !players.iter().any(|(id, _)| db::rust_uuid(*id) == user.id) {
            return Err(HatchatError::unauthenticated_with("you are not one of the room's users"));
        }
    }
    let canonical: Vec<String> = players.iter().map(|(_, name)| name.clone()).collect();
    let id = room_id(room_type, &canonical)?;
    channels::drop_if_expired(&id)?;
    let created = db::execute(
        "INSERT INTO hatchat.channels (id, owner_id, invite_model, type, max_messages, ttl_seconds, expires_at, notify) \
         VALUES ($1, '00000000-0000-0000-0000-000000000000', 'owner', $2, $3, $4, \
                 clock_timestamp() + $4 * interval '1 second', true) \
         ON CONFLICT (id) DO NOTHING",
        &[id.as_str().into(), room_type.into(), settings::room_max_messages().into(), settings::room_ttl_seconds().into()],
    )?;
    if created > 0 {
        let ids: Vec<pgrx::Uuid> = players.iter().map(|(id, _)| *id).collect();
        db::execute(
            "INSERT INTO hatchat.members (channel_id, user_id) SELECT $1, u FROM unnest($2::uuid[]) AS u",
            &[id.as_str().into(), ids.into()],
        )?;
    } else {
        db::execute(
            "UPDATE hatchat.channels SET expires_at = clock_timestamp() + ttl_seconds * interval '1 second' \
              WHERE id = $1 AND ttl_seconds IS NOT NULL",
            &[id.as_str().into()],
        )?;
    }
    Ok(id)
}

/// `{id, type, users, messages}`, messages newest first.
fn room_json(id: &str) -> Result<Jsonb> {
    let room = db::first::<Jsonb>(
        "SELECT jsonb_build_object('id', c.id, 'type', c.type, \
                'users', (SELECT coalesce(jsonb_agg(u.username ORDER BY u.username), '[]'::jsonb) \
                            FROM hatchat.members m JOIN hatchat.users u ON u.id = m.user_id \
                           WHERE m.channel_id = c.id), \
                'messages', (SELECT coalesce(jsonb_agg(msg.payload ORDER BY msg.seq DESC), '[]'::jsonb) \
                               FROM hatchat.messages msg WHERE msg.channel_id = c.id)) \
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
        return Err(HatchatError::unauthenticated_with("you are not one of the room's users"));
    }
    Ok(access)
}

/// Appends `body`'s message to a room as `caller` (who is checked), and answers the message with
/// its room id. A muted caller is answered the same, but nothing is stored.
fn post(caller: &Caller, room_id: &str, body: Jsonb, kind: Option<&str>) -> Result<Jsonb> {
    let author = match caller {
        Caller::User(user) => user.username.clone(),
        Caller::System => SYSTEM_NAME.to_string(),
    };
    let message = db::first::<Jsonb>(
        "SELECT jsonb_build_object('timestamp', $1->'timestamp', 'from', $2::text, \
                                   'type', coalesce(to_jsonb($3::text), $1->'type'), 'message', $1->'message')",
        &[body.into(), author.into(), kind.into()],
    )?
    .expect("a SELECT without FROM returns one row");
    if !caller.is_muted() {
        let push = db::first::<Jsonb>("SELECT $1->'push'", &[body.into()])?;
        messages::append(room_id, caller.id(), message, true, push)?
            .ok_or_else(|| room_not_found(room_id))?;
    }
    Ok(db::first::<Jsonb>(
        "SELECT jsonb_build_object('roomId', $1::text) || $2",
        &[room_id.into(), message.into()],
    )?
    .expect("a SELECT without FROM returns one row"))
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
    Ok(room_json(&id)?)
}

/// A room with its messages, newest first.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn get_room(token: Option<&str>, room_id: Option<&str>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    let room_id = required(room_id, "room id")?;
    load_room(room_id, &caller)?;
    Ok(room_json(room_id)?)
}

/// Posts `{timestamp, type, message, push?}` to a room: stored (capped), the room's expiry
/// refreshed, the other users notified.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn post_room_message(token: Option<&str>, room_id: Option<&str>, body: Option<Jsonb>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    let body = required(body, "body")?;
    check_message_body(&body.to_text())?;
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
    let text = body.to_text();
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
    // The body's `type` is the room's type here: a non-empty string too, then checked as a type.
    check_message_body(&text)?;
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

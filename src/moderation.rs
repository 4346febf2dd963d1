//! Moderation, for channels and rooms alike. Admins (a database role granted hatchat_admin, or the
//! server secret) ban and mute; users disable their own chat and block others.
//!
//! - banned: 403 on every write while the ban lasts (a user may still delete their account);
//! - muted: posts answer as usual but are neither stored nor delivered (a shadow mute: the poster is not told);
//! - chat disabled: 403 on posting, and no notifications;
//! - blocked: the blocker gets no notifications of the blocked user's posts.
//!
//! The self-service functions take an optional `self_id`: the gateway passes the `:id` of
//! `/users/:id/...` and the call is refused unless it is the caller.

use crate::auth::{self, UserState};
use crate::db::{self, pg_uuid, rust_uuid, Jsonb};
use crate::error::{required, HatchatError, Result, SqlResult};
use crate::users;
use pgrx::prelude::*;

fn existing_user(user_id: Option<pgrx::Uuid>) -> Result<pgrx::Uuid> {
    let user_id = required(user_id, "user id")?;
    if rust_uuid(user_id) == auth::SYSTEM_USER || !users::user_exists(user_id)? {
        return Err(users::user_not_found(user_id));
    }
    Ok(user_id)
}

/// Sets one of a user's flags with `set` (the SET clause, of user `$1` to `$2`) and answers the
/// user's moderation state. The UPDATE returns plain columns and the JSON is shaped outside the
/// write, as Citus requires of reference-table writes (see users.rs).
macro_rules! set_user_flag {
    ($set:literal) => {
        concat!(
            "WITH w AS (UPDATE hatchat.users SET ",
            $set,
            " RETURNING id, banned_until, muted, chat_disabled) \
             SELECT hatchat.moderation_json(w.id, w.banned_until, w.muted, w.chat_disabled) FROM w"
        )
    };
}

/// Runs a `set_user_flag!` statement for `user_id`; 404 when the user is gone.
fn update_user_flags(
    sql: &'static str,
    user_id: pgrx::Uuid,
    value: pgrx::datum::DatumWithOid<'_>,
) -> Result<Jsonb> {
    db::first::<Jsonb>(sql, &[user_id.into(), value])?.ok_or_else(|| users::user_not_found(user_id))
}

/// Bans a user until `until` (a past time lifts the ban).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn ban_user(
    token: Option<&str>,
    user_id: Option<pgrx::Uuid>,
    until: Option<pgrx::datum::TimestampWithTimeZone>,
) -> SqlResult<Jsonb> {
    auth::require_admin(token)?;
    let user_id = existing_user(user_id)?;
    let until = required(until, "until")?;
    Ok(update_user_flags(set_user_flag!("banned_until = $2 WHERE id = $1"), user_id, until.into())?)
}

#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn unban_user(token: Option<&str>, user_id: Option<pgrx::Uuid>) -> SqlResult<Jsonb> {
    auth::require_admin(token)?;
    let user_id = existing_user(user_id)?;
    Ok(update_user_flags(set_user_flag!("banned_until = NULL WHERE id = $1 AND $2"), user_id, true.into())?)
}

#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn mute_user(token: Option<&str>, user_id: Option<pgrx::Uuid>, muted: Option<bool>) -> SqlResult<Jsonb> {
    auth::require_admin(token)?;
    let user_id = existing_user(user_id)?;
    let muted = required(muted, "muted")?;
    Ok(update_user_flags(set_user_flag!("muted = $2 WHERE id = $1"), user_id, muted.into())?)
}

/// A user turns their own chat off (no posting, no notifications) or on again.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn set_chat_disabled(
    token: Option<&str>,
    disabled: Option<bool>,
    self_id: default!(Option<pgrx::Uuid>, "NULL"),
) -> SqlResult<Jsonb> {
    let user = pg_uuid(auth::require_self(token, self_id)?.id);
    let disabled = required(disabled, "disabled")?;
    Ok(update_user_flags(set_user_flag!("chat_disabled = $2 WHERE id = $1"), user, disabled.into())?)
}

fn blocked_json(user: &UserState) -> Result<Jsonb> {
    db::one::<Jsonb>(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('id', u.id, 'username', u.username) ORDER BY b.created_at, u.id), '[]'::jsonb) \
           FROM hatchat.blocks b JOIN hatchat.users u ON u.id = b.blocked_user_id WHERE b.user_id = $1",
        &[pg_uuid(user.id).into()],
    )
}

/// The caller blocks `user_id`; the answer is their list of blocked users.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn block_user(
    token: Option<&str>,
    user_id: Option<pgrx::Uuid>,
    self_id: default!(Option<pgrx::Uuid>, "NULL"),
) -> SqlResult<Jsonb> {
    let user = auth::require_self(token, self_id)?;
    let blocked = existing_user(user_id)?;
    if rust_uuid(blocked) == user.id {
        return Err(HatchatError::invalid("a user cannot block themselves").into());
    }
    db::execute(
        "INSERT INTO hatchat.blocks (user_id, blocked_user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[pg_uuid(user.id).into(), blocked.into()],
    )?;
    Ok(blocked_json(&user)?)
}

#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn unblock_user(
    token: Option<&str>,
    user_id: Option<pgrx::Uuid>,
    self_id: default!(Option<pgrx::Uuid>, "NULL"),
) -> SqlResult<Jsonb> {
    let user = auth::require_self(token, self_id)?;
    let blocked = required(user_id, "user id")?;
    db::execute(
        "DELETE FROM hatchat.blocks WHERE user_id = $1 AND blocked_user_id = $2",
        &[pg_uuid(user.id).into(), blocked.into()],
    )?;
    Ok(blocked_json(&user)?)
}

/// The users the caller blocked: `[{id, username}]`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn list_blocked(token: Option<&str>, self_id: default!(Option<pgrx::Uuid>, "NULL")) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    let user = caller.user()?;
    if self_id.is_some_and(|id| rust_uuid(id) != user.id) {
        return Err(HatchatError::Forbidden("a user can only see their own blocks".into()).into());
    }
    Ok(blocked_json(user)?)
}

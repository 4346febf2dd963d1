//! Users: an id, a username unique ignoring case, and the RSA public key that verifies their
//! requests. Who may register is the operator's setting (`hatchat.registration`: open, as the
//! reference client needs, by default); every later change needs the user's own token.

use crate::access;
use crate::auth::{self, keys, secret, SYSTEM_USER};
use crate::db::{self, pg_uuid, Jsonb};
use crate::error::{required, HatchatError, Result, SqlResult};
use crate::names::{self, valid_new_username};
use crate::placement::Placement;
use crate::settings::{self, Registration};
use pgrx::prelude::*;
use uuid::Uuid;

// Writes return plain columns and shape their JSON outside the write (`WITH w AS (... RETURNING
// cols) SELECT hatchat.user_json(...)`): Citus refuses non-IMMUTABLE functions in the RETURNING
// clause of a write to a reference table (users is one on a cluster).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn register_user(
    id: Option<pgrx::Uuid>,
    public_key: Option<&str>,
    username: Option<&str>,
    secret: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    may_register(secret)?;
    let id = required(id, "id")?;
    if db::rust_uuid(id) == SYSTEM_USER {
        return Err(HatchatError::invalid("the nil uuid is reserved for the system user").into());
    }
    // Anyone can compute an issuer user's id (auth/jwt.rs): registering one would take that user.
    if db::rust_uuid(id).get_version_num() == 5 {
        return Err(HatchatError::invalid(
            "name-based (version 5) uuids are the ids of trusted issuers' users: register a random one",
        )
        .into());
    }
    let username = valid_new_username(required(username, "username")?)?;
    let public_key = required(public_key, "public key")?.trim();
    keys::parse_public_key(public_key)?;
    let inserted = db::first::<Jsonb>(
        "WITH w AS (INSERT INTO hatchat.users (id, username, public_key) VALUES ($1, $2, $3) \
                    ON CONFLICT DO NOTHING RETURNING id, username, public_key) \
         SELECT hatchat.user_json(w.id, w.username, w.public_key) FROM w",
        &[id.into(), username.into(), public_key.into()],
    )?;
    // Read after the insert, in a statement of its own: a deletion of this id that committed while
    // the insert waited for it is seen here, and the insert is undone with the call.
    if auth::was_deleted(id)? {
        return Err(HatchatError::Conflict(format!(
            "user id {id} belonged to a deleted user: ids are never registered again"
        ))
        .into());
    }
    match inserted {
        Some(user) => Ok(user),
        None if user_exists(id)? => {
            Err(HatchatError::Conflict(format!("user id {id} is already registered")).into())
        }
        None => Err(username_taken(username).into()),
    }
}

/// Whether this call may register a user, under `hatchat.registration`. With `secret`, only a
/// call that carries the server secret (an app's backend, over SQL or as POST /users's
/// Authorization) or a role granted hatchat_admin; `open` ignores what the call carries.
fn may_register(secret: Option<&str>) -> Result<()> {
    match settings::REGISTRATION.get() {
        Registration::Open => Ok(()),
        Registration::Closed => Err(HatchatError::Forbidden(
            "registration is closed on this server (hatchat.registration = closed)".into(),
        )),
        Registration::Secret if secret::caller_role_is_admin() => Ok(()),
        Registration::Secret => match secret {
            Some(_) if auth::authenticate(secret)?.is_system() => Ok(()),
            _ => Err(HatchatError::Forbidden(
                "registration on this server needs the server secret (hatchat.registration = \
                 secret): the app's backend registers its users"
                    .into(),
            )),
        },
    }
}

#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn get_user(id: Option<pgrx::Uuid>) -> SqlResult<Jsonb> {
    let id = required(id, "id")?;
    let user = db::first::<Jsonb>(
        "SELECT hatchat.user_json(u.id, u.username, u.public_key) FROM hatchat.users u WHERE u.id = $1",
        &[id.into()],
    )?;
    Ok(user.ok_or_else(|| user_not_found(id))?)
}

#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn update_user(token: Option<&str>, id: Option<pgrx::Uuid>, username: Option<&str>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    caller.may_write()?;
    let id = required(id, "id")?;
    only_self(caller.user()?.id, id)?;
    let username = valid_new_username(required(username, "username")?)?;
    if names::held_by_another(username, id)? {
        return Err(username_taken(username).into());
    }
    let updated = db::first::<Jsonb>(
        "WITH w AS (UPDATE hatchat.users SET username = $2 WHERE id = $1 RETURNING id, username, public_key) \
         SELECT hatchat.user_json(w.id, w.username, w.public_key) FROM w",
        &[id.into(), username.into()],
    )?;
    Ok(updated.ok_or_else(|| user_not_found(id))?)
}

/// Deletes the user with their memberships and the channels they own (and those channels'
/// messages). Their messages in other channels stay; they read back with `username: null`. A
/// banned user may still delete their account.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn delete_user(token: Option<&str>, id: Option<pgrx::Uuid>) -> SqlResult<()> {
    let caller = auth::authenticate(token)?;
    let id = required(id, "id")?;
    only_self(caller.user()?.id, id)?;
    // Locked first: a channel created meanwhile (its owner key check needs this row) waits for
    // this deletion and then fails, instead of being taken by the cascade with its messages left.
    db::execute("SELECT 1 FROM hatchat.users WHERE id = $1 FOR UPDATE", &[id.into()])?;
    Placement::here().one_connection_per_node()?;
    let owned =
        db::column::<String>("SELECT c.id FROM hatchat.channels c WHERE c.owner_id = $1", &[id.into()])?;
    access::delete_channels(&owned, false)?;
    let deleted = db::execute("DELETE FROM hatchat.users WHERE id = $1", &[id.into()])?;
    if deleted == 0 {
        return Err(user_not_found(id).into());
    }
    // The id stays taken for good: whoever registered it next would be the author of these
    // messages (edits and deletes are the author's).
    db::execute("INSERT INTO hatchat.deleted_users (id) VALUES ($1) ON CONFLICT DO NOTHING", &[id.into()])?;
    Ok(())
}

pub fn user_exists(id: pgrx::Uuid) -> Result<bool> {
    Ok(db::first::<bool>("SELECT true FROM hatchat.users WHERE id = $1", &[id.into()])?.is_some())
}

fn only_self(caller: Uuid, id: pgrx::Uuid) -> Result<()> {
    if pg_uuid(caller) != id {
        return Err(HatchatError::Forbidden("a user can only change or delete themselves".into()));
    }
    Ok(())
}

pub fn user_not_found(id: pgrx::Uuid) -> HatchatError {
    HatchatError::NotFound(format!("user {id} not found"))
}

fn username_taken(username: &str) -> HatchatError {
    HatchatError::Conflict(format!("username {username:?} is taken"))
}

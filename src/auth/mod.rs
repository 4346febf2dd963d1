//! Who is calling. A request carries a token its user signed with their own RSA key; we check the
//! token's shape and lifetime (pure, in `token`), then its signature against the key stored at
//! registration (parsed once per backend, in `keys`).

pub mod keys;
pub mod token;

use crate::db;
use crate::error::{HatchatError, Result, SqlResult};
use crate::settings;
use keys::{KeyCache, VerifyingKey};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use token::SignedToken;
use uuid::Uuid;

/// The reserved system user: author of join messages, never a caller.
pub const SYSTEM_USER: Uuid = Uuid::nil();

thread_local! {
    static KEYS: RefCell<KeyCache> = RefCell::new(KeyCache::new(4096));
}

/// Verified against when the user does not exist, so that an unknown user costs the same time as a
/// wrong signature and timing does not reveal which ids are registered.
fn decoy_key() -> &'static VerifyingKey {
    static DECOY: OnceLock<VerifyingKey> = OnceLock::new();
    DECOY.get_or_init(|| keys::parse_public_key(include_str!("decoy.pub.pem")).expect("decoy key parses"))
}

/// The user a raw Authorization value speaks for, or 28000.
pub fn authenticate(raw_token: Option<&str>) -> Result<Uuid> {
    let token = parse_unexpired(raw_token)?;
    let stored_pem = if token.user_id == SYSTEM_USER {
        None
    } else {
        db::first::<String>(
            "SELECT public_key FROM hatchat.users WHERE id = $1",
            &[db::pg_uuid(token.user_id).into()],
        )?
    };
    verify(&token, stored_pem.as_deref())
}

/// Authenticates many tokens with one lookup of their users' keys (for batches).
pub fn authenticate_all(raw_tokens: &[Option<&str>]) -> Result<Vec<Result<Uuid>>> {
    let tokens: Vec<Result<SignedToken>> = raw_tokens.iter().map(|raw| parse_unexpired(*raw)).collect();
    let ids: Vec<pgrx::Uuid> = tokens.iter().flatten().map(|t| db::pg_uuid(t.user_id)).collect();
    let keys: HashMap<Uuid, String> = db::query(
        "SELECT id, public_key FROM hatchat.users WHERE id = ANY($1) AND public_key IS NOT NULL",
        &[ids.into()],
        |rows| {
            rows.filter_map(|row| match (row.get::<pgrx::Uuid>(1), row.get::<String>(2)) {
                (Ok(Some(id)), Ok(Some(pem))) => Some(Ok((db::rust_uuid(id), pem))),
                _ => None,
            })
            .collect()
        },
    )?;
    Ok(tokens
        .into_iter()
        .map(|token| {
            let token = token?;
            verify(&token, keys.get(&token.user_id).map(String::as_str))
        })
        .collect())
}

fn parse_unexpired(raw_token: Option<&str>) -> Result<SignedToken<'_>> {
    let raw = raw_token.ok_or_else(|| HatchatError::malformed_token("no token was given"))?;
    let token = token::parse(raw)?;
    token.check_lifetime(jiff::Timestamp::now(), settings::max_token_lifetime())?;
    Ok(token)
}

/// Checks the signature against the key the user registered (`None`: no such user, or the system
/// user, who has no key — verified against the decoy so both cost the same).
fn verify(token: &SignedToken, stored_pem: Option<&str>) -> Result<Uuid> {
    let Some(pem) = stored_pem else {
        let _ = token.verify(decoy_key());
        return Err(HatchatError::unauthenticated());
    };
    let key = KEYS
        .with_borrow_mut(|cache| cache.get_or_parse(token.user_id, pem))
        .map_err(|_| HatchatError::unauthenticated())?;
    token.verify(&key)?;
    Ok(token.user_id)
}

/// `hatchat.authenticate(token)`: the id of the user who signed the token.
#[pg_extern(name = "authenticate", security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn authenticate_sql(token: Option<&str>) -> SqlResult<pgrx::Uuid> {
    Ok(db::pg_uuid(authenticate(token)?))
}

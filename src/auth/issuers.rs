//! Trusted issuers: an app's own login signs its users in. An admin (hatchat_admin or the server
//! secret) adds an issuer: its `iss`, its keys (a JWKS), the audience its tokens must name, the
//! claim that gives the username, and optionally the URL its keys are fetched from (by the
//! gateway, through `set_issuer_keys`). A token whose claims name a trusted `iss` is verified here
//! (jwt.rs) wherever a token is taken, and speaks for the user of (`iss`, `sub`): a name-based
//! uuid that self-registration may never take (users.rs), made on first use.
//!
//! Each backend keeps each issuer's parsed keys with the digest of the JWKS they came from; every
//! call reads the issuer's row (with the user's, in one statement) and parses the keys again when
//! the digest differs, so a removed issuer or key stops working on the next call. A digest, not a
//! counter: an issuer removed and added again, or an update rolled back, cannot reuse a number
//! that a backend's stale copy still carries.

use super::jwt::{self, Key, Rules};
use super::{require_admin, UserState};
use crate::db::Jsonb;
use crate::db::{self, pg_uuid};
use crate::error::{required, HatchatError, Result, SqlResult};
use crate::names::{self, valid_new_username, valid_username, MAX_USERNAME_CHARS};
use crate::settings;
use jiff::Timestamp;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use uuid::Uuid;

/// An issuer as a backend parsed it, with the digest of its JWKS.
struct Parsed {
    digest: String,
    keys: Rc<Vec<Key>>,
}

thread_local! {
    static PARSED: RefCell<HashMap<String, Parsed>> = RefCell::new(HashMap::new());
}

/// The issuer (its keys only when this backend's copy is older) and its user, in one snapshot.
const ISSUER_AND_USER: &str = "\
    SELECT i.keys_digest, CASE WHEN i.keys_digest <> $2 THEN i.jwks::text END, i.audience, \
           i.username_claim, u.id IS NOT NULL, u.issuer, u.username, \
           CASE WHEN u.banned_until > now() THEN hatchat.iso_time(u.banned_until) END, u.muted, \
           u.chat_disabled, EXISTS (SELECT 1 FROM hatchat.deleted_users d WHERE d.id = $3) \
      FROM hatchat.issuers i LEFT JOIN hatchat.users u ON u.id = $3 \
     WHERE i.iss = $1";

struct Row {
    digest: String,
    jwks: Option<String>,
    audience: String,
    username_claim: String,
    user: Option<(Option<String>, UserState)>,
    deleted: bool,
}

/// Who a trusted issuer's token speaks for, and until when; 28000 for anything else.
pub fn authenticate(raw: &str, iss: &str) -> Result<(UserState, Timestamp)> {
    let token = jwt::parse(raw)?;
    let claimed = token.claimed_user_id().unwrap_or(Uuid::nil());
    let cached = PARSED.with_borrow(|parsed| parsed.get(iss).map(|p| p.digest.clone())).unwrap_or_default();
    // The same answer as a bad signature: which issuers are trusted is no caller's business.
    let row = read(iss, &cached, claimed)?.ok_or_else(HatchatError::unauthenticated)?;
    let keys = keys_of(iss, &row)?;
    let rules = Rules {
        audience: &row.audience,
        username_claim: &row.username_claim,
        max_lifetime: settings::max_token_lifetime(),
        now: Timestamp::now(),
    };
    let verified = token.verify(&keys, &rules)?;
    if row.deleted {
        return Err(HatchatError::unauthenticated_with("this user was deleted"));
    }
    let user = match row.user {
        Some((Some(owner), user)) if owner == iss => rename(user, verified.username.as_deref())?,
        // The id is a self-registered user's (registered before issuers existed): not this one.
        Some(_) => return Err(HatchatError::unauthenticated()),
        None => create(verified.user_id, iss, verified.username.as_deref(), &row.username_claim)?,
    };
    Ok((user, verified.expires_at))
}

fn read(iss: &str, cached: &str, user: Uuid) -> Result<Option<Row>> {
    let args = [iss.into(), cached.into(), pg_uuid(user).into()];
    db::query(ISSUER_AND_USER, &args, |rows| {
        let Some(row) = rows.into_iter().next() else { return Ok(None) };
        let user = match row.get::<bool>(5)?.unwrap_or(false) {
            true => Some((row.get::<String>(6)?, UserState::from_columns(&row, user, 7)?)),
            false => None,
        };
        Ok(Some(Row {
            digest: row.get::<String>(1)?.unwrap_or_default(),
            jwks: row.get::<String>(2)?,
            audience: row.get::<String>(3)?.unwrap_or_default(),
            username_claim: row.get::<String>(4)?.unwrap_or_default(),
            user,
            deleted: row.get::<bool>(11)?.unwrap_or(false),
        }))
    })
}

/// The issuer's keys: this backend's copy, or the row's, parsed and kept.
fn keys_of(iss: &str, row: &Row) -> Result<Rc<Vec<Key>>> {
    let Some(text) = &row.jwks else {
        return PARSED
            .with_borrow(|parsed| parsed.get(iss).map(|p| Rc::clone(&p.keys)))
            .ok_or_else(|| HatchatError::Internal("an issuer's keys were neither cached nor read".into()));
    };
    let document: serde_json::Value =
        serde_json::from_str(text).map_err(|e| HatchatError::Internal(e.to_string()))?;
    let keys = Rc::new(jwt::parse_jwks(&document)?);
    let parsed = Parsed { digest: row.digest.clone(), keys: Rc::clone(&keys) };
    PARSED.with_borrow_mut(|cache| cache.insert(iss.to_string(), parsed));
    Ok(keys)
}

const CREATE_USER: &str = "\
    INSERT INTO hatchat.users (id, username, issuer) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const USER_STATE: &str = "\
    SELECT username, CASE WHEN banned_until > now() THEN hatchat.iso_time(banned_until) END, muted, \
           chat_disabled \
      FROM hatchat.users WHERE id = $1";

/// The issuer's user, made at their first token: named by the username claim; when that name is
/// taken or reserved, by the claim and the first six hex digits of their id (the same every
/// time); when that is taken too, by the claim and a random suffix, so that nobody who registers
/// both names first can keep an app's user out. Names are cut to leave room for the suffix.
fn create(id: Uuid, iss: &str, claim: Option<&str>, claim_name: &str) -> Result<UserState> {
    let wanted = claim.ok_or_else(|| {
        HatchatError::unauthenticated_with(format!("the token has no {claim_name:?} claim (its username)"))
    })?;
    let wanted = valid_username(wanted)?;
    let stem = |room: usize| -> String { wanted.chars().take(MAX_USERNAME_CHARS - room).collect() };
    let fixed = format!("{}-{}", stem(7), &id.simple().to_string()[..6]);
    let random = format!("{}-{}", stem(9), &Uuid::new_v4().simple().to_string()[..8]);
    for name in [wanted, &fixed, &random] {
        if valid_new_username(name).is_err() {
            continue;
        }
        db::execute(CREATE_USER, &[pg_uuid(id).into(), name.into(), iss.into()])?;
        // Read in a statement of its own: this call's insert, or one that a first call of the same
        // user's committed meanwhile.
        if let Some(user) = state(id)? {
            if super::was_deleted(pg_uuid(id))? {
                return Err(HatchatError::unauthenticated_with("this user was deleted"));
            }
            return Ok(user);
        }
    }
    Err(HatchatError::Conflict(format!("username {wanted:?} is taken, and so are {fixed:?} and {random:?}")))
}

const RENAME: &str = "\
    UPDATE hatchat.users SET username = $2 WHERE id = $1 \
       AND NOT EXISTS (SELECT 1 FROM hatchat.users o WHERE lower(o.username) = lower($2) AND o.id <> $1)";

/// A changed username claim renames the user, when the new name is free and allowed. Looked up
/// first, so that a claim someone else holds costs a read, not a write, on every call.
fn rename(mut user: UserState, claim: Option<&str>) -> Result<UserState> {
    let Some(name) = claim.and_then(|claim| valid_new_username(claim).ok()) else { return Ok(user) };
    if name == user.username || names::held_by_another(name, pg_uuid(user.id))? {
        return Ok(user);
    }
    if db::execute(RENAME, &[pg_uuid(user.id).into(), name.into()])? == 1 {
        user.username = name.to_string();
    }
    Ok(user)
}

fn state(id: Uuid) -> Result<Option<UserState>> {
    db::query(USER_STATE, &[pg_uuid(id).into()], |rows| {
        let Some(row) = rows.into_iter().next() else { return Ok(None) };
        Ok(Some(UserState::from_columns(&row, id, 1)?))
    })
}

/// An issuer as the admin functions answer it (its keys by id only).
macro_rules! issuer_json {
    () => {
        "jsonb_build_object('iss', i.iss, 'audience', i.audience, 'usernameClaim', i.username_claim, \
            'jwksUrl', i.jwks_url, 'keysUpdatedAt', hatchat.iso_time(i.keys_updated_at), \
            'keyIds', (SELECT coalesce(jsonb_agg(k->'kid'), '[]'::jsonb) \
                         FROM jsonb_array_elements(i.jwks->'keys') k))"
    };
}

/// `hatchat.add_issuer(token, iss, jwks, audience, username_claim, jwks_url)`: trusts an app's
/// login. For admins. 23505 when the issuer is already trusted.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn add_issuer(
    token: Option<&str>,
    iss: Option<&str>,
    jwks: Option<Jsonb>,
    audience: Option<&str>,
    username_claim: default!(Option<&str>, "'preferred_username'"),
    jwks_url: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    require_admin(token)?;
    let iss = bounded_text(required(iss, "iss")?, "iss")?;
    let audience = bounded_text(required(audience, "audience")?, "audience")?;
    let claim = bounded_text(username_claim.unwrap_or("preferred_username"), "username claim")?;
    let jwks = valid_jwks(required(jwks, "jwks")?)?;
    if let Some(url) = jwks_url.filter(|url| !secure_url(url)) {
        return Err(HatchatError::invalid(format!(
            "jwks_url must be an https URL (http only on the loopback), got {url:?}"
        ))
        .into());
    }
    const ADD: &str = concat!(
        "WITH i AS (INSERT INTO hatchat.issuers (iss, audience, username_claim, jwks, jwks_url, keys_digest) \
                    VALUES ($1, $2, $3, $4::text::jsonb, $5, md5($4::text::jsonb::text)) \
                    ON CONFLICT DO NOTHING RETURNING *) \
         SELECT ",
        issuer_json!(),
        " FROM i"
    );
    let args = [iss.into(), audience.into(), claim.into(), jwks.into(), jwks_url.into()];
    db::first::<Jsonb>(ADD, &args)?
        .ok_or_else(|| HatchatError::Conflict(format!("issuer {iss:?} is already trusted")).into())
}

/// `hatchat.list_issuers(token)`: the trusted issuers. For admins.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn list_issuers(token: Option<&str>) -> SqlResult<Jsonb> {
    require_admin(token)?;
    const LIST: &str = concat!(
        "SELECT coalesce(jsonb_agg(",
        issuer_json!(),
        " ORDER BY i.iss), '[]'::jsonb) FROM hatchat.issuers i"
    );
    Ok(db::first::<Jsonb>(LIST, &[])?.unwrap_or(Jsonb::from_text("[]")?))
}

/// `hatchat.remove_issuer(token, iss)`: its tokens stop working at once; its users and their
/// messages stay. For admins.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn remove_issuer(token: Option<&str>, iss: Option<&str>) -> SqlResult<Jsonb> {
    require_admin(token)?;
    let iss = required(iss, "iss")?;
    match db::execute("DELETE FROM hatchat.issuers WHERE iss = $1", &[iss.into()])? {
        0 => Err(HatchatError::NotFound(format!("no trusted issuer {iss:?}")).into()),
        _ => Ok(Jsonb::from_text(r#"{"removed": true}"#)?),
    }
}

/// `hatchat.set_issuer_keys(iss, jwks)`: replaces an issuer's keys (the gateway, after fetching
/// its JWKS URL; an admin, by hand). Only hatchat_gateway and hatchat_admin may call it. Keys that
/// did not change keep their digest, so backends keep their parsed copy.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn set_issuer_keys(iss: Option<&str>, jwks: Option<Jsonb>) -> SqlResult<Jsonb> {
    let iss = required(iss, "iss")?;
    let jwks = valid_jwks(required(jwks, "jwks")?)?;
    const SET: &str = concat!(
        "WITH i AS (UPDATE hatchat.issuers SET jwks = $2::text::jsonb, keys_updated_at = now(), \
                keys_digest = md5($2::text::jsonb::text) \
          WHERE iss = $1 RETURNING *) \
         SELECT ",
        issuer_json!(),
        " FROM i"
    );
    db::first::<Jsonb>(SET, &[iss.into(), jwks.into()])?
        .ok_or_else(|| HatchatError::NotFound(format!("no trusted issuer {iss:?}")).into())
}

/// `hatchat.issuer_key_sources()`: `[{iss, jwksUrl}]`, the issuers whose keys the gateway fetches.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn issuer_key_sources() -> SqlResult<Jsonb> {
    let sql = "SELECT coalesce(jsonb_agg(jsonb_build_object('iss', iss, 'jwksUrl', jwks_url) ORDER BY iss), \
                               '[]'::jsonb) FROM hatchat.issuers WHERE jwks_url IS NOT NULL";
    Ok(db::first::<Jsonb>(sql, &[])?.unwrap_or(Jsonb::from_text("[]")?))
}

/// A JWKS whose every key hatchat can verify with, as text.
fn valid_jwks(jwks: Jsonb) -> Result<String> {
    let text = jwks.to_text();
    let document: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| HatchatError::invalid(format!("jwks: {e}")))?;
    jwt::parse_jwks(&document)?;
    Ok(text)
}

/// https, or http to this machine: keys fetched in the clear could be anyone's.
fn secure_url(url: &str) -> bool {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
    url.starts_with("https://")
        || loopback.iter().any(|host| {
            url.strip_prefix(host).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        })
}

fn bounded_text<'a>(text: &'a str, what: &str) -> Result<&'a str> {
    let text = text.trim();
    if text.is_empty() || text.len() > 1000 || text.chars().any(char::is_control) {
        return Err(HatchatError::invalid(format!(
            "{what} must be 1..1000 bytes without control characters"
        )));
    }
    Ok(text)
}

extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION hatchat.set_issuer_keys(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.set_issuer_keys(text, jsonb) TO hatchat_gateway, hatchat_admin;
REVOKE EXECUTE ON FUNCTION hatchat.issuer_key_sources() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.issuer_key_sources() TO hatchat_gateway, hatchat_admin;
"#,
    name = "issuer_key_grants",
    requires = [set_issuer_keys, issuer_key_sources]
);

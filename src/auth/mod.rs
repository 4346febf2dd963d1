//! Who is calling. A request carries a token its user signed with their own RSA key; we check the
//! token's shape and lifetime (pure, in `token`), then its signature against the key stored at
//! registration (parsed once per backend, in `keys`, which also remembers the last token each key
//! verified). Wherever a token is accepted, the server
//! secret is too (`secret`): it acts as the system.

pub mod issuers;
pub mod jwt;
pub mod keys;
pub mod secret;
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

/// The reserved system user: author of join messages and of everything the server secret posts.
pub const SYSTEM_USER: Uuid = Uuid::nil();

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    User(UserState),
    /// The holder of the server secret: may read and post in any channel or room.
    System,
}

/// A user as authorization sees them, read with their key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    pub id: Uuid,
    pub username: String,
    pub banned_until: Option<String>,
    pub muted: bool,
    pub chat_disabled: bool,
}

impl UserState {
    /// The user `id` from a row whose columns from `first` on are: username, banned until (null
    /// when no ban lasts), muted, chat disabled.
    fn from_columns(row: &pgrx::spi::SpiHeapTupleData, id: Uuid, first: usize) -> Result<Self> {
        Ok(UserState {
            id,
            username: row.get::<String>(first)?.unwrap_or_default(),
            banned_until: row.get::<String>(first + 1)?,
            muted: row.get::<bool>(first + 2)?.unwrap_or(false),
            chat_disabled: row.get::<bool>(first + 3)?.unwrap_or(false),
        })
    }
}

impl Caller {
    /// The author id of what this caller posts (the system user for the system).
    pub fn id(&self) -> Uuid {
        match self {
            Caller::User(user) => user.id,
            Caller::System => SYSTEM_USER,
        }
    }

    pub fn is_system(&self) -> bool {
        matches!(self, Caller::System)
    }

    /// For operations only a user can do (their own account, their own blocks).
    pub fn user(&self) -> Result<&UserState> {
        match self {
            Caller::User(user) => Ok(user),
            Caller::System => {
                Err(HatchatError::Forbidden("this needs a user's token, not the server secret".into()))
            }
        }
    }

    /// Every write refuses a banned user while the ban lasts.
    pub fn may_write(&self) -> Result<&Self> {
        match self {
            Caller::User(UserState { banned_until: Some(until), .. }) => {
                Err(HatchatError::Forbidden(format!("you are banned until {until}")))
            }
            _ => Ok(self),
        }
    }

    /// Posting also refuses a user who disabled their chat.
    pub fn may_post(&self) -> Result<&Self> {
        self.may_write()?;
        match self {
            Caller::User(user) if user.chat_disabled => {
                Err(HatchatError::Forbidden("you disabled chat: enable it to post".into()))
            }
            _ => Ok(self),
        }
    }

    /// A muted user's posts answer as usual but are not stored (a shadow mute:
    /// the poster is not told).
    pub fn is_muted(&self) -> bool {
        matches!(self, Caller::User(user) if user.muted)
    }
}

thread_local! {
    static KEYS: RefCell<KeyCache> = RefCell::new(KeyCache::new(4096));
}

/// Verified against when the user does not exist, so that an unknown user costs the same time as a
/// wrong signature and timing does not reveal which ids are registered.
fn decoy_key() -> &'static VerifyingKey {
    static DECOY: OnceLock<VerifyingKey> = OnceLock::new();
    DECOY.get_or_init(|| keys::parse_public_key(include_str!("decoy.pub.pem")).expect("decoy key parses"))
}

/// The key and moderation state of users, by id.
const USERS_BY_ID: &str = "\
    SELECT id, public_key, username, \
           CASE WHEN banned_until > now() THEN hatchat.iso_time(banned_until) END, muted, chat_disabled \
      FROM hatchat.users WHERE id = ANY($1) AND public_key IS NOT NULL";

struct Stored {
    pem: String,
    state: UserState,
}

fn load_users(ids: Vec<pgrx::Uuid>) -> Result<HashMap<Uuid, Stored>> {
    db::query(USERS_BY_ID, &[ids.into()], |rows| {
        let mut users = HashMap::new();
        for row in rows {
            let (Some(id), Some(pem)) = (row.get::<pgrx::Uuid>(1)?, row.get::<String>(2)?) else {
                continue;
            };
            let id = db::rust_uuid(id);
            users.insert(id, Stored { pem, state: UserState::from_columns(&row, id, 3)? });
        }
        Ok(users)
    })
}

/// Whether `id` belonged to a deleted user: such an id never registers or signs in again.
pub fn was_deleted(id: pgrx::Uuid) -> Result<bool> {
    Ok(db::first::<bool>("SELECT true FROM hatchat.deleted_users WHERE id = $1", &[id.into()])?.is_some())
}

/// Who a raw Authorization value speaks for, or 28000.
pub fn authenticate(raw_token: Option<&str>) -> Result<Caller> {
    authenticate_all(&[raw_token])?.pop().expect("one answer per token")
}

/// Authenticates many tokens with one lookup of their users (for batches).
pub fn authenticate_all(raw_tokens: &[Option<&str>]) -> Result<Vec<Result<Caller>>> {
    // Which door each token knocks on, decided once: an issuer's, or the self-signed one (whose
    // users are then read together).
    let tokens: Vec<Presented> = raw_tokens.iter().map(|raw| present(*raw)).collect();
    let ids: Vec<pgrx::Uuid> = tokens
        .iter()
        .filter_map(|token| match token {
            Presented::SelfSigned(Ok(token)) => Some(db::pg_uuid(token.user_id)),
            _ => None,
        })
        .collect();
    let users = if ids.is_empty() { HashMap::new() } else { load_users(ids)? };
    let mut callers = Vec::with_capacity(tokens.len());
    let mut secret: Option<secret::StoredSecret> = None;
    for (raw, token) in raw_tokens.iter().zip(tokens) {
        let outcome = match token {
            Presented::Issuer(text, iss) => {
                callers.push(issuers::authenticate(text, &iss).map(|(user, _)| Caller::User(user)));
                continue;
            }
            Presented::SelfSigned(Ok(token)) => verify(&token, users.get(&token.user_id)),
            Presented::SelfSigned(Err(error)) => Err(error),
        };
        callers.push(match outcome {
            Ok(user) => Ok(Caller::User(user)),
            // Not a valid user token: it may be the server secret (checked in constant time).
            Err(error) => match raw {
                Some(raw) if stored_secret(&mut secret)?.matches(token::strip_bearer(raw)) => {
                    Ok(Caller::System)
                }
                _ => Err(error),
            },
        });
    }
    Ok(callers)
}

/// A token as it comes: a trusted issuer's (its text and `iss`), or self-signed (parsed, or why not).
enum Presented<'a> {
    Issuer(&'a str, String),
    SelfSigned(Result<SignedToken<'a>>),
}

fn present(raw: Option<&str>) -> Presented<'_> {
    match raw.map(token::strip_bearer).and_then(|text| Some((text, issuer_of(text)?))) {
        Some((text, iss)) => Presented::Issuer(text, iss),
        None => Presented::SelfSigned(parse_unexpired(raw)),
    }
}

/// A token this backend has already verified: who signed it, and the key it verified against.
/// Not an authentication by itself: only what the caller then does in one statement that also
/// finds the user still holding that key (and allowed to do it) may trust it; anything else goes
/// through `authenticate`.
pub struct Known {
    pub id: Uuid,
    pub pem: String,
}

/// The signer of a token whose exact text verified in this backend before, if it is unexpired and
/// within `hatchat.max_token_lifetime` now. Reads nothing from the database.
pub fn recognize(raw_token: Option<&str>) -> Option<Known> {
    let token = parse_unexpired(raw_token).ok()?;
    let pem = KEYS.with_borrow(|cache| cache.verified_with(token.user_id, token.text).map(str::to_string))?;
    Some(Known { id: token.user_id, pem })
}

/// The server secret, read at the first token that needs it.
fn stored_secret(loaded: &mut Option<secret::StoredSecret>) -> Result<&secret::StoredSecret> {
    match loaded {
        Some(stored) => Ok(stored),
        None => Ok(loaded.insert(secret::StoredSecret::load()?)),
    }
}

fn parse_unexpired(raw_token: Option<&str>) -> Result<SignedToken<'_>> {
    let raw = raw_token.ok_or_else(|| HatchatError::unauthenticated_with("no token was given"))?;
    let token = token::parse(raw)?;
    token.check_lifetime(jiff::Timestamp::now(), settings::max_token_lifetime())?;
    Ok(token)
}

/// Checks the signature against the key the user registered (`None`: no such user, or the system
/// user, who has no key — verified against the decoy so both cost the same).
fn verify(token: &SignedToken, stored: Option<&Stored>) -> Result<UserState> {
    let Some(stored) = stored else {
        let _ = token.verify(decoy_key());
        return Err(HatchatError::unauthenticated());
    };
    KEYS.with_borrow_mut(|cache| {
        cache.verify_once(token.user_id, &stored.pem, token.text, |key| token.verify(key))
    })
    .map_err(|_| HatchatError::unauthenticated())?;
    Ok(stored.state.clone())
}

/// The `iss` a token's claims name, unverified: which door it knocks on. `None` for a token of
/// another form (a self-signed token has no `iss`).
pub fn issuer_of(raw: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    token::decode_json::<Iss>(raw.split('.').nth(1)?, "claims").ok()?.iss
}

/// When a token that `authenticate` accepted for a user stops being valid.
pub fn expires_at(raw: &str) -> Result<jiff::Timestamp> {
    let text = token::strip_bearer(raw);
    if issuer_of(text).is_some() {
        return jwt::parse(text)?.expires_at().ok_or_else(HatchatError::unauthenticated);
    }
    Ok(token::parse(text)?.expires_at)
}

/// Admin calls: a role with hatchat_admin needs no token; otherwise the token must be the secret.
/// Self-service calls (a user's own settings, `/users/{id}/...` over HTTP): a user's token that may
/// write, matching `self_id` when one is given.
pub fn require_self(token: Option<&str>, self_id: Option<pgrx::Uuid>) -> Result<UserState> {
    let caller = authenticate(token)?;
    caller.may_write()?;
    let user = caller.user()?.clone();
    if self_id.is_some_and(|id| db::rust_uuid(id) != user.id) {
        return Err(HatchatError::Forbidden("a user can only change their own settings".into()));
    }
    Ok(user)
}

pub fn require_admin(token: Option<&str>) -> Result<()> {
    if secret::caller_role_is_admin() {
        return Ok(());
    }
    match authenticate(token)? {
        Caller::System => Ok(()),
        Caller::User(_) => Err(HatchatError::Forbidden(
            "only an admin (hatchat_admin or the server secret) may do this".into(),
        )),
    }
}

/// `hatchat.authenticate(token)`: the id of the user who signed the token (the nil uuid for the
/// server secret).
#[pg_extern(name = "authenticate", security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn authenticate_sql(token: Option<&str>) -> SqlResult<pgrx::Uuid> {
    Ok(db::pg_uuid(authenticate(token)?.id()))
}

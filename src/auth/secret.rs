//! The server secret: a shared key that lets a trusted backend act as the system (post system
//! messages, read and post anywhere). Only a salted SHA-256 of it is stored; checks compare in
//! constant time. It should be long and random, like any API key: a single fast hash is the norm
//! for high-entropy keys (a slow KDF would cost every request that presents it).

use crate::db;
use crate::error::{HatchatError, Result, SqlResult};
use pgrx::prelude::*;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

pub const MIN_SECRET_CHARS: usize = 16;

fn digest(salt: &[u8], secret: &str) -> [u8; 32] {
    Sha256::new().chain_update(salt).chain_update(secret.as_bytes()).finalize().into()
}

/// Equal in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The stored secret's salt and hash (None when no secret is set). Read once per call however
/// many tokens it checks.
pub struct StoredSecret(Option<(Vec<u8>, Vec<u8>)>);

impl StoredSecret {
    pub fn load() -> Result<Self> {
        let stored = db::row("SELECT salt, hash FROM hatchat.api_secret", &[], |row| {
            Ok(row.get::<Vec<u8>>(1)?.zip(row.get::<Vec<u8>>(2)?))
        })?
        .flatten();
        Ok(Self(stored))
    }

    /// Whether `candidate` is the server secret (false when none is set).
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_ref().is_some_and(|(salt, hash)| constant_time_eq(&digest(salt, candidate.trim()), hash))
    }
}

/// Whether the database role calling (after any SET ROLE; not the definer of this function) has
/// the privileges of `hatchat_admin`. Superusers do.
pub fn caller_role_is_admin() -> bool {
    caller_has_role(c"hatchat_admin")
}

/// Whether the calling role (not the definer of this function) has the privileges of `role`.
pub fn caller_has_role(role: &std::ffi::CStr) -> bool {
    // SAFETY: plain catalog lookups on the current backend's state.
    unsafe {
        let role = pg_sys::get_role_oid(role.as_ptr(), true);
        role != pg_sys::InvalidOid && pg_sys::has_privs_of_role(pg_sys::GetOuterUserId(), role)
    }
}

/// `hatchat.set_api_secret(secret)`: sets (or replaces) the server secret. For roles with
/// hatchat_admin.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn set_api_secret(secret: Option<&str>) -> SqlResult<()> {
    if !caller_role_is_admin() {
        return Err(HatchatError::Forbidden(
            "only a role granted hatchat_admin may set the server secret".into(),
        )
        .into());
    }
    let secret = crate::error::required(secret, "secret")?.trim();
    if secret.chars().count() < MIN_SECRET_CHARS {
        return Err(HatchatError::invalid(format!(
            "the server secret must have at least {MIN_SECRET_CHARS} characters; use a long random one"
        ))
        .into());
    }
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).map_err(|_| HatchatError::Internal("no randomness".into()))?;
    // set_at from EXCLUDED (the column's default): Citus refuses any function in DO UPDATE SET on
    // a distributed or reference table unless it is IMMUTABLE.
    db::execute(
        "INSERT INTO hatchat.api_secret (salt, hash) VALUES ($1, $2) \
         ON CONFLICT (singleton) DO UPDATE SET salt = EXCLUDED.salt, hash = EXCLUDED.hash, set_at = EXCLUDED.set_at",
        &[salt.to_vec().into(), digest(&salt, secret).to_vec().into()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_depend_on_salt_and_compare_exactly() {
        let a = digest(b"salt-1", "correct horse battery staple");
        assert!(constant_time_eq(&a, &digest(b"salt-1", "correct horse battery staple")));
        assert!(!constant_time_eq(&a, &digest(b"salt-2", "correct horse battery staple")));
        assert!(!constant_time_eq(&a, &digest(b"salt-1", "correct horse battery stapl")));
        assert!(!constant_time_eq(&a, &a[..31]));
    }
}

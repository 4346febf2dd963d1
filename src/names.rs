//! The rules of usernames, for everyone who names a user: registration, renames, rooms, and the
//! users a trusted issuer signs in (auth/issuers.rs).

use crate::db;
use crate::error::{HatchatError, Result};

pub const MAX_USERNAME_CHARS: usize = 64;

/// The name under which the server secret's posts appear in rooms (`from`), as in ganomede-chat.
pub const SERVER_SECRET_NAME: &str = "$$";
/// The system user's name (schema.sql), author of join and leave messages.
pub const SYSTEM_USERNAME: &str = "system";
/// Names the server posts under. Nobody may register or rename to one of them, in any case: their
/// posts (say of `type: "event"`) would pass for the server's.
pub const RESERVED_USERNAMES: [&str; 2] = [SERVER_SECRET_NAME, SYSTEM_USERNAME];

/// Trimmed; 1..64 characters; no control characters; no `/`, because room ids join usernames with
/// `/` and `a/b`+`c` must never name the same room as `a`+`b/c`.
pub fn valid_username(raw: &str) -> Result<&str> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_USERNAME_CHARS {
        return Err(HatchatError::invalid(format!(
            "username must be 1..{MAX_USERNAME_CHARS} characters after trimming, got {chars}"
        )));
    }
    if name.chars().any(|c| c.is_control() || c == '/' || invisible(c)) {
        return Err(HatchatError::invalid(
            "username must not contain '/', control characters or invisible and direction marks",
        ));
    }
    Ok(name)
}

/// Characters that show nothing or turn the text around: `system` with a zero-width space, or
/// `metsys` behind a right-to-left override, must not pass for `system`.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFF8}' | '\u{E0000}'..='\u{E0FFF}')
}

/// A name a user may take (register or rename to): valid, and not one the server posts under.
pub fn valid_new_username(raw: &str) -> Result<&str> {
    let name = valid_username(raw)?;
    if RESERVED_USERNAMES.contains(&name.to_lowercase().as_str()) {
        return Err(HatchatError::invalid(format!("username {name:?} is reserved")));
    }
    Ok(name)
}

/// Whether someone other than `id` holds `name`, in any case: names are unique regardless of case.
pub fn held_by_another(name: &str, id: pgrx::Uuid) -> Result<bool> {
    let sql = "SELECT true FROM hatchat.users WHERE lower(username) = lower($1) AND id <> $2";
    Ok(db::first::<bool>(sql, &[name.into(), id.into()])?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_trimmed_and_bounded() {
        assert_eq!(valid_username("  alice ").unwrap(), "alice");
        assert_eq!(valid_username(&"é".repeat(64)).unwrap().chars().count(), 64);
        for bad in [
            "",
            "   ",
            &"a".repeat(65),
            "a/b",
            "tab\there",
            "nul\u{7}",
            "system\u{200B}",
            "sy\u{200D}stem",
            "\u{202E}metsys",
            "a\u{2066}b",
        ] {
            assert_eq!(valid_username(bad).unwrap_err().sqlstate_code(), "22023", "{bad:?}");
        }
    }

    #[test]
    fn server_sender_names_are_reserved_in_any_case() {
        for reserved in ["$$", "system", "SYSTEM", " System ", "sYsTeM"] {
            let error = valid_new_username(reserved).unwrap_err();
            assert_eq!(error.sqlstate_code(), "22023", "{reserved:?}");
            assert!(error.to_string().contains("is reserved"), "{error}");
        }
        for free in ["$$$", "$", "systems", "my system", "alice"] {
            assert_eq!(valid_new_username(free).unwrap(), free);
        }
    }
}

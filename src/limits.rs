//! Limits on what callers hand the extension: page sizes, payload size and nesting, and payload
//! text converted to jsonb within them, each item on its own.

use crate::db::Jsonb;
use crate::error::{HatchatError, Result};
use crate::settings;
use pgrx::prelude::*;

/// The most rows one page returns (messages or notifications).
pub const MAX_ROW_LIMIT: i32 = 1000;

/// Refuses a page size outside 1..MAX_ROW_LIMIT.
pub fn check_row_limit(row_limit: i32) -> Result<()> {
    if (1..=MAX_ROW_LIMIT).contains(&row_limit) {
        Ok(())
    } else {
        Err(HatchatError::invalid(format!("limit must be 1..{MAX_ROW_LIMIT}, got {row_limit}")))
    }
}

/// A short text a caller names something with (a channel id, a client id, a reaction): 1..`max`
/// characters, no control characters; `what` names it in the error.
pub fn short_text<'a>(raw: &'a str, what: &str, max: usize) -> Result<&'a str> {
    let chars = raw.chars().count();
    if chars == 0 || chars > max {
        return Err(HatchatError::invalid(format!("{what} must be 1..{max} characters, got {chars}")));
    }
    if raw.chars().any(char::is_control) {
        return Err(HatchatError::invalid(format!("{what} must not contain control characters")));
    }
    Ok(raw)
}

/// Refuses JSON text nested deeper than `hatchat.max_json_depth` (22023, naming the limit).
pub fn check_depth(text: &str) -> Result<()> {
    hatchat_wire::json::check_depth(text.as_bytes(), settings::max_json_depth())
        .map_err(HatchatError::invalid)
}

/// Checks a payload's size and nesting from one rendering of it as text (what `octet_length(
/// payload::text)` measures): over `hatchat.max_payload_bytes` is 54000, deeper than
/// `hatchat.max_json_depth` 22023.
/// Returns that text, for a caller that reads the payload's fields too (room posts).
pub fn check_payload(payload: &Jsonb) -> Result<String> {
    let text = payload.to_text();
    let limit = settings::max_payload_bytes();
    if text.len() > limit {
        return Err(HatchatError::PayloadTooLarge { size: text.len(), limit });
    }
    check_depth(&text)?;
    Ok(text)
}

/// A payload given as JSON text, converted as `text::jsonb` would convert it, except that a text
/// jsonb cannot hold is this call's own error (PostgreSQL's SQLSTATE and message), never the
/// statement's: one bad item of a batch then fails only itself. Nesting is checked first, in Rust,
/// so PostgreSQL's recursive parser never meets a 20,000-deep array (54001, an internal error).
pub fn payload_from_text(text: &str) -> Result<Jsonb> {
    check_depth(text)?;
    convert_refusably(text)
}

/// `jsonb_in` in an internal subtransaction, as PL/pgSQL runs a block with an EXCEPTION clause.
///
/// Why a subtransaction rather than a bare `PgTryBuilder` catch: PostgreSQL allows recovering
/// from an ERROR only by aborting a (sub)transaction, which releases whatever the failed code held
/// (locks, buffer pins, memory, resource owners). `jsonb_in` happens to hold none of those today,
/// but that is an implementation detail of PostgreSQL, not a promise; pgrx's docs leave the
/// clean-up to the catcher. A subtransaction that writes nothing gets no transaction id, costs a
/// few microseconds and never overflows the subxid cache.
///
/// Only data exceptions (class 22: bad escapes, bad syntax, numbers out of range) and program
/// limits (class 54: a string too long for jsonb) become the item's error; anything else (a query
/// cancel, out of memory, a bug) is raised again after the rollback, as an uncaught error would be.
fn convert_refusably(text: &str) -> Result<Jsonb> {
    use pgrx::pg_sys::panic::CaughtError;
    use pgrx::PgTryBuilder;
    // SAFETY: the sequence PL/pgSQL's exec_stmt_block uses. The value is allocated in the caller's
    // memory context, which outlives the subtransaction; context and resource owner are restored
    // on both paths; the error state is flushed (by pgrx's FFI guard and PgTryBuilder) before the
    // rollback. No SPI connection is open here.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let outcome = PgTryBuilder::new(|| Ok(Jsonb::from_text(text)))
            .catch_others(Err::<Result<Jsonb>, CaughtError>)
            .execute();
        match outcome {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        match outcome {
            Ok(converted) => converted,
            Err(CaughtError::PostgresError(report))
                if matches!(&crate::error::sqlstate_text(report.sql_error_code())[..2], "22" | "54") =>
            {
                let sqlstate = report.sql_error_code();
                Err(HatchatError::Refused {
                    sqlstate,
                    code: crate::error::sqlstate_text(sqlstate),
                    message: report.message().to_string(),
                    detail: report.detail().map(str::to_string),
                })
            }
            Err(other) => other.rethrow(),
        }
    }
}

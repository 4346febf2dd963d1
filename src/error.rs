//! The one error type of the extension. Each variant knows its SQLSTATE, so callers (the gateway,
//! any SQL client) can tell "who are you" from "not allowed" from "no such thing" without parsing
//! messages. Errors are plain values until the `#[pg_extern]` edge turns them into a Postgres ERROR.

use hatchat_wire::api::ItemError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HatchatError {
    /// 28000 — the token is missing, malformed, expired or not signed by the user's key. One
    /// message for every cause that could reveal whether a user exists; `detail` only carries
    /// causes visible in the token itself (its shape, its `exp`).
    Unauthenticated { detail: Option<String> },
    /// 42501 — authenticated, but this user may not do this.
    Forbidden(String),
    /// P0002 — the named thing does not exist (or has expired).
    NotFound(String),
    /// 23505 — the id or name is already taken.
    Conflict(String),
    /// 22023 — a parameter is malformed or out of range.
    InvalidParameter(String),
    /// 54000 — the payload is larger than `hatchat.max_payload_bytes`.
    PayloadTooLarge { size: usize, limit: usize },
    /// A value PostgreSQL itself refused while hatchat converted it (a payload given as JSON text
    /// that jsonb cannot hold: `\u0000` is 22P05, a lone surrogate 22P02, a number out of range
    /// 22003): PostgreSQL's own SQLSTATE and words, as a cast of the same text would raise them.
    Refused { sqlstate: PgSqlErrorCode, code: String, message: String, detail: Option<String> },
    /// 53400 — done more often than a limit allows (typing); trying again later helps.
    TooOften(String),
    /// 57014 — the call was canceled while it waited (for synchronous standbys, see commit.rs);
    /// nothing changed, trying again helps.
    Canceled(String),
    /// XX000 — a bug in hatchat (an SPI call that cannot fail did), never caused by input.
    Internal(String),
}

pub type Result<T, E = HatchatError> = std::result::Result<T, E>;

/// What a `#[pg_extern]` returns: pgrx raises the report with its SQLSTATE.
pub type SqlResult<T> = std::result::Result<T, ErrorReport>;

/// SQL NULL where a value is needed is a bad parameter, not a silent NULL result (which is what a
/// STRICT function would give): every argument is `Option` and checked here.
pub fn required<T>(value: Option<T>, what: &str) -> Result<T> {
    value.ok_or_else(|| HatchatError::invalid(format!("{what} is required")))
}

impl HatchatError {
    pub fn unauthenticated() -> Self {
        Self::Unauthenticated { detail: None }
    }

    /// 28000 with a reason that reveals nothing about other users (a malformed token, not a
    /// room's participant).
    pub fn unauthenticated_with(detail: impl Into<String>) -> Self {
        Self::Unauthenticated { detail: Some(detail.into()) }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidParameter(message.into())
    }

    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            Self::Unauthenticated { .. } => ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
            Self::Forbidden(_) => ERRCODE_INSUFFICIENT_PRIVILEGE,
            Self::NotFound(_) => ERRCODE_NO_DATA_FOUND,
            Self::Conflict(_) => ERRCODE_UNIQUE_VIOLATION,
            Self::InvalidParameter(_) => ERRCODE_INVALID_PARAMETER_VALUE,
            Self::PayloadTooLarge { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Self::Refused { sqlstate, .. } => *sqlstate,
            Self::TooOften(_) => ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            Self::Canceled(_) => ERRCODE_QUERY_CANCELED,
            Self::Internal(_) => ERRCODE_INTERNAL_ERROR,
        }
    }

    /// The five-character SQLSTATE, as clients see it (the table both sides read is
    /// `hatchat_wire::sqlstate`).
    pub fn sqlstate_code(&self) -> &str {
        use hatchat_wire::sqlstate::*;
        match self {
            Self::Unauthenticated { .. } => UNAUTHENTICATED,
            Self::Forbidden(_) => FORBIDDEN,
            Self::NotFound(_) => NOT_FOUND,
            Self::Conflict(_) => CONFLICT,
            Self::InvalidParameter(_) => INVALID_PARAMETER,
            Self::PayloadTooLarge { .. } => PAYLOAD_TOO_LARGE,
            Self::Refused { code, .. } => code,
            Self::TooOften(_) => TOO_OFTEN,
            Self::Canceled(_) => CANCELED,
            Self::Internal(_) => INTERNAL,
        }
    }

    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Unauthenticated { detail } | Self::Refused { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }

    /// This error as a batch item's answer: `{"error": {sqlstate, message, detail?}}`.
    pub fn item_answer(&self) -> String {
        let detail = self.detail().map(str::to_string);
        ItemError { sqlstate: self.sqlstate_code().to_string(), message: self.to_string(), detail }
            .to_answer()
    }
}

/// A batch's answers as one JSON array text, in item order: each item's answer, or its error as
/// a value (`send_messages`, `open_streams`), so one item's refusal never becomes another's.
pub fn item_answers(outcomes: impl IntoIterator<Item = Result<String>>) -> String {
    let answers: Vec<String> =
        outcomes.into_iter().map(|outcome| outcome.unwrap_or_else(|error| error.item_answer())).collect();
    format!("[{}]", answers.join(","))
}

impl fmt::Display for HatchatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthenticated { .. } => f.write_str("invalid or expired token"),
            Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::InvalidParameter(m)
            | Self::Canceled(m)
            | Self::TooOften(m)
            | Self::Refused { message: m, .. } => f.write_str(m),
            Self::Internal(m) => write!(f, "hatchat internal error: {m}"),
            Self::PayloadTooLarge { size, limit } => write!(
                f,
                "payload is {size} bytes, over the limit of {limit} bytes (hatchat.max_payload_bytes)"
            ),
        }
    }
}

impl std::error::Error for HatchatError {}

/// The edge: pgrx raises an `ErrorReport` returned from a `#[pg_extern]` with its own SQLSTATE.
impl From<HatchatError> for ErrorReport {
    fn from(error: HatchatError) -> Self {
        let report = ErrorReport::new(error.sqlstate(), error.to_string(), "hatchat");
        match error.detail() {
            Some(detail) => report.set_detail(detail.to_string()),
            None => report,
        }
    }
}

/// The five characters of a SQLSTATE packed by PostgreSQL's MAKE_SQLSTATE (six bits a character,
/// first character lowest).
pub fn sqlstate_text(sqlstate: PgSqlErrorCode) -> String {
    let packed = sqlstate as isize;
    (0..5).map(|i| char::from(((packed >> (6 * i)) & 0x3F) as u8 + b'0')).collect()
}

/// SPI failures are not caused by the caller's input (input is checked before any query), so they
/// surface as internal errors with their text, never as a panic.
impl From<pgrx::spi::SpiError> for HatchatError {
    fn from(error: pgrx::spi::SpiError) -> Self {
        Self::Internal(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthenticated_message_never_names_the_cause() {
        let plain = HatchatError::unauthenticated().to_string();
        let malformed = HatchatError::unauthenticated_with("token must have three parts").to_string();
        assert_eq!(plain, malformed);
        assert_eq!(plain, "invalid or expired token");
    }

    #[test]
    fn sqlstates_unpack_to_their_five_characters() {
        use PgSqlErrorCode::*;
        assert_eq!(sqlstate_text(ERRCODE_UNTRANSLATABLE_CHARACTER), "22P05");
        assert_eq!(sqlstate_text(ERRCODE_INVALID_TEXT_REPRESENTATION), "22P02");
        assert_eq!(sqlstate_text(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), "22003");
        assert_eq!(sqlstate_text(ERRCODE_STATEMENT_TOO_COMPLEX), "54001");
    }

    #[test]
    fn each_variant_has_its_sqlstate() {
        let cases = [
            (HatchatError::unauthenticated(), "28000"),
            (HatchatError::Forbidden("x".into()), "42501"),
            (HatchatError::NotFound("x".into()), "P0002"),
            (HatchatError::Conflict("x".into()), "23505"),
            (HatchatError::invalid("x"), "22023"),
            (HatchatError::PayloadTooLarge { size: 2, limit: 1 }, "54000"),
            (HatchatError::Canceled("x".into()), "57014"),
        ];
        for (error, code) in cases {
            assert_eq!(error.sqlstate_code(), code, "{error:?}");
            assert_eq!(sqlstate_text(error.sqlstate()), code, "{error:?}");
        }
    }
}

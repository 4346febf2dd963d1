//! The SQLSTATEs hatchat raises, and what each becomes over HTTP: one table, read by the extension
//! (which decides the SQLSTATE) and by the gateway (which answers its status and error code). A
//! SQL client reads the SQLSTATE; an HTTP client reads the status and `error`.

/// The token is missing, malformed, expired or not signed by the user's key.
pub const UNAUTHENTICATED: &str = "28000";
/// Authenticated, but this user may not do this.
pub const FORBIDDEN: &str = "42501";
/// The named thing does not exist (or has expired).
pub const NOT_FOUND: &str = "P0002";
/// The id or name is already taken, or a bound (reactions) is reached.
pub const CONFLICT: &str = "23505";
/// A parameter is malformed or out of range.
pub const INVALID_PARAMETER: &str = "22023";
/// The payload is larger than `hatchat.max_payload_bytes`.
pub const PAYLOAD_TOO_LARGE: &str = "54000";
/// Done more often than a limit allows (typing, once a second per channel).
pub const TOO_OFTEN: &str = "53400";
/// The call was canceled while it waited for synchronous standbys; nothing changed.
pub const CANCELED: &str = "57014";
/// PostgreSQL's own: a write on a read-only server (a hot standby, a primary being demoted).
pub const READ_ONLY: &str = "25006";
/// A bug in hatchat, never caused by input.
pub const INTERNAL: &str = "XX000";
/// PostgreSQL's own: a foreign key race (the channel was deleted while someone joined it).
pub const FOREIGN_KEY_RACE: &str = "23503";

/// One SQLSTATE's HTTP answer: its status and the `error` of the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http {
    pub status: u16,
    pub error: &'static str,
}

const fn http(status: u16, error: &'static str) -> Http {
    Http { status, error }
}

/// The SQLSTATEs hatchat decides, one by one.
pub const TABLE: &[(&str, Http)] = &[
    (UNAUTHENTICATED, http(401, "unauthorized")),
    (FORBIDDEN, http(403, "forbidden")),
    (NOT_FOUND, http(404, "not_found")),
    (CONFLICT, http(409, "conflict")),
    // The thing is gone, or someone else got there first: as a conflict.
    (FOREIGN_KEY_RACE, http(409, "conflict")),
    (PAYLOAD_TOO_LARGE, http(413, "payload_too_large")),
    (TOO_OFTEN, http(429, "too_many_requests")),
];

/// What any SQLSTATE becomes over HTTP: the table's answer, else its class's.
pub fn http_of(sqlstate: &str) -> Http {
    if let Some((_, answer)) = TABLE.iter().find(|(code, _)| *code == sqlstate) {
        return *answer;
    }
    match sqlstate {
        // Class 22, data exception: malformed input (bad uuid, bad timestamp, out of range).
        s if s.starts_with("22") => http(400, "bad_request"),
        // Class 08 (connection), 57 (operator intervention: shutdown, cancel), 53 (resources),
        // 40 (transaction rollback: deadlock, serialization), and a write refused by a read-only
        // server (a standby, a demoted primary): nothing changed, trying again helps.
        s if ["08", "57", "53", "40"].iter().any(|class| s.starts_with(class)) => http(503, "unavailable"),
        READ_ONLY => http(503, "unavailable"),
        _ => http(500, "internal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_statuses() {
        let cases = [
            (UNAUTHENTICATED, 401),
            (FORBIDDEN, 403),
            (NOT_FOUND, 404),
            (CONFLICT, 409),
            (INVALID_PARAMETER, 400),
            ("22P02", 400),
            (PAYLOAD_TOO_LARGE, 413),
            (TOO_OFTEN, 429),
            (CANCELED, 503),
            ("57P01", 503),
            ("40P01", 503),
            (READ_ONLY, 503),
            (INTERNAL, 500),
        ];
        for (sqlstate, status) in cases {
            assert_eq!(http_of(sqlstate).status, status, "{sqlstate}");
        }
    }
}

//! `ApiError`: every failure becomes a status and a JSON body `{"error", "message"}`. The SQLSTATE ->
//! HTTP table lives here and only here; the extension decides the SQLSTATE.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    /// The database's SQLSTATE, when the error came from there.
    pub sqlstate: Option<String>,
}

/// The SQLSTATEs the extension raises, and what they mean over HTTP.
const SQLSTATE_TO_HTTP: &[(&str, StatusCode, &str)] = &[
    ("28000", StatusCode::UNAUTHORIZED, "unauthorized"),
    ("42501", StatusCode::FORBIDDEN, "forbidden"),
    ("P0002", StatusCode::NOT_FOUND, "not_found"),
    ("23505", StatusCode::CONFLICT, "conflict"),
    // A foreign key race (the channel was deleted while someone joined it): the thing is gone.
    ("23503", StatusCode::CONFLICT, "conflict"),
    ("54000", StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
];

fn classify(sqlstate: &str) -> (StatusCode, &'static str) {
    if let Some((_, status, code)) = SQLSTATE_TO_HTTP.iter().find(|(s, _, _)| *s == sqlstate) {
        return (*status, code);
    }
    match sqlstate {
        // Class 22, data exception: malformed input (bad uuid, bad timestamp, out of range).
        s if s.starts_with("22") => (StatusCode::BAD_REQUEST, "bad_request"),
        // Class 08 (connection), 57 (operator intervention: shutdown, cancel), 53 (resources),
        // 40 (transaction rollback: deadlock, serialization): nothing changed, trying again helps.
        s if ["08", "57", "53", "40"].iter().any(|class| s.starts_with(class)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), detail: None, sqlstate: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(message, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// An error the extension reported with `sqlstate` (raised, or answered per batch item).
    pub fn from_sqlstate(sqlstate: &str, message: String, detail: Option<String>) -> Self {
        let (status, code) = classify(sqlstate);
        if status.is_server_error() {
            tracing::error!(sqlstate, message, "database error");
        }
        Self { status, code, message, detail, sqlstate: Some(sqlstate.to_string()) }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => Self::from_sqlstate(
                db.code().code(),
                db.message().to_string(),
                db.detail().map(str::to_string),
            ),
            // No SQLSTATE: the connection broke, the database is away.
            None => {
                tracing::warn!(%error, "database connection error");
                Self::unavailable("the database is not reachable; try again")
            }
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => {
                tracing::warn!(error = %other, "no database connection available");
                Self::unavailable("no database connection is available; try again")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code, "message": self.message});
        if let Some(detail) = self.detail {
            body["detail"] = detail.into();
        }
        (self.status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_statuses() {
        let cases = [
            ("28000", 401),
            ("42501", 403),
            ("P0002", 404),
            ("23505", 409),
            ("22023", 400),
            ("22P02", 400),
            ("54000", 413),
            ("57P01", 503),
            ("40P01", 503),
            ("XX000", 500),
        ];
        for (sqlstate, status) in cases {
            assert_eq!(classify(sqlstate).0.as_u16(), status, "{sqlstate}");
        }
    }
}

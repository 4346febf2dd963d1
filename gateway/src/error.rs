//! `ApiError`: every failure becomes a status and a JSON body `{"error", "message"}`. The SQLSTATE ->
//! HTTP table is `hatchat_wire::sqlstate`, read here only; the extension decides the SQLSTATE. A 500 is the one
//! exception to the body: it says `{"error": "internal", "requestId"}` and nothing else (a
//! database's message, hint or detail can name tables, settings or other users' data), and the
//! detail goes to the log under that id.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hatchat_wire::sqlstate;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    /// The database's SQLSTATE, when the error came from there.
    pub sqlstate: Option<String>,
    /// Seconds a client should wait before trying again (the `Retry-After` header).
    pub retry_after: Option<u32>,
}

/// The status and error code of a SQLSTATE, from the one table both sides read (wire::sqlstate).
fn classify(sqlstate: &str) -> (StatusCode, &'static str) {
    let http = sqlstate::http_of(sqlstate);
    (StatusCode::from_u16(http.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), http.error)
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), detail: None, sqlstate: None, retry_after: None }
    }

    /// 503: the database did not answer within `limit` (`--request-timeout-secs`); the call was
    /// canceled, but a write may have committed, so a retry should carry its client id.
    pub fn timed_out(limit: std::time::Duration) -> Self {
        crate::metrics::database_error("timeout");
        let message = format!(
            "the database did not answer within {} s; what was asked may or may not have taken \
             effect: try again (a send with the same clientId gets its first answer)",
            limit.as_secs_f64()
        );
        Self { retry_after: Some(1), ..Self::unavailable(message) }
    }

    /// 429: the caller holds too much at once; `retry_after` seconds is a good time to try again.
    pub fn too_many_requests(message: impl Into<String>, retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
        }
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

    /// A 500; `message` is logged, never sent.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// A batch item's answer (`send_messages`, `open_streams`): its text, or the error it carries.
    pub fn from_item(answer: &serde_json::value::RawValue) -> Result<&str, Self> {
        match hatchat_wire::api::ItemError::from_answer(answer.get()) {
            Some(e) => Err(Self::from_sqlstate(&e.sqlstate, e.message, e.detail)),
            None => Ok(answer.get()),
        }
    }

    /// An error the extension reported with `sqlstate` (raised, or answered per batch item).
    pub fn from_sqlstate(sqlstate: &str, message: String, detail: Option<String>) -> Self {
        crate::metrics::database_error(sqlstate);
        let (status, code) = classify(sqlstate);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // PostgreSQL's own words here name processes, transactions and locks: logged, not sent.
            tracing::warn!(sqlstate, message, detail, "database unavailable");
            let mut error =
                Self::unavailable("the database is busy or unavailable; nothing changed, try again");
            error.sqlstate = Some(sqlstate.to_string());
            // The database said nothing changed: trying again in a second may work (it restarts,
            // a standby is promoted). Not said where a write may have committed before the error.
            error.retry_after = Some(1);
            return error;
        }
        if let (StatusCode::UNAUTHORIZED, Some(detail)) = (status, &detail) {
            crate::key_requests::unknown_key(detail);
        }
        // Done too often (typing): a second on, it is allowed again.
        let retry_after = (status == StatusCode::TOO_MANY_REQUESTS).then_some(1);
        Self { status, code, message, detail, sqlstate: Some(sqlstate.to_string()), retry_after }
    }

    /// The JSON body: for a 500, only the code and `request_id`.
    fn body(&self, request_id: &str) -> serde_json::Value {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            return json!({"error": self.code, "requestId": request_id});
        }
        let mut body = json!({"error": self.code, "message": self.message});
        if let Some(detail) = &self.detail {
            body["detail"] = detail.as_str().into();
        }
        body
    }
}

/// The routine the extension's own errors are raised from (src/error.rs): its messages are written
/// for clients.
const EXTENSION_ROUTINE: &str = "hatchat";

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            // A constraint PostgreSQL itself enforced (a race the extension's own checks lost): its
            // words name constraints and key values, which are logged, not sent.
            Some(db) if db.code().code().starts_with("23") && db.routine() != Some(EXTENSION_ROUTINE) => {
                tracing::warn!(
                    sqlstate = db.code().code(),
                    message = db.message(),
                    detail = db.detail(),
                    "constraint"
                );
                Self::from_sqlstate(
                    db.code().code(),
                    "the request conflicts with a concurrent change; nothing changed, try again".into(),
                    None,
                )
            }
            Some(db) => Self::from_sqlstate(
                db.code().code(),
                db.message().to_string(),
                db.detail().map(str::to_string),
            ),
            // No SQLSTATE: the connection broke, the database is away.
            None => {
                crate::metrics::database_error("connection");
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
                crate::metrics::database_error("pool");
                tracing::warn!(error = %other, "no database connection available");
                Self::unavailable("no database connection is available; try again")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            let request_id = uuid::Uuid::new_v4().to_string();
            tracing::error!(
                request_id,
                message = self.message,
                sqlstate = self.sqlstate.as_deref(),
                detail = self.detail.as_deref(),
                "internal error"
            );
            request_id
        } else {
            String::new()
        };
        let mut response = (self.status, axum::Json(self.body(&request_id))).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_503_says_nothing_of_the_databases_internals() {
        let deadlock = ApiError::from_sqlstate(
            "40P01",
            "deadlock detected".into(),
            Some("Process 4242 waits for ShareLock on transaction 77; blocked by process 4343.".into()),
        );
        assert_eq!(deadlock.status, StatusCode::SERVICE_UNAVAILABLE);
        let body = deadlock.body("id").to_string();
        assert!(!body.contains("4242") && !body.contains("deadlock"), "{body}");
        assert_eq!(deadlock.sqlstate.as_deref(), Some("40P01"), "kept for retries and logs");
    }

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_500_answers_only_internal_and_a_request_id() {
        let error = ApiError::from_sqlstate(
            "XX001",
            "could not read block 7 of relation hatchat.users".into(),
            Some("the secret detail".into()),
        );
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_of(response).await;
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["error", "requestId"], "{body}");
        assert_eq!(body["error"], "internal");
        assert_eq!(body["requestId"].as_str().unwrap().len(), 36, "a uuid: {body}");
        assert!(!body.to_string().contains("secret") && !body.to_string().contains("hatchat.users"));
    }

    #[tokio::test]
    async fn client_errors_keep_their_message_and_429_says_when_to_retry() {
        let error = ApiError::from_sqlstate("22P05", "unsupported Unicode escape sequence".into(), None);
        let body = body_of(error.into_response()).await;
        assert_eq!(body, json!({"error": "bad_request", "message": "unsupported Unicode escape sequence"}));
        let response = ApiError::too_many_requests("too many", 2).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(body_of(response).await["error"], "too_many_requests");
    }

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
            ("25006", 503),
            ("XX000", 500),
        ];
        for (sqlstate, status) in cases {
            assert_eq!(classify(sqlstate).0.as_u16(), status, "{sqlstate}");
        }
    }

    #[tokio::test]
    async fn a_read_only_database_is_unavailable_with_a_time_to_retry() {
        // A demoted primary refuses writes with 25006: the client's retry reaches the new one.
        let error =
            ApiError::from_sqlstate("25006", "cannot execute INSERT in a read-only transaction".into(), None);
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = body_of(response).await;
        assert_eq!(body["error"], "unavailable");
        assert!(!body.to_string().contains("INSERT"), "PostgreSQL's words stay in the log: {body}");
    }
}

//! What a handler is given: the state every route shares (and the one way a route calls SQL), and
//! request extraction where every rejection is an `ApiError` with a JSON body: JSON bodies (with
//! the Content-Type rule and the nesting limit), query strings, path segments and the
//! Authorization header.

use crate::db::{self, JsonText, Params};
use crate::error::ApiError;
use crate::group_commit::GroupCommit;
use crate::live::Live;
use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use deadpool_postgres::Pool;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// A JSON body. Accepted Content-Types: `application/json`, `text/plain` (what a browser's `fetch`
/// sends when the caller sets none, as Hatch@'s web client does) or none at all; anything else
/// (forms, multipart) is 415 rather than a confusing parse error. A body nested deeper than
/// `hatchat.max_json_depth` is 400 before it is parsed, here or by PostgreSQL (whose recursive
/// parser would fail a 20,000-deep array as an internal error).
pub struct JsonBody<T>(pub T);

/// The deepest nesting a JSON body may have: `hatchat.max_json_depth`, read from the database at
/// startup so that there is one setting.
#[derive(Debug, Clone, Copy)]
pub struct MaxJsonDepth(pub usize);

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let media_type = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let json = media_type == "application/json" || media_type.ends_with("+json");
    if json || media_type == "text/plain" {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the body as JSON (Content-Type: application/json), not {media_type:?}"),
        ))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T>
where
    MaxJsonDepth: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        check_content_type(request.headers())?;
        let MaxJsonDepth(max_depth) = MaxJsonDepth::from_ref(state);
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is too large",
                )
            } else {
                ApiError::bad_request(rejection.body_text())
            }
        })?;
        hatchat_wire::json::check_depth(&bytes, max_depth).map_err(ApiError::bad_request)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("the body is not the expected JSON object: {e}")))
    }
}

/// A query string, decoded into `T`.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// Path segments (`/users/{id}` gives a String, `/auth/{token}/rooms/{*room}` a pair),
/// percent-decoded.
pub struct PathParams<T>(pub T);

/// The common case: one segment.
pub type PathParam = PathParams<String>;

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// What most routes take: the state every route shares, and the Authorization header. The header
/// is passed to SQL untouched (with or without `Bearer `); the extension decides what it means. A
/// header that is not text becomes an empty token, which SQL refuses.
pub struct Call(pub AppState, pub Option<String>);

impl FromRequestParts<AppState> for Call {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let token = parts.headers.get(header::AUTHORIZATION);
        Ok(Call(app.clone(), token.map(|v| v.to_str().unwrap_or_default().to_string())))
    }
}

/// A JSON body kept as its text, checked to be JSON: for bodies the extension reads whole.
pub type RawJsonBody = JsonBody<Box<serde_json::value::RawValue>>;

/// How long a long-poll may wait: `wait` seconds if given (0 or more), at most `longest`.
pub fn wait_param(wait: Option<f64>, longest: std::time::Duration) -> Result<std::time::Duration, ApiError> {
    match wait {
        None => Ok(longest),
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Ok(std::time::Duration::from_secs_f64(seconds.min(longest.as_secs_f64())))
        }
        Some(_) => Err(ApiError::bad_request("wait must be a number of seconds, 0 or more")),
    }
}

/// Deserializes a field that must keep its raw JSON text, JSON `null` included (a missing field
/// stays `None`): message payloads are any JSON value and must reach the database unparsed.
pub fn raw_json<'de, D>(deserializer: D) -> Result<Option<Box<serde_json::value::RawValue>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

// ---- The state every handler shares, and the one way a route calls SQL -----------------------
// The gateway's state, shared by every route, and the one way a route calls SQL.

#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub group_commit: Arc<GroupCommit>,
    /// `hatchat.max_json_depth`, as the database said at startup.
    pub max_json_depth: usize,
    /// Where every long-poll and stream waits.
    pub live: Live,
}

/// What a route answers: JSON text, or an error.
pub type Answer = Result<JsonText, ApiError>;

impl AppState {
    /// Calls `sql` (one function's jsonb, cast to text) and answers its JSON text.
    pub async fn call(&self, sql: &str, params: &Params<'_>) -> Answer {
        db::call_json(&self.pool, sql, params).await.map(JsonText)
    }

    /// Calls `sql` (a function returning void) and answers `done`, a fixed JSON text.
    pub async fn call_void(&self, sql: &str, params: &Params<'_>, done: &str) -> Answer {
        db::execute(&self.pool, sql, params).await?;
        Ok(JsonText(done.to_string()))
    }
}

impl FromRef<AppState> for MaxJsonDepth {
    fn from_ref(state: &AppState) -> Self {
        MaxJsonDepth(state.max_json_depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::Body;
    use axum::http::HeaderValue;
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::value::RawValue;

    /// Shaped like `POST /messages`: a string and a raw JSON field.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)] // only deserialized
    struct Message {
        channel_id: Option<String>,
        #[serde(default, deserialize_with = "raw_json")]
        payload: Option<Box<RawValue>>,
    }

    /// The status each body extractor answers `body` with (200 when it accepts it).
    fn statuses(body: &[u8], content_type: Option<&str>, max_depth: usize) -> Vec<u16> {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let request = || {
            let mut builder = Request::builder().method("POST").uri("/");
            if let Some(content_type) = content_type {
                builder = builder.header(header::CONTENT_TYPE, content_type);
            }
            builder.body(Body::from(body.to_vec())).unwrap()
        };
        let state = MaxJsonDepth(max_depth);
        let status = |result: Result<(), ApiError>| result.map_or_else(|e| e.status.as_u16(), |()| 200);
        runtime.block_on(async {
            vec![
                status(JsonBody::<Message>::from_request(request(), &state).await.map(drop)),
                status(JsonBody::<serde_json::Value>::from_request(request(), &state).await.map(drop)),
                status(RawJsonBody::from_request(request(), &state).await.map(drop)),
            ]
        })
    }

    #[test]
    fn bodies_nested_past_the_limit_are_refused_naming_it() {
        let body = |depth: usize| format!(r#"{{"payload": {}1{}}}"#, "[".repeat(depth), "]".repeat(depth));
        assert_eq!(statuses(body(63).as_bytes(), None, 64), [200, 200, 200]);
        assert_eq!(statuses(body(64).as_bytes(), None, 64), [400, 400, 400]);
        assert_eq!(statuses(body(20_000).as_bytes(), Some("application/json"), 64), [400, 400, 400]);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let request = Request::builder().body(Body::from(body(64))).unwrap();
        let error = runtime.block_on(RawJsonBody::from_request(request, &MaxJsonDepth(64))).err().unwrap();
        assert_eq!(error.message, hatchat_wire::json::too_deep_message(64));
    }

    proptest! {
        /// Whatever the bytes, an extractor answers: a value or a 4xx, never a panic or a 5xx.
        #[test]
        fn arbitrary_bodies_never_panic_or_answer_5xx(
            body in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..512),
                "[\\[\\]{}\":,0-9a-zA-Z \\\\u.eE+-]{0,256}".prop_map(String::into_bytes),
                (0usize..200, "[\\[{\":a1]{0,8}").prop_map(|(n, tail)| format!("{}{tail}", "[".repeat(n)).into_bytes()),
            ],
            content_type in proptest::option::of("(application/json|text/plain|text/html|application/x-www-form-urlencoded|[ -~]{0,20})"),
            max_depth in 0usize..100,
        ) {
            for status in statuses(&body, content_type.as_deref(), max_depth) {
                prop_assert!(status == 200 || (400..500).contains(&status), "{status}");
            }
        }
    }

    #[test]
    fn content_types() {
        let check = |ct: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(ct) = ct {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            }
            check_content_type(&headers).map_err(|e| e.status.as_u16())
        };
        assert_eq!(check(None), Ok(()));
        assert_eq!(check(Some("application/json")), Ok(()));
        assert_eq!(check(Some("Application/JSON; charset=utf-8")), Ok(()));
        assert_eq!(check(Some("text/plain;charset=UTF-8")), Ok(()));
        assert_eq!(check(Some("application/x-www-form-urlencoded")), Err(415));
        assert_eq!(check(Some("multipart/form-data; boundary=x")), Err(415));
    }
}

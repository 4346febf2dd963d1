//! Request extraction where every rejection is an `ApiError` with a JSON body: JSON bodies (with
//! the Content-Type rule), query strings, path segments and the Authorization header.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

/// A JSON body. Accepted Content-Types: `application/json`, `text/plain` (what a browser's `fetch`
/// sends when the caller sets none, as the seed's web client does) or none at all; anything else
/// (forms, multipart) is 415 rather than a confusing parse error.
pub struct JsonBody<T>(pub T);

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

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        check_content_type(request.headers())?;
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

/// The Authorization header, passed to SQL untouched (with or without `Bearer `); the extension
/// decides what it means. A header that is not text becomes an empty token, which SQL refuses.
pub struct Token(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION);
        Ok(Token(header.map(|v| v.to_str().unwrap_or_default().to_string())))
    }
}

/// A JSON body kept as its text, checked to be JSON: for bodies the extension reads whole.
pub struct RawJsonBody(pub Box<serde_json::value::RawValue>);

impl<S: Send + Sync> FromRequest<S> for RawJsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        JsonBody::<Box<serde_json::value::RawValue>>::from_request(request, state)
            .await
            .map(|b| RawJsonBody(b.0))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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

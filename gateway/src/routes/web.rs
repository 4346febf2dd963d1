//! The reference web client (`web/`), compiled into the binary and served at `/`. Files are
//! revalidated on every load (`no-cache` with an ETag): their names carry no content hash, so a
//! long cache would keep an old client after an upgrade. The page gets a strict Content Security
//! Policy: everything comes from this origin, nothing else may load or be framed.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::hash::{DefaultHasher, Hash, Hasher};

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset("/", HTML, include_bytes!("../../../web/index.html")),
    asset("/index.html", HTML, include_bytes!("../../../web/index.html")),
    asset("/app.js", JAVASCRIPT, include_bytes!("../../../web/app.js")),
    asset("/api.js", JAVASCRIPT, include_bytes!("../../../web/api.js")),
    asset("/crypto.js", JAVASCRIPT, include_bytes!("../../../web/crypto.js")),
    asset("/style.css", "text/css; charset=utf-8", include_bytes!("../../../web/style.css")),
];

const fn asset(path: &'static str, content_type: &'static str, body: &'static [u8]) -> Asset {
    Asset { path, content_type, body }
}

const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The routes of the page: each asset at its path, its ETag computed once.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        let tag = etag(asset.body);
        router.route(asset.path, get(move |headers: HeaderMap| async move { serve(asset, &tag, &headers) }))
    })
}

fn etag(body: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

/// Serves `asset`, or 304 when the client's copy is current.
fn serve(asset: &Asset, tag: &str, headers: &HeaderMap) -> Response {
    let fresh = headers.get(header::IF_NONE_MATCH).is_some_and(|seen| seen.as_bytes() == tag.as_bytes());
    let mut response =
        if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::ETAG, HeaderValue::from_str(tag).expect("a hex tag is a valid header"));
    out.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

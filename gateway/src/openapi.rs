//! The API description: an OpenAPI 3.1 document written by hand (gateway/openapi.json), compiled
//! into the binary and served at GET /openapi.json. The routes suite checks it against the router
//! both ways (gateway/tests/openapi.rs) and the HTTP suites check answers against its schemas.

use crate::db::JsonText;

/// The document, as written. Its chat routes use the default prefix (`chat/v1`): a gateway started
/// with another `--chat-prefix` serves them there instead (the document says so).
pub const DOCUMENT: &str = include_str!("../openapi.json");

pub async fn serve() -> JsonText {
    JsonText(DOCUMENT.to_string())
}

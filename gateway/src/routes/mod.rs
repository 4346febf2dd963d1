//! Every route of the gateway, in one table, each registered with its description (`routes!`
//! takes the method and path from the handler's `#[utoipa::path]`). Each handler extracts its
//! inputs, calls one SQL function of the extension, and returns its JSON; the rules are the
//! extension's.

mod channels;
mod health;
mod messages;
mod metrics;
mod moderation;
mod notifications;
mod presence;
pub(crate) mod rooms;
mod sse;
mod users;
mod web;
mod ws;

use crate::db::JsonText;
use crate::error::ApiError;
use crate::extract::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tower_http::trace::TraceLayer;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The whole router: the API (also under /api: clients written for the original deployment,
/// which proxied /api to the broker, work unchanged), the web client's files at the root, the
/// fallbacks and the body limit. `main` serves it; tests build the same router.
pub fn app(state: AppState, max_body_bytes: usize, chat_prefix: &str) -> Router {
    crate::metrics::install();
    let api = Router::from(router(chat_prefix))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        });
    Router::new()
        .nest("/api", api.clone())
        .merge(web::routes())
        .merge(api)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The API routes and their description; the multi-room chat routes live under
/// `/{chat_prefix}/auth/{token}`.
pub fn router(chat_prefix: &str) -> OpenApiRouter<AppState> {
    let chat = format!("/{}/auth/{{token}}", chat_prefix.trim_matches('/'));
    OpenApiRouter::with_openapi(crate::openapi::front_matter().merge_from(ChatRoutes::openapi()))
        .routes(routes!(users::register))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(moderation::set_chat_disabled))
        .routes(routes!(moderation::list_blocked, moderation::block))
        .routes(routes!(moderation::unblock))
        .routes(routes!(moderation::ban, moderation::unban))
        .routes(routes!(moderation::mute))
        .routes(routes!(channels::create, channels::list))
        .routes(routes!(channels::get, channels::update, channels::delete))
        .routes(routes!(channels::invite_at_root))
        .routes(routes!(channels::invite))
        .routes(routes!(channels::leave))
        .routes(routes!(channels::mark_read))
        .routes(routes!(messages::edit, messages::delete))
        .routes(routes!(messages::react))
        .routes(routes!(messages::unreact))
        .routes(routes!(channels::set_read_receipts))
        .routes(routes!(presence::list))
        .routes(routes!(presence::typing))
        .routes(routes!(presence::set_hidden))
        .routes(routes!(messages::send, messages::poll))
        .routes(routes!(notifications::poll))
        .routes(routes!(sse::channel_events))
        .routes(routes!(sse::notification_events))
        .routes(routes!(ws::upgrade))
        // Under the configured prefix, and one wildcard for a room id that may hold slashes: the
        // document describes these at the default prefix (openapi.rs).
        .route(&format!("{chat}/rooms"), post(rooms::create))
        .route(&format!("{chat}/rooms/{{*room}}"), get(rooms::get).post(rooms::post_message))
        .route(&format!("{chat}/system-messages"), post(rooms::system_message))
        .routes(routes!(health::ping))
        .routes(routes!(health::health))
        .routes(routes!(metrics::render))
        .routes(routes!(describe))
}

// The chat routes' router paths carry the configured prefix and a wildcard (above): they are
// described apart, at the default prefix.
#[derive(OpenApi)]
#[openapi(paths(rooms::create, rooms::get, rooms::post_message, rooms::system_message))]
struct ChatRoutes;

/// The API description, once per process: the router's table, the chat routes at the default
/// prefix, and the front matter (openapi.rs).
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = router(hatchat_wire::CHAT_SERVICE).into_openapi();
        // utoipa names each operation after its function (`get` thrice); the document names none.
        for item in document.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                operation.operation_id = None;
            }
        }
        document.to_json().expect("the document serializes")
    })
}

/// This document
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(),
    responses((status = 200, description = "OK", body = inline(DocumentShape))))]
pub async fn describe() -> JsonText {
    JsonText(document().to_string())
}

// What GET /openapi.json answers, as far as the document says.
#[derive(ToSchema)]
#[allow(dead_code)]
struct DocumentShape {
    openapi: String,
    paths: BTreeMap<String, serde_json::Value>,
}

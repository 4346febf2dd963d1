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
pub(crate) mod rooms;
mod sse;
mod users;
mod web;
mod ws;

use crate::state::AppState;
use axum::routing::{get, post};
use axum::Router;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The web client's files, served at the root (not under /api).
pub fn web() -> Router<AppState> {
    web::routes()
}

/// The API routes and their description; the multi-room chat routes live under
/// `/{chat_prefix}/auth/{token}`.
pub fn router(chat_prefix: &str) -> OpenApiRouter<AppState> {
    let chat = format!("/{}/auth/{{token}}", chat_prefix.trim_matches('/'));
    OpenApiRouter::with_openapi(crate::openapi::front_matter())
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
        .routes(routes!(crate::openapi::serve))
}

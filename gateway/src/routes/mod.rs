//! Every route of the gateway, in one table. Each handler extracts its inputs, calls one SQL
//! function of the extension, and returns its JSON; the rules are the extension's.

mod channels;
mod health;
mod messages;
mod metrics;
mod moderation;
mod notifications;
mod rooms;
mod sse;
mod users;
mod web;
mod ws;

use crate::state::AppState;
use axum::routing::{delete, get, patch, post, put};
use axum::Router;

/// The web client's files, served at the root (not under /api).
pub fn web() -> Router<AppState> {
    web::routes()
}

/// The API routes; the multi-room chat routes live under `/{chat_prefix}/auth/{token}`.
pub fn router(chat_prefix: &str) -> Router<AppState> {
    let chat = format!("/{}/auth/{{token}}", chat_prefix.trim_matches('/'));
    Router::new()
        .route("/users", post(users::register))
        .route("/users/{id}", get(users::get).patch(users::update).delete(users::delete))
        .route("/users/{id}/chat-disabled", put(moderation::set_chat_disabled))
        .route("/users/{id}/blocks", get(moderation::list_blocked).post(moderation::block))
        .route("/users/{id}/blocks/{blocked}", axum::routing::delete(moderation::unblock))
        .route("/admin/users/{id}/ban", post(moderation::ban).delete(moderation::unban))
        .route("/admin/users/{id}/mute", post(moderation::mute))
        .route("/channels", post(channels::create).get(channels::list))
        .route("/channels/{id}", get(channels::get).patch(channels::update).delete(channels::delete))
        .route("/invite", post(channels::invite))
        .route("/channels/invite", post(channels::invite))
        .route("/channels/{id}/leave", post(channels::leave))
        .route("/channels/{id}/read", post(channels::mark_read))
        .route("/channels/{id}/messages/{seq}", patch(messages::edit).delete(messages::delete))
        .route("/channels/{id}/messages/{seq}/reactions", post(messages::react))
        .route("/channels/{id}/messages/{seq}/reactions/{reaction}", delete(messages::unreact))
        .route("/users/{id}/read-receipts", put(channels::set_read_receipts))
        .route("/messages", post(messages::send).get(messages::poll))
        .route("/notifications", get(notifications::poll))
        .route("/channels/{id}/events", get(sse::channel_events))
        .route("/notifications/events", get(sse::notification_events))
        .route("/ws", get(ws::upgrade))
        .route(&format!("{chat}/rooms"), post(rooms::create))
        .route(&format!("{chat}/rooms/{{*room}}"), get(rooms::get).post(rooms::post_message))
        .route(&format!("{chat}/system-messages"), post(rooms::system_message))
        .route("/ping", get(health::ping))
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(crate::openapi::serve))
}

//! Every route of the gateway, in one table. Each handler extracts its inputs, calls one SQL
//! function of the extension, and returns its JSON; the rules are the extension's.

mod channels;
mod health;
mod messages;
mod users;

use crate::app::AppState;
use axum::routing::{get, post};
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", post(users::register))
        .route("/users/{id}", get(users::get).patch(users::update).delete(users::delete))
        .route("/channels", post(channels::create).get(channels::list))
        .route("/channels/{id}", get(channels::get).patch(channels::update).delete(channels::delete))
        .route("/invite", post(channels::invite))
        .route("/channels/invite", post(channels::invite))
        .route("/channels/{id}/leave", post(channels::leave))
        .route("/messages", post(messages::send).get(messages::poll))
        .route("/ping", get(health::ping))
        .route("/health", get(health::health))
}

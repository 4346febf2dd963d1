//! Moderation routes. Self-service under `/users/{id}/…` (the token must be that user's);
//! admin under `/admin/users/{id}/…` (the token must be the server secret: the gateway's own
//! database role never has admin rights).

use crate::extract::{JsonBody, PathParam, PathParams, Token};
use crate::state::{Answer, AppState};
use axum::extract::State;
use hatchat_wire::api;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct ChatDisabled {
    disabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    user_id: Option<String>,
}

#[derive(Deserialize)]
pub struct Ban {
    until: Option<String>,
}

#[derive(Deserialize)]
pub struct Mute {
    muted: Option<bool>,
}

pub async fn set_chat_disabled(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(body): JsonBody<ChatDisabled>,
) -> Answer {
    app.call(api::SET_CHAT_DISABLED, &[&token, &body.disabled, &id]).await
}

pub async fn list_blocked(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
) -> Answer {
    app.call(api::LIST_BLOCKED, &[&token, &id]).await
}

pub async fn block(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(body): JsonBody<Block>,
) -> Answer {
    app.call(api::BLOCK_USER, &[&token, &body.user_id, &id]).await
}

pub async fn unblock(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams((id, blocked)): PathParams<(String, String)>,
) -> Answer {
    app.call(api::UNBLOCK_USER, &[&token, &blocked, &id]).await
}

pub async fn ban(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(body): JsonBody<Ban>,
) -> Answer {
    app.call(api::BAN_USER, &[&token, &id, &body.until]).await
}

pub async fn unban(State(app): State<AppState>, Token(token): Token, PathParams(id): PathParam) -> Answer {
    app.call(api::UNBAN_USER, &[&token, &id]).await
}

pub async fn mute(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(body): JsonBody<Mute>,
) -> Answer {
    app.call(api::MUTE_USER, &[&token, &id, &body.muted]).await
}

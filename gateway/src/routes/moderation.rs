//! Moderation routes. Self-service under `/users/{id}/…` (the token must be that user's);
//! admin under `/admin/users/{id}/…` (the token must be the server secret: the gateway's own
//! database role never has admin rights).

use crate::extract::{JsonBody, PathParam, PathParams, Token};
use crate::state::{Answer, AppState};
use axum::extract::State;
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
    let sql = "SELECT hatchat.set_chat_disabled($1, $2, $3::text::uuid)::text";
    app.call(sql, &[&token, &body.disabled, &id]).await
}

pub async fn list_blocked(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
) -> Answer {
    let sql = "SELECT hatchat.list_blocked($1, $2::text::uuid)::text";
    app.call(sql, &[&token, &id]).await
}

pub async fn block(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(body): JsonBody<Block>,
) -> Answer {
    let sql = "SELECT hatchat.block_user($1, $2::text::uuid, $3::text::uuid)::text";
    app.call(sql, &[&token, &body.user_id, &id]).await
}

pub async fn unblock(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams((id, blocked)): PathParams<(String, String)>,
) -> Answer {
    let sql = "SELECT hatchat.unblock_user($1, $2::text::uuid, $3::text::uuid)::text";
    app.call(sql, &[&token, &blocked, &id]).await
}

pub async fn ban(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(body): JsonBody<Ban>,
) -> Answer {
    let sql = "SELECT hatchat.ban_user($1, $2::text::uuid, $3::text::timestamptz)::text";
    app.call(sql, &[&token, &id, &body.until]).await
}

pub async fn unban(State(app): State<AppState>, Token(token): Token, PathParams(id): PathParam) -> Answer {
    let sql = "SELECT hatchat.unban_user($1, $2::text::uuid)::text";
    app.call(sql, &[&token, &id]).await
}

pub async fn mute(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(body): JsonBody<Mute>,
) -> Answer {
    let sql = "SELECT hatchat.mute_user($1, $2::text::uuid, $3)::text";
    app.call(sql, &[&token, &id, &body.muted]).await
}

//! Moderation routes. Self-service under `/users/{id}/…` (the token must be that user's);
//! admin under `/admin/users/{id}/…` (the token must be the server secret: the gateway's own
//! database role never has admin rights).

use crate::app::AppState;
use crate::db;
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParam, PathParams, Token};
use axum::extract::State;
use axum::response::Response;
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
) -> Result<Response, ApiError> {
    let sql = "SELECT hatchat.set_chat_disabled($1, $2, $3::text::uuid)::text";
    Ok(db::json(db::call_json(&app.pool, sql, &[&token, &body.disabled, &id]).await?))
}

pub async fn list_blocked(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
) -> Result<Response, ApiError> {
    let sql = "SELECT hatchat.list_blocked($1, $2::text::uuid)::text";
    Ok(db::json(db::call_json(&app.pool, sql, &[&token, &id]).await?))
}

pub async fn block(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(body): JsonBody<Block>,
) -> Result<Response, ApiError> {
    let sql = "SELECT hatchat.block_user($1, $2::text::uuid, $3::text::uuid)::text";
    Ok(db::json(db::call_json(&app.pool, sql, &[&token, &body.user_id, &id]).await?))
}

pub async fn unblock(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams((id, blocked)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    let sql = "SELECT hatchat.unblock_user($1, $2::text::uuid, $3::text::uuid)::text";
    Ok(db::json(db::call_json(&app.pool, sql, &[&token, &blocked, &id]).await?))
}

pub async fn ban(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(body): JsonBody<Ban>,
) -> Result<Response, ApiError> {
    let sql = "SELECT hatchat.ban_user($1, $2::text::uuid, $3::text::timestamptz)::text";
    Ok(db::json(db::call_json(&app.pool, sql, &[&token, &id, &body.until]).await?))
}

pub async fn unban(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
) -> Result<Response, ApiError> {
    let sql = "SELECT hatchat.unban_user($1, $2::text::uuid)::text";
    Ok(db::json(db::call_json(&app.pool, sql, &[&token, &id]).await?))
}

pub async fn mute(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(body): JsonBody<Mute>,
) -> Result<Response, ApiError> {
    let sql = "SELECT hatchat.mute_user($1, $2::text::uuid, $3)::text";
    Ok(db::json(db::call_json(&app.pool, sql, &[&token, &id, &body.muted]).await?))
}

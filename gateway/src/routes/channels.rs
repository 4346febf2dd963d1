//! /channels and /invite: create, view, list, change, delete, invite, leave.

use crate::app::AppState;
use crate::db;
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParam, PathParams, Token};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewChannel {
    id: Option<String>,
    invite_model: Option<String>,
    /// `{maxMessages, ttlSeconds, notify}`, passed to the extension as it came.
    options: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelChange {
    invite_model: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    channel_id: Option<String>,
    user_id: Option<String>,
}

pub async fn create(
    State(app): State<AppState>,
    Token(token): Token,
    JsonBody(channel): JsonBody<NewChannel>,
) -> Result<Response, ApiError> {
    let options = channel.options.as_deref().map(serde_json::value::RawValue::get).unwrap_or("{}");
    let sql = "SELECT hatchat.create_channel($1, $2, $3, $4::text::jsonb)::text";
    Ok(db::json(
        db::call_json(&app.pool, sql, &[&token, &channel.id, &channel.invite_model, &options]).await?,
    ))
}

pub async fn list(State(app): State<AppState>, Token(token): Token) -> Result<Response, ApiError> {
    Ok(db::json(db::call_json(&app.pool, "SELECT hatchat.list_channels($1)::text", &[&token]).await?))
}

pub async fn get(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
) -> Result<Response, ApiError> {
    let sql = "SELECT hatchat.get_channel($1, $2)::text";
    Ok(db::json(db::call_json(&app.pool, sql, &[&token, &id]).await?))
}

pub async fn update(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(change): JsonBody<ChannelChange>,
) -> Result<Response, ApiError> {
    let sql = "SELECT hatchat.update_channel($1, $2, $3)::text";
    Ok(db::json(db::call_json(&app.pool, sql, &[&token, &id, &change.invite_model]).await?))
}

pub async fn delete(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
) -> Result<Response, ApiError> {
    db::call(&app.pool, "SELECT hatchat.delete_channel($1, $2)", &[&token, &id]).await?;
    Ok(db::json(r#"{"deleted":true}"#.into()))
}

pub async fn invite(
    State(app): State<AppState>,
    Token(token): Token,
    JsonBody(invitation): JsonBody<Invitation>,
) -> Result<Response, ApiError> {
    let sql = "SELECT hatchat.invite($1, $2, $3::text::uuid)::text";
    Ok(db::json(db::call_json(&app.pool, sql, &[&token, &invitation.channel_id, &invitation.user_id]).await?))
}

pub async fn leave(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
) -> Result<Response, ApiError> {
    db::call(&app.pool, "SELECT hatchat.leave_channel($1, $2)", &[&token, &id]).await?;
    Ok(db::json(r#"{"left":true}"#.into()))
}

//! /channels and /invite: create, view, list, change, delete, invite, leave.

use crate::extract::{JsonBody, PathParam, PathParams, Token};
use crate::state::{Answer, AppState};
use axum::extract::State;
use hatchat_wire::api;
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewChannel {
    id: Option<String>,
    invite_model: Option<String>,
    /// `{maxMessages, ttlSeconds, notifyMembers}`, passed to the extension as it came.
    options: Option<Box<RawValue>>,
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
    JsonBody(c): JsonBody<NewChannel>,
) -> Answer {
    let options = c.options.as_deref().map_or("{}", RawValue::get);
    app.call(api::CREATE_CHANNEL, &[&token, &c.id, &c.invite_model, &options]).await
}

pub async fn list(State(app): State<AppState>, Token(token): Token) -> Answer {
    app.call(api::LIST_CHANNELS, &[&token]).await
}

pub async fn get(State(app): State<AppState>, Token(token): Token, PathParams(id): PathParam) -> Answer {
    app.call(api::GET_CHANNEL, &[&token, &id]).await
}

pub async fn update(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(change): JsonBody<ChannelChange>,
) -> Answer {
    app.call(api::UPDATE_CHANNEL, &[&token, &id, &change.invite_model]).await
}

pub async fn delete(State(app): State<AppState>, Token(token): Token, PathParams(id): PathParam) -> Answer {
    app.call_void(api::DELETE_CHANNEL, &[&token, &id], r#"{"deleted":true}"#).await
}

pub async fn invite(
    State(app): State<AppState>,
    Token(token): Token,
    JsonBody(i): JsonBody<Invitation>,
) -> Answer {
    app.call(api::INVITE, &[&token, &i.channel_id, &i.user_id]).await
}

pub async fn leave(State(app): State<AppState>, Token(token): Token, PathParams(id): PathParam) -> Answer {
    app.call_void(api::LEAVE_CHANNEL, &[&token, &id], r#"{"left":true}"#).await
}

#[derive(Deserialize)]
pub struct ReadPosition {
    seq: Option<i64>,
}

#[derive(Deserialize)]
pub struct ReadReceipts {
    enabled: Option<bool>,
}

/// POST /channels/{id}/read `{seq}`: the caller has read up to `seq` (never moves backwards).
pub async fn mark_read(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(r): JsonBody<ReadPosition>,
) -> Answer {
    app.call(api::MARK_READ, &[&token, &id, &r.seq]).await
}

/// PUT /users/{id}/read-receipts `{enabled}`: whether other members see the caller's read position.
pub async fn set_read_receipts(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(r): JsonBody<ReadReceipts>,
) -> Answer {
    app.call(api::SET_READ_RECEIPTS, &[&token, &r.enabled, &id]).await
}

//! /channels and /invite: create, view, list, change, delete, invite, leave.

use crate::extract::{Answer, Call, JsonBody, PathParam, PathParams};
use crate::openapi::{BadRequest, Body, ChannelId, Conflict, Db, Forbidden, NotFound, Unauthorized};
use hatchat_wire::api;
use hatchat_wire::shapes::{
    self, Channel, ChannelDetail, ChannelWithReadState, Deleted, ErrorBody, Left, ReadState,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

// Fields are optional so that the extension names a missing one; the document says which it needs.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewChannel {
    /// 1..200 characters
    #[schema(required, nullable = false)]
    id: Option<String>,
    #[schema(nullable = false, value_type = Option<InviteModel>, inline)]
    invite_model: Option<String>,
    // Passed to the extension as it came.
    #[schema(value_type = ChannelOptions, inline, required = false)]
    options: Option<Box<RawValue>>,
}

// Who may add members to a channel, as the document shows it (the extension checks the value).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum InviteModel {
    Owner,
    Member,
    #[schema(rename = "self")]
    Myself,
}

// `NewChannel::options`, as the document shows them.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ChannelOptions {
    #[schema(required = false)]
    max_messages: Option<i64>,
    #[schema(required = false)]
    ttl_seconds: Option<i64>,
    #[schema(nullable = false)]
    notify_members: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelChange {
    #[schema(required, nullable = false)]
    invite_model: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    #[schema(required, nullable = false)]
    channel_id: Option<String>,
    #[schema(required, nullable = false, format = "uuid")]
    user_id: Option<String>,
}

/// Create a channel
///
/// Calls `hatchat.create_channel`.
#[utoipa::path(post, path = "/channels", tag = "channels", request_body = inline(NewChannel),
    responses((status = 200, description = "OK", body = Channel), BadRequest, Body, Unauthorized, Forbidden, Conflict, Db))]
pub async fn create(Call(app, token): Call, JsonBody(c): JsonBody<NewChannel>) -> Answer {
    let options = c.options.as_deref().map_or("{}", RawValue::get);
    app.call(api::CREATE_CHANNEL, &[&token, &c.id, &c.invite_model, &options]).await
}

/// The caller's channels
///
/// Calls `hatchat.list_channels`: the caller's live channels, oldest first, each with the caller's
/// read state.
#[utoipa::path(get, path = "/channels", tag = "channels",
    responses((status = 200, description = "OK", body = Vec<ChannelWithReadState>), Unauthorized, Db))]
pub async fn list(Call(app, token): Call) -> Answer {
    app.call(api::LIST_CHANNELS, &[&token]).await
}

/// A channel, its members, the caller's read state and the members' read receipts (members only)
///
/// Calls `hatchat.get_channel`.
#[utoipa::path(get, path = "/channels/{id}", tag = "channels", params(ChannelId),
    responses((status = 200, description = "OK", body = ChannelDetail), BadRequest, Unauthorized, Forbidden, NotFound, Db))]
pub async fn get(Call(app, token): Call, PathParams(id): PathParam) -> Answer {
    app.call(api::GET_CHANNEL, &[&token, &id]).await
}

/// Change a channel's invite model (owner)
///
/// Calls `hatchat.update_channel`.
#[utoipa::path(patch, path = "/channels/{id}", tag = "channels", params(ChannelId), request_body = inline(ChannelChange),
    responses((status = 200, description = "OK", body = Channel), BadRequest, Body, Unauthorized, Forbidden, NotFound, Db))]
pub async fn update(
    Call(app, token): Call,
    PathParams(id): PathParam,
    JsonBody(change): JsonBody<ChannelChange>,
) -> Answer {
    app.call(api::UPDATE_CHANNEL, &[&token, &id, &change.invite_model]).await
}

/// Delete a channel (owner)
///
/// Calls `hatchat.delete_channel`.
#[utoipa::path(delete, path = "/channels/{id}", tag = "channels", params(ChannelId),
    responses((status = 200, description = "OK", body = Deleted), BadRequest, Unauthorized, Forbidden, NotFound, Db))]
pub async fn delete(Call(app, token): Call, PathParams(id): PathParam) -> Answer {
    app.call_void(api::DELETE_CHANNEL, &[&token, &id], r#"{"deleted":true}"#).await
}

/// Invite a user to a channel, or join it
///
/// Calls `hatchat.invite`.
#[utoipa::path(post, path = "/channels/invite", tag = "channels", request_body = inline(Invitation),
    responses((status = 200, description = "OK", body = shapes::Invitation), BadRequest, Body, Unauthorized, Forbidden, NotFound, Conflict, Db))]
pub async fn invite(Call(app, token): Call, JsonBody(i): JsonBody<Invitation>) -> Answer {
    app.call(api::INVITE, &[&token, &i.channel_id, &i.user_id]).await
}

// `POST /channels/invite` at the path the original deployment gave it (a handler describes one path).
#[utoipa::path(post, path = "/invite", tag = "channels", request_body = inline(Invitation),
    summary = "Invite a user to a channel, or join it", description = "Calls `hatchat.invite`.",
    responses((status = 200, description = "OK", body = shapes::Invitation), BadRequest, Body, Unauthorized, Forbidden, NotFound, Conflict, Db))]
pub async fn invite_at_root(call: Call, body: JsonBody<Invitation>) -> Answer {
    invite(call, body).await
}

/// Leave a channel
///
/// Calls `hatchat.leave_channel`.
#[utoipa::path(post, path = "/channels/{id}/leave", tag = "channels", params(ChannelId),
    responses((status = 200, description = "OK", body = Left), BadRequest, Unauthorized, Forbidden, NotFound, Db))]
pub async fn leave(Call(app, token): Call, PathParams(id): PathParam) -> Answer {
    app.call_void(api::LEAVE_CHANNEL, &[&token, &id], r#"{"left":true}"#).await
}

#[derive(Deserialize, ToSchema)]
pub struct ReadPosition {
    #[schema(required, nullable = false, minimum = 0)]
    seq: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct ReadReceipts {
    #[schema(required, nullable = false)]
    enabled: Option<bool>,
}

/// Mark a channel read up to a seq
///
/// Calls `hatchat.mark_read`: moves the caller's read position (`readSeq`) to `seq`, 0..the
/// channel's `lastSeq` (400 otherwise). A position already further on stays: it never moves
/// backwards (the caller's own posts also move it). Members only; the server secret gets 403. The
/// answer is the caller's read state after the call.
#[utoipa::path(post, path = "/channels/{id}/read", tag = "channels", params(ChannelId),
    request_body = inline(ReadPosition),
    responses((status = 200, description = "OK", body = ReadState),
        (status = 400, description = "Malformed input, `seq` missing, or `seq` outside 0..lastSeq (22023)", body = ErrorBody),
        (status = 403, description = "Not a member of the channel, or the server secret (42501)", body = ErrorBody),
        Body, Unauthorized, NotFound, Db))]
pub async fn mark_read(
    Call(app, token): Call,
    PathParams(id): PathParam,
    JsonBody(r): JsonBody<ReadPosition>,
) -> Answer {
    app.call(api::MARK_READ, &[&token, &id, &r.seq]).await
}

/// Share or hide one's read position (read receipts)
///
/// Calls `hatchat.set_read_receipts`: whether other members see the caller's read position in `GET
/// /channels/{id}`'s `readReceipts` (they do by default; the caller always sees their own). `{id}`
/// must be the caller: anyone else, and the server secret, get 403.
#[utoipa::path(put, path = "/users/{id}/read-receipts", tag = "users", request_body = inline(ReadReceipts),
    params(("id" = String, Path, description = "The caller's own user id.", format = "uuid")),
    responses((status = 200, description = "OK", body = shapes::ReadReceipts), BadRequest, Body, Unauthorized, Forbidden, Db))]
pub async fn set_read_receipts(
    Call(app, token): Call,
    PathParams(id): PathParam,
    JsonBody(r): JsonBody<ReadReceipts>,
) -> Answer {
    app.call(api::SET_READ_RECEIPTS, &[&token, &r.enabled, &id]).await
}

//! The multi-room chat routes of ganomede-chat, under a configurable prefix (`chat/v1`):
//! `POST /{prefix}/auth/{token}/rooms`, `GET /{prefix}/auth/{token}/rooms/{roomId}`,
//! `POST /{prefix}/auth/{token}/rooms/{roomId}/messages`, `POST /{prefix}/auth/{secret}/system-messages`.
//! The token in the path is a signed token (URL-safe base64, or percent-encoded standard base64) or
//! the server secret. A room id is percent-encoded (`triominos%2Fv1%2Falice%2Fbob`); plain slashes
//! work too.

use crate::error::ApiError;
use crate::extract::{Answer, AppState, JsonBody, PathParams, RawJsonBody};
use crate::openapi::{BadRequest, Body, ChatToken, Db, Forbidden, NotFound, RoomPath, Unauthorized};
use axum::extract::State;
use hatchat_wire::api;
use hatchat_wire::shapes::{Room, RoomMessage};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

// Fields are optional so that the extension names a missing one; the document says they are not.
#[derive(Deserialize, ToSchema)]
pub struct NewRoom {
    #[serde(rename = "type")]
    #[schema(required, nullable = false)]
    kind: Option<String>,
    #[schema(required, nullable = false)]
    users: Option<Vec<String>>,
}

// A post to a room, as the document shows it (the extension reads the body as it came).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RoomPost {
    #[schema(required = false)]
    message: Value,
    #[schema(required = false)]
    timestamp: Value,
    #[schema(rename = "type", nullable = false)]
    kind: Option<String>,
    #[schema(required = false)]
    push: Value,
}

// A system message, as the document shows it (the extension reads the body as it came).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SystemPost {
    #[schema(rename = "type")]
    kind: String,
    users: Vec<String>,
    #[schema(required = false)]
    timestamp: Value,
    #[schema(required = false)]
    message: Value,
}

/// Create a room (or get the existing one)
///
/// Calls `hatchat.create_room`.
#[utoipa::path(post, path = "/chat/v1/auth/{token}/rooms", tag = "rooms", security(), params(ChatToken),
    request_body = inline(NewRoom),
    responses((status = 200, description = "OK", body = Room), BadRequest, Body, Unauthorized, Forbidden, Db))]
pub async fn create(
    State(app): State<AppState>,
    PathParams(token): PathParams<String>,
    JsonBody(room): JsonBody<NewRoom>,
) -> Answer {
    app.call(api::CREATE_ROOM, &[&token, &room.kind, &room.users]).await
}

/// A room and its messages, newest first
///
/// Calls `hatchat.get_room`.
#[utoipa::path(get, path = "/chat/v1/auth/{token}/rooms/{roomId}", tag = "rooms", security(), params(RoomPath),
    responses((status = 200, description = "OK", body = Room), BadRequest, Unauthorized, Forbidden, NotFound, Db))]
pub async fn get(
    State(app): State<AppState>,
    PathParams((token, room)): PathParams<(String, String)>,
) -> Answer {
    app.call(api::GET_ROOM, &[&token, &room]).await
}

/// Post to a room
///
/// Calls `hatchat.post_room_message`.
#[utoipa::path(post, path = "/chat/v1/auth/{token}/rooms/{roomId}/messages", tag = "rooms", security(),
    params(RoomPath), request_body = inline(RoomPost),
    responses((status = 200, description = "OK", body = RoomMessage), BadRequest, Body, Unauthorized, Forbidden, NotFound, Db))]
// Routed as `…/rooms/{*room}`: the room id is the path before the last `/messages`.
pub async fn post_message(
    State(app): State<AppState>,
    PathParams((token, rest)): PathParams<(String, String)>,
    JsonBody(body): RawJsonBody,
) -> Answer {
    let room = rest.strip_suffix("/messages").ok_or_else(|| ApiError::not_found("no such route"))?;
    app.call(api::POST_ROOM_MESSAGE, &[&token, &room, &body.get()]).await
}

/// Post a system message to a room (server secret in the path)
///
/// Calls `hatchat.post_system_message`.
#[utoipa::path(post, path = "/chat/v1/auth/{token}/system-messages", tag = "rooms", security(),
    params(("token" = String, Path, description = "The server secret.")), request_body = inline(SystemPost),
    responses((status = 200, description = "OK", body = RoomMessage), BadRequest, Body, Unauthorized, Forbidden, NotFound, Db))]
pub async fn system_message(
    State(app): State<AppState>,
    PathParams(secret): PathParams<String>,
    JsonBody(body): RawJsonBody,
) -> Answer {
    app.call(api::POST_SYSTEM_MESSAGE, &[&secret, &body.get()]).await
}

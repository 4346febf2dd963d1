//! The multi-room chat routes of ganomede-chat, under a configurable prefix (`chat/v1`):
//! `POST /{prefix}/auth/{token}/rooms`, `GET /{prefix}/auth/{token}/rooms/{roomId}`,
//! `POST /{prefix}/auth/{token}/rooms/{roomId}/messages`, `POST /{prefix}/auth/{secret}/system-messages`.
//! The token in the path is a signed token (URL-safe base64, or percent-encoded standard base64) or
//! the server secret. A room id is percent-encoded (`triominos%2Fv1%2Falice%2Fbob`); plain slashes
//! work too.

use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams, RawJsonBody};
use crate::state::{Answer, AppState};
use axum::extract::State;
use hatchat_wire::api;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct NewRoom {
    #[serde(rename = "type")]
    kind: Option<String>,
    users: Option<Vec<String>>,
}

pub async fn create(
    State(app): State<AppState>,
    PathParams(token): PathParams<String>,
    JsonBody(room): JsonBody<NewRoom>,
) -> Answer {
    app.call(api::CREATE_ROOM, &[&token, &room.kind, &room.users]).await
}

pub async fn get(
    State(app): State<AppState>,
    PathParams((token, room)): PathParams<(String, String)>,
) -> Answer {
    app.call(api::GET_ROOM, &[&token, &room]).await
}

/// `…/rooms/{roomId}/messages`: the room id is the path before the last `/messages`.
pub async fn post_message(
    State(app): State<AppState>,
    PathParams((token, rest)): PathParams<(String, String)>,
    RawJsonBody(body): RawJsonBody,
) -> Answer {
    let room = rest.strip_suffix("/messages").ok_or_else(|| ApiError::not_found("no such route"))?;
    app.call(api::POST_ROOM_MESSAGE, &[&token, &room, &body.get()]).await
}

pub async fn system_message(
    State(app): State<AppState>,
    PathParams(secret): PathParams<String>,
    RawJsonBody(body): RawJsonBody,
) -> Answer {
    app.call(api::POST_SYSTEM_MESSAGE, &[&secret, &body.get()]).await
}

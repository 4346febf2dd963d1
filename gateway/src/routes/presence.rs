//! Presence and typing: who has a live stream on a channel, typing indicators, and hiding one's
//! presence. Streams carry the changes (`event: presence`, `event: typing`); these routes answer
//! the whole list and take typing.

use crate::extract::{Answer, Call, JsonBody, PathParam, PathParams};
use crate::openapi::{BadRequest, Body, ChannelId, Db, Forbidden, NotFound, Unauthorized};
use hatchat_wire::api;
use hatchat_wire::shapes::{self, ErrorBody};
use serde::Deserialize;
use utoipa::ToSchema;

/// Who is here
///
/// Calls `hatchat.channel_presence`: the channel's members with a live stream on it (SSE, a
/// WebSocket subscription, or a long-poll waiting) through any gateway of this database, longest
/// present first. A member stays present for 5 s after their last stream closed (a reconnect is
/// no leave); a gateway that stops takes its users' presence with it within its lease
/// (`--presence-lease-secs`, 15). Users who hide their presence, and users the caller blocked,
/// are left out. Members only.
#[utoipa::path(get, path = "/channels/{id}/presence", tag = "presence", params(ChannelId),
    responses((status = 200, description = "OK", body = Vec<shapes::Present>),
        (status = 403, description = "Not a member of the channel (42501)", body = ErrorBody),
        BadRequest, Unauthorized, NotFound, Db))]
pub async fn list(Call(app, token): Call, PathParams(id): PathParam) -> Answer {
    app.call(api::CHANNEL_PRESENCE, &[&token, &id]).await
}

/// Say the caller is typing
///
/// Calls `hatchat.typing`: the other members' live streams get an `event: typing` (WebSocket:
/// `{"type": "typing"}`) that lasts 6 s (`until`) unless sent again. Nothing is stored: no seq, no
/// unread count, no notification. At most once a second per user and channel: more is 429 with
/// `Retry-After: 1` (SQLSTATE 53400). Members only; a banned user, one who disabled chat, and the
/// server secret get 403. A muted member is answered as anyone, and nobody sees their typing.
#[utoipa::path(post, path = "/channels/{id}/typing", tag = "presence", params(ChannelId),
    responses((status = 200, description = "OK", body = shapes::Typed),
        (status = 403, description = "Not a member, banned, chat disabled, or the server secret (42501)", body = ErrorBody),
        (status = 429, description = "Typing sent again within a second on this channel (53400); see Retry-After",
            body = ErrorBody),
        BadRequest, Unauthorized, NotFound, Db))]
pub async fn typing(Call(app, token): Call, PathParams(id): PathParam) -> Answer {
    app.call(api::TYPING, &[&token, &id]).await
}

#[derive(Deserialize, ToSchema)]
pub struct PresenceSetting {
    #[schema(required, nullable = false)]
    hidden: Option<bool>,
}

/// Hide or show one's presence
///
/// Calls `hatchat.set_presence_hidden`: whether other members are kept from seeing the caller
/// present (`GET /channels/{id}/presence` and streams' `presence` events; shown by default).
/// Hiding is a leave on every channel where the caller is present; showing again, a join. `{id}`
/// must be the caller: anyone else, and the server secret, get 403.
#[utoipa::path(put, path = "/users/{id}/presence", tag = "users", request_body = inline(PresenceSetting),
    params(("id" = String, Path, description = "The caller's own user id.", format = "uuid")),
    responses((status = 200, description = "OK", body = shapes::PresenceHidden), BadRequest, Body, Unauthorized,
        Forbidden, Db))]
pub async fn set_hidden(
    Call(app, token): Call,
    PathParams(id): PathParam,
    JsonBody(setting): JsonBody<PresenceSetting>,
) -> Answer {
    app.call(api::SET_PRESENCE_HIDDEN, &[&token, &setting.hidden, &id]).await
}

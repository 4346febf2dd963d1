//! Moderation routes. Self-service under `/users/{id}/…` (the token must be that user's);
//! admin under `/admin/users/{id}/…` (the token must be the server secret: the gateway's own
//! database role never has admin rights).

use crate::extract::{Answer, Call, JsonBody, PathParam, PathParams};
use crate::openapi::{BadRequest, Body, Db, Forbidden, NotFound, Unauthorized, UserId};
use hatchat_wire::api;
use hatchat_wire::shapes::{Moderation, UserRef};
use serde::Deserialize;
use utoipa::ToSchema;

// Fields are optional so that the extension names a missing one; the document says they are not.
#[derive(Deserialize, ToSchema)]
pub struct ChatDisabled {
    #[schema(required, nullable = false)]
    disabled: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    #[schema(required, nullable = false, format = "uuid")]
    user_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct Ban {
    /// timestamptz (a past time lifts the ban)
    #[schema(required, nullable = false)]
    until: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct Mute {
    #[schema(required, nullable = false)]
    muted: Option<bool>,
}

/// Turn the user's chat off or on
///
/// Calls `hatchat.set_chat_disabled`.
#[utoipa::path(put, path = "/users/{id}/chat-disabled", tag = "moderation", params(UserId),
    request_body = inline(ChatDisabled),
    responses((status = 200, description = "OK", body = Moderation), BadRequest, Body, Unauthorized, Forbidden, NotFound, Db))]
pub async fn set_chat_disabled(
    Call(app, token): Call,
    PathParams(id): PathParam,
    JsonBody(body): JsonBody<ChatDisabled>,
) -> Answer {
    app.call(api::SET_CHAT_DISABLED, &[&token, &body.disabled, &id]).await
}

/// The users this user blocks
///
/// Calls `hatchat.list_blocked`.
#[utoipa::path(get, path = "/users/{id}/blocks", tag = "moderation", params(UserId),
    responses((status = 200, description = "OK", body = Vec<UserRef>), BadRequest, Unauthorized, Forbidden, NotFound, Db))]
pub async fn list_blocked(Call(app, token): Call, PathParams(id): PathParam) -> Answer {
    app.call(api::LIST_BLOCKED, &[&token, &id]).await
}

/// Block a user
///
/// Calls `hatchat.block_user`.
#[utoipa::path(post, path = "/users/{id}/blocks", tag = "moderation", params(UserId), request_body = inline(Block),
    responses((status = 200, description = "OK", body = Vec<UserRef>), BadRequest, Body, Unauthorized, Forbidden, NotFound, Db))]
pub async fn block(
    Call(app, token): Call,
    PathParams(id): PathParam,
    JsonBody(body): JsonBody<Block>,
) -> Answer {
    app.call(api::BLOCK_USER, &[&token, &body.user_id, &id]).await
}

/// Unblock a user
///
/// Calls `hatchat.unblock_user`.
#[utoipa::path(delete, path = "/users/{id}/blocks/{blocked}", tag = "moderation",
    params(UserId, ("blocked" = String, Path, description = "The blocked user's id (uuid).", format = "uuid")),
    responses((status = 200, description = "OK", body = Vec<UserRef>), BadRequest, Unauthorized, Forbidden, NotFound, Db))]
pub async fn unblock(
    Call(app, token): Call,
    PathParams((id, blocked)): PathParams<(String, String)>,
) -> Answer {
    app.call(api::UNBLOCK_USER, &[&token, &blocked, &id]).await
}

/// Ban a user (the server secret as token)
///
/// Calls `hatchat.ban_user`.
#[utoipa::path(post, path = "/admin/users/{id}/ban", tag = "moderation", params(UserId), request_body = inline(Ban),
    responses((status = 200, description = "OK", body = Moderation), BadRequest, Body, Unauthorized, Forbidden, NotFound, Db))]
pub async fn ban(Call(app, token): Call, PathParams(id): PathParam, JsonBody(body): JsonBody<Ban>) -> Answer {
    app.call(api::BAN_USER, &[&token, &id, &body.until]).await
}

/// Lift a ban (the server secret as token)
///
/// Calls `hatchat.unban_user`.
#[utoipa::path(delete, path = "/admin/users/{id}/ban", tag = "moderation", params(UserId),
    responses((status = 200, description = "OK", body = Moderation), BadRequest, Unauthorized, Forbidden, NotFound, Db))]
pub async fn unban(Call(app, token): Call, PathParams(id): PathParam) -> Answer {
    app.call(api::UNBAN_USER, &[&token, &id]).await
}

/// Mute or unmute a user (the server secret as token)
///
/// Calls `hatchat.mute_user`.
#[utoipa::path(post, path = "/admin/users/{id}/mute", tag = "moderation", params(UserId), request_body = inline(Mute),
    responses((status = 200, description = "OK", body = Moderation), BadRequest, Body, Unauthorized, Forbidden, NotFound, Db))]
pub async fn mute(
    Call(app, token): Call,
    PathParams(id): PathParam,
    JsonBody(body): JsonBody<Mute>,
) -> Answer {
    app.call(api::MUTE_USER, &[&token, &id, &body.muted]).await
}

//! /users: register, view, rename, delete.

use crate::extract::{Answer, AppState, Call, JsonBody, PathParam, PathParams};
use crate::openapi::{BadRequest, Body, Conflict, Db, Forbidden, NotFound, Unauthorized, UserId};
use axum::extract::State;
use hatchat_wire::api;
use hatchat_wire::shapes::{Deleted, User};
use serde::Deserialize;
use utoipa::ToSchema;

// Fields are optional so that the extension names a missing one; the document says they are not.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewUser {
    #[schema(required, nullable = false, format = "uuid")]
    id: Option<String>,
    /// RSA public key, PEM (SPKI or PKCS#1), 2048 bits or more
    #[schema(required, nullable = false)]
    public_key: Option<String>,
    #[schema(required, nullable = false)]
    username: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct Rename {
    #[schema(required, nullable = false)]
    username: Option<String>,
}

/// Register a user
///
/// Calls `hatchat.register_user`. Who may register is the operator's setting `hatchat.registration`:
/// `open` (anyone; the Authorization header is not looked at), `secret` (only a request whose
/// Authorization is the server secret: the app's backend), or `closed`.
#[utoipa::path(post, path = "/users", tag = "users", security((), ("token" = [])),
    request_body = inline(NewUser),
    responses((status = 200, description = "OK", body = User), BadRequest, Unauthorized, Forbidden, Body, Conflict, Db))]
pub async fn register(Call(app, secret): Call, JsonBody(user): JsonBody<NewUser>) -> Answer {
    app.call(api::REGISTER_USER, &[&user.id, &user.public_key, &user.username, &secret]).await
}

/// A user's public profile
///
/// Calls `hatchat.get_user`.
#[utoipa::path(get, path = "/users/{id}", tag = "users", security(), params(UserId),
    responses((status = 200, description = "OK", body = User), BadRequest, NotFound, Db))]
pub async fn get(State(app): State<AppState>, PathParams(id): PathParam) -> Answer {
    app.call(api::GET_USER, &[&id]).await
}

/// Rename a user (the user's own token)
///
/// Calls `hatchat.update_user`.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", params(UserId), request_body = inline(Rename),
    responses((status = 200, description = "OK", body = User), BadRequest, Body, Unauthorized, Forbidden, NotFound, Conflict, Db))]
pub async fn update(
    Call(app, token): Call,
    PathParams(id): PathParam,
    JsonBody(rename): JsonBody<Rename>,
) -> Answer {
    app.call(api::UPDATE_USER, &[&token, &id, &rename.username]).await
}

/// Delete a user (the user's own token)
///
/// Calls `hatchat.delete_user`.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(UserId),
    responses((status = 200, description = "OK", body = Deleted), BadRequest, Unauthorized, Forbidden, NotFound, Db))]
pub async fn delete(Call(app, token): Call, PathParams(id): PathParam) -> Answer {
    app.call_void(api::DELETE_USER, &[&token, &id], r#"{"deleted":true}"#).await
}

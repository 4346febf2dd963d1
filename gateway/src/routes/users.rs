//! /users: register, view, rename, delete.

use crate::extract::{JsonBody, PathParam, PathParams, Token};
use crate::state::{Answer, AppState};
use axum::extract::State;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUser {
    id: Option<String>,
    public_key: Option<String>,
    username: Option<String>,
}

#[derive(Deserialize)]
pub struct Rename {
    username: Option<String>,
}

/// POST /users. Where only the server secret registers (`hatchat.registration = secret`), the
/// app's backend sends it as the Authorization header; otherwise the header is not looked at.
pub async fn register(
    State(app): State<AppState>,
    Token(secret): Token,
    JsonBody(user): JsonBody<NewUser>,
) -> Answer {
    let sql = "SELECT hatchat.register_user($1::text::uuid, $2, $3, $4)::text";
    app.call(sql, &[&user.id, &user.public_key, &user.username, &secret]).await
}

pub async fn get(State(app): State<AppState>, PathParams(id): PathParam) -> Answer {
    app.call("SELECT hatchat.get_user($1::text::uuid)::text", &[&id]).await
}

pub async fn update(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(rename): JsonBody<Rename>,
) -> Answer {
    app.call("SELECT hatchat.update_user($1, $2::text::uuid, $3)::text", &[&token, &id, &rename.username])
        .await
}

pub async fn delete(State(app): State<AppState>, Token(token): Token, PathParams(id): PathParam) -> Answer {
    app.call_void("SELECT hatchat.delete_user($1, $2::text::uuid)", &[&token, &id], r#"{"deleted":true}"#)
        .await
}

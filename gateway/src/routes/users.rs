//! /users: register, view, rename, delete.

use crate::extract::{JsonBody, PathParam, PathParams, Token};
use crate::state::{Answer, AppState};
use axum::extract::State;
use hatchat_wire::api;
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
    app.call(api::REGISTER_USER, &[&user.id, &user.public_key, &user.username, &secret]).await
}

pub async fn get(State(app): State<AppState>, PathParams(id): PathParam) -> Answer {
    app.call(api::GET_USER, &[&id]).await
}

pub async fn update(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(rename): JsonBody<Rename>,
) -> Answer {
    app.call(api::UPDATE_USER, &[&token, &id, &rename.username]).await
}

pub async fn delete(State(app): State<AppState>, Token(token): Token, PathParams(id): PathParam) -> Answer {
    app.call_void(api::DELETE_USER, &[&token, &id], r#"{"deleted":true}"#).await
}

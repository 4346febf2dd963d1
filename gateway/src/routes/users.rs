//! /users: register, view, rename, delete.

use crate::app::AppState;
use crate::db;
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParam, PathParams, Token};
use axum::extract::State;
use axum::response::Response;
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

pub async fn register(
    State(app): State<AppState>,
    JsonBody(user): JsonBody<NewUser>,
) -> Result<Response, ApiError> {
    let sql = "SELECT hatchat.register_user($1::text::uuid, $2, $3)::text";
    Ok(db::json(db::call_json(&app.pool, sql, &[&user.id, &user.public_key, &user.username]).await?))
}

pub async fn get(State(app): State<AppState>, PathParams(id): PathParam) -> Result<Response, ApiError> {
    let sql = "SELECT hatchat.get_user($1::text::uuid)::text";
    Ok(db::json(db::call_json(&app.pool, sql, &[&id]).await?))
}

pub async fn update(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
    JsonBody(rename): JsonBody<Rename>,
) -> Result<Response, ApiError> {
    let sql = "SELECT hatchat.update_user($1, $2::text::uuid, $3)::text";
    Ok(db::json(db::call_json(&app.pool, sql, &[&token, &id, &rename.username]).await?))
}

pub async fn delete(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams(id): PathParam,
) -> Result<Response, ApiError> {
    db::call(&app.pool, "SELECT hatchat.delete_user($1, $2::text::uuid)", &[&token, &id]).await?;
    Ok(db::json(r#"{"deleted":true}"#.into()))
}

//! GET /notifications?after=&limit=&wait=: the caller's notification stream, long-polled like
//! messages (woken by the NOTIFY naming the user, counted against the user's long-polls).

use super::messages::admit;
use crate::app::AppState;
use crate::db;
use crate::error::ApiError;
use crate::extract::{wait_param, QueryParams, Token};
use crate::listen::{Topic, Wake};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use tokio::time::Instant;

#[derive(Deserialize)]
pub struct Page {
    after: Option<i64>,
    limit: Option<i32>,
    wait: Option<f64>,
}

pub async fn poll(
    State(app): State<AppState>,
    Token(token): Token,
    QueryParams(page): QueryParams<Page>,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + wait_param(page.wait, app.max_wait)?;
    // Whose stream: the subscription needs the user before the first query.
    let user = db::call_json(&app.pool, "SELECT hatchat.authenticate($1)::text", &[&token]).await?;
    let mut subscription = app.hub.subscribe(Topic::User(user.clone()));
    let sql = "SELECT hatchat.get_notifications($1, $2, $3)::text";
    let mut permit = None;
    loop {
        let notes = db::call_json(&app.pool, sql, &[&token, &page.after, &page.limit]).await?;
        if notes != "[]" || Instant::now() >= deadline {
            return Ok(db::json(notes));
        }
        if permit.is_none() {
            permit = Some(admit(&app, &user)?);
        }
        match subscription.wait(deadline).await {
            Wake::Changed => continue,
            Wake::Timeout | Wake::Shutdown => return Ok(db::json(notes)),
        }
    }
}

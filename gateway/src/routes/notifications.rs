//! GET /notifications?after=&limit=&wait=: the caller's notification stream, long-polled like
//! messages (woken by announcements naming the user's key, counted against the user's long-polls).

use crate::db;
use crate::error::ApiError;
use crate::extract::{wait_param, QueryParams, Token};
use crate::long_poll::{user_of, LongPoll};
use crate::state::{Answer, AppState};
use axum::extract::State;
use serde::Deserialize;
use tokio::time::Instant;

#[derive(Deserialize)]
pub struct Page {
    after: Option<i64>,
    limit: Option<i32>,
    wait: Option<f64>,
}

impl Page {
    async fn read(&self, app: &AppState, token: &Option<String>) -> Result<String, ApiError> {
        let sql = "SELECT hatchat.get_notifications($1, $2, $3)::text";
        db::call_json(&app.pool, sql, &[token, &self.after, &self.limit]).await
    }
}

pub async fn poll(
    State(app): State<AppState>,
    Token(token): Token,
    QueryParams(page): QueryParams<Page>,
) -> Answer {
    let deadline = Instant::now() + wait_param(page.wait, app.max_wait)?;
    // Whose stream: the subscription needs the user before the first query.
    let user = user_of(&app, &token).await?;
    let poll = LongPoll { topic: app.hub.user(&user), deadline, token: &token, user: Some(user) };
    poll.run(&app, || true, || page.read(&app, &token)).await
}

//! /messages: send, and read with a long-poll that wakes on NOTIFY.

use crate::app::AppState;
use crate::db;
use crate::error::ApiError;
use crate::extract::{raw_json, wait_param, JsonBody, QueryParams, Token};
use crate::listen::{PollPermit, Topic, Wake};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewMessage {
    channel_id: Option<String>,
    /// Kept as the client's JSON text: parsed only by PostgreSQL, so nothing is rounded.
    #[serde(default, deserialize_with = "raw_json")]
    payload: Option<Box<RawValue>>,
}

pub async fn send(
    State(app): State<AppState>,
    Token(token): Token,
    JsonBody(message): JsonBody<NewMessage>,
) -> Result<Response, ApiError> {
    Ok(db::json(app.sends.send(token, message.channel_id, message.payload).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    channel_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i32>,
    after_seq: Option<i64>,
    /// Seconds to wait at most when nothing matches (capped by the gateway's longest wait).
    wait: Option<f64>,
}

impl Window {
    async fn read(&self, app: &AppState, token: &Option<String>) -> Result<String, ApiError> {
        // Absent parameters go as NULL: the extension applies its own defaults.
        let sql = "SELECT hatchat.get_messages($1, $2, $3, $4, $5, $6)::text";
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [token, &self.channel_id, &self.since, &self.until, &self.limit, &self.after_seq];
        db::call_json(&app.pool, sql, &params).await
    }

    /// Waiting only makes sense while new messages can still fall inside the window.
    fn still_open(&self) -> bool {
        match self.until.as_deref().map(str::trim) {
            None | Some("infinity") | Some("+infinity") => true,
            Some("-infinity") => false,
            // The database already accepted this bound, so it parses; if jiff disagreed, waiting
            // is the safe choice (the deadline still ends it).
            Some(until) => until.parse::<jiff::Timestamp>().map_or(true, |t| t > jiff::Timestamp::now()),
        }
    }
}

/// Queries once; while the answer is empty and the window open, waits for a notification on the
/// channel and queries again, until the deadline. Holds no database connection while waiting. A
/// request that is about to wait counts against its user's long-polls (see `admit`).
pub async fn poll(
    State(app): State<AppState>,
    Token(token): Token,
    QueryParams(window): QueryParams<Window>,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + wait_param(window.wait, app.max_wait)?;
    // Subscribe before the first query: a message committed in between is not missed.
    let mut subscription = app.hub.subscribe(Topic::Channel(window.channel_id.clone().unwrap_or_default()));
    let mut permit = None;
    loop {
        let page = window.read(&app, &token).await?;
        if page != "[]" || !window.still_open() || Instant::now() >= deadline {
            return Ok(db::json(page));
        }
        if permit.is_none() {
            let user = db::call_json(&app.pool, "SELECT hatchat.authenticate($1)::text", &[&token]).await?;
            permit = Some(admit(&app, &user)?);
        }
        match subscription.wait(deadline).await {
            Wake::Changed => continue,
            Wake::Timeout | Wake::Shutdown => return Ok(db::json(page)),
        }
    }
}

/// Counts a long-poll against `user` (an id the database verified) until the permit is dropped
/// with the request; 429 when the user already holds the most a gateway allows.
pub fn admit(app: &AppState, user: &str) -> Result<PollPermit, ApiError> {
    app.polls.acquire(user).ok_or_else(|| {
        ApiError::too_many_requests(
            format!(
                "a user may hold at most {} waiting long-polls at once on this gateway; \
                 try again when one has answered",
                app.polls.per_user()
            ),
            1,
        )
    })
}

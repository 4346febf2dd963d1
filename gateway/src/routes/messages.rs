//! /messages: send, and read with a long-poll that wakes on NOTIFY.

use crate::db::{self, JsonText};
use crate::error::ApiError;
use crate::extract::{raw_json, wait_param, JsonBody, QueryParams, Token};
use crate::listen::Topic;
use crate::long_poll::LongPoll;
use crate::state::{Answer, AppState};
use axum::extract::State;
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
    JsonBody(m): JsonBody<NewMessage>,
) -> Answer {
    app.group_commit.send(token, m.channel_id, m.payload).await.map(JsonText)
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

/// Waits for a message in the channel while the window is still open (see `LongPoll`).
pub async fn poll(
    State(app): State<AppState>,
    Token(token): Token,
    QueryParams(w): QueryParams<Window>,
) -> Answer {
    let deadline = Instant::now() + wait_param(w.wait, app.max_wait)?;
    let topic = Topic::channel(w.channel_id.as_deref().unwrap_or_default());
    let poll = LongPoll { topic, deadline, token: &token, user: None };
    poll.run(&app, || w.still_open(), || w.read(&app, &token)).await
}

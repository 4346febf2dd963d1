//! /messages: send, and read with a long-poll that wakes on NOTIFY.

use crate::db::{self, JsonText};
use crate::error::ApiError;
use crate::extract::{raw_json, wait_param, JsonBody, PathParams, QueryParams, Token};
use crate::live::LongPoll;
use crate::state::{Answer, AppState};
use axum::extract::State;
use hatchat_wire::api;
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
    /// 1..64 characters: a retry with the same id stores nothing and answers the first answer.
    client_id: Option<String>,
}

pub async fn send(
    State(app): State<AppState>,
    Token(token): Token,
    JsonBody(m): JsonBody<NewMessage>,
) -> Answer {
    app.group_commit.send(token, m.channel_id, m.payload, m.client_id).await.map(JsonText)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagesQuery {
    channel_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i32>,
    after_seq: Option<i64>,
    /// Messages in their current state, without the event rows (see docs/sql-api.md).
    fold: Option<bool>,
    /// Seconds to wait at most when nothing matches (capped by the gateway's longest wait).
    wait: Option<f64>,
}

impl MessagesQuery {
    async fn read(&self, app: &AppState, token: &Option<String>) -> Result<String, ApiError> {
        // Absent parameters go as NULL: the extension applies its own defaults.
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [token, &self.channel_id, &self.since, &self.until, &self.limit, &self.after_seq, &self.fold];
        db::call_json(&app.pool, api::GET_MESSAGES, &params).await
    }

    /// The seq this window follows, when that is all it asks (no time bounds, not folded): such a
    /// long-poll can wait through its channel's feed, which carries messages as they were appended.
    fn shared_cursor(&self) -> Option<i64> {
        let plain = self.since.is_none() && self.until.is_none() && self.fold != Some(true);
        self.after_seq.filter(|_| plain)
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
    QueryParams(w): QueryParams<MessagesQuery>,
) -> Answer {
    let deadline = Instant::now() + wait_param(w.wait, app.live.max_wait)?;
    let channel = w.channel_id.as_deref().unwrap_or_default();
    if let Some(after_seq) = w.shared_cursor() {
        let limit = usize::try_from(w.limit.unwrap_or(20)).unwrap_or(20);
        let follow = (channel, after_seq, limit);
        return app.live.long_poll_channel(&token, follow, deadline, || w.read(&app, &token)).await;
    }
    let poll = LongPoll { topic: app.live.hub.channel(channel), deadline, token: &token, user: None };
    app.live.long_poll(poll, || w.still_open(), || w.read(&app, &token)).await
}

#[derive(Deserialize)]
pub struct Edit {
    /// As a send's payload: the client's JSON text, parsed only by PostgreSQL.
    #[serde(default, deserialize_with = "raw_json")]
    payload: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
pub struct Reaction {
    reaction: Option<String>,
}

/// PATCH /channels/{id}/messages/{seq}: the author replaces the payload (an `edit` event).
pub async fn edit(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams((channel, seq)): PathParams<(String, i64)>,
    JsonBody(e): JsonBody<Edit>,
) -> Answer {
    let payload = e.payload.as_deref().map(RawValue::get);
    app.call(api::EDIT_MESSAGE, &[&token, &channel, &seq, &payload]).await
}

/// DELETE /channels/{id}/messages/{seq}: a `delete` event; the payload is erased.
pub async fn delete(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams((channel, seq)): PathParams<(String, i64)>,
) -> Answer {
    app.call(api::DELETE_MESSAGE, &[&token, &channel, &seq]).await
}

/// POST /channels/{id}/messages/{seq}/reactions `{reaction}`.
pub async fn react(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams((channel, seq)): PathParams<(String, i64)>,
    JsonBody(r): JsonBody<Reaction>,
) -> Answer {
    app.call(api::REACT, &[&token, &channel, &seq, &r.reaction]).await
}

/// DELETE /channels/{id}/messages/{seq}/reactions/{reaction} (the reaction percent-encoded).
pub async fn unreact(
    State(app): State<AppState>,
    Token(token): Token,
    PathParams((channel, seq, reaction)): PathParams<(String, i64, String)>,
) -> Answer {
    app.call(api::UNREACT, &[&token, &channel, &seq, &reaction]).await
}

//! Server-sent events: GET /channels/{id}/events (a channel's messages, from a position, exactly
//! once and in order, then live) and GET /notifications/events (the caller's notifications).
//!
//! The token comes in `Authorization` or, for `EventSource` (which cannot set headers), in
//! `?token=`. The position comes in `Last-Event-ID` (what `EventSource` sends when it reconnects)
//! or `?afterSeq=` / `?after=`. Each event's `id` is the position to resume after.

use crate::error::ApiError;
use crate::extract::{PathParam, PathParams, QueryParams, Token};
use crate::live::{Delivery, Notice};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;

/// How long `EventSource` waits before reconnecting after the stream ends.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    token: Option<String>,
    after_seq: Option<i64>,
    after: Option<i64>,
}

impl Position {
    /// The header's token, else the query's; the header's position, else the query's.
    fn resolve(
        self,
        header_token: Option<String>,
        headers: &HeaderMap,
        query_after: Option<i64>,
    ) -> Result<(Option<String>, i64), ApiError> {
        let token = header_token.or(self.token);
        Ok((token, last_event_id(headers)?.or(query_after).unwrap_or(0)))
    }
}

/// `Last-Event-ID`: a seq (or notification id), 0 or more.
fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    match text.parse::<i64>() {
        Ok(position) if position >= 0 => Ok(Some(position)),
        _ => Err(ApiError::bad_request(format!("Last-Event-ID must be a seq (0 or more), got {text:?}"))),
    }
}

pub async fn channel_events(
    State(app): State<AppState>,
    PathParams(channel): PathParam,
    Token(header_token): Token,
    headers: HeaderMap,
    QueryParams(position): QueryParams<Position>,
) -> Result<Response, ApiError> {
    let query_after = position.after_seq;
    let (token, after_seq) = position.resolve(header_token, &headers, query_after)?;
    let opened = (app.live.open_channel(&token, &channel, after_seq).await?, app.live.stream_opened());
    let events = stream::unfold(opened, |(mut stream, opened)| async move {
        let delivery = stream.reader.next().await?;
        let event = message_event(&delivery, stream.reader.cursor());
        Some((event, (stream, opened)))
    });
    Ok(sse(events, &app))
}

/// The SSE form of one delivery.
fn message_event(delivery: &Delivery, cursor: i64) -> Event {
    match delivery {
        Delivery::Message { seq, json } => {
            Event::default().id(seq.to_string()).event("message").data(&**json)
        }
        // Resuming after the reset's id continues from the oldest message held.
        Delivery::Reset { oldest_seq } => Event::default()
            .id((oldest_seq - 1).to_string())
            .event("reset")
            .data(json!({"oldestSeq": oldest_seq}).to_string()),
        Delivery::Closed { reason } => closed_event(reason, cursor),
    }
}

fn closed_event(reason: &str, last: i64) -> Event {
    Event::default().event("closed").data(json!({"reason": reason, "lastSeq": last}).to_string())
}

/// The response: `retry:` first, then the events, a heartbeat comment when idle.
fn sse(events: impl Stream<Item = Event> + Send + 'static, app: &AppState) -> Response {
    let retry = stream::once(async { Event::default().retry(RETRY) });
    let events = retry.chain(events).map(Ok::<_, Infallible>);
    let heartbeat = KeepAlive::new().interval(app.live.streams.heartbeat).text("heartbeat");
    let mut response = Sse::new(events).keep_alive(heartbeat).into_response();
    // Proxies (nginx) must pass events on as they come rather than buffer them.
    response.headers_mut().insert("x-accel-buffering", "no".parse().expect("a valid header value"));
    *response.status_mut() = StatusCode::OK;
    response
}

/// The caller's notifications, as `event: notification` with the notification's id.
pub async fn notification_events(
    State(app): State<AppState>,
    Token(header_token): Token,
    headers: HeaderMap,
    QueryParams(position): QueryParams<Position>,
) -> Result<Response, ApiError> {
    let query_after = position.after;
    let (token, after) = position.resolve(header_token, &headers, query_after)?;
    let notices = app.live.notifications(token, after).await?;
    let events = stream::unfold(notices, |mut notices| async move {
        let event = match notices.next().await? {
            Notice::Notification { id, json } => {
                Event::default().id(id.to_string()).event("notification").data(json.get())
            }
            Notice::Closed { reason, last } => closed_event(reason, last),
        };
        Some((event, notices))
    });
    Ok(sse(events, &app))
}

//! Server-sent events: GET /channels/{id}/events (a channel's messages, from a position, exactly
//! once and in order, then live) and GET /notifications/events (the caller's notifications).
//!
//! The token comes in `Authorization` or, for `EventSource` (which cannot set headers), in
//! `?token=`. The position comes in `Last-Event-ID` (what `EventSource` sends when it reconnects)
//! or `?afterSeq=` / `?after=`. Each event's `id` is the position to resume after.

use crate::error::ApiError;
use crate::extract::{AppState, Call, PathParam, PathParams, QueryParams};
use crate::live::{Delivery, Notice};
use crate::openapi::{
    After, AfterSeq, ChannelId, ChannelStream, Db, NotFound, NotificationStream, TooManyRequests,
    Unauthorized,
};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use hatchat_wire::shapes::ErrorBody;
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
    /// Also send presence and typing events.
    #[serde(default)]
    presence: bool,
}

/// The position to resume after: `Last-Event-ID` (a seq, or notification id, 0 or more), else the
/// query's, else 0.
fn resume_after(headers: &HeaderMap, query_after: Option<i64>) -> Result<i64, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(query_after.unwrap_or(0)) };
    let text = value.to_str().unwrap_or_default().trim();
    match text.parse::<i64>() {
        Ok(position) if position >= 0 => Ok(position),
        _ => Err(ApiError::bad_request(format!("Last-Event-ID must be a seq (0 or more), got {text:?}"))),
    }
}

/// A channel's messages as server-sent events (backlog, then live)
///
/// `text/event-stream` of the channel's rows after a position, each exactly once and in order: the
/// backlog first, then live as they commit, events (edits, deletes, reactions) included as in `GET
/// /messages`. The position is `Last-Event-ID`, else `afterSeq`, else 0. The token and the channel
/// are checked as `hatchat.get_messages` checks them (so this refuses exactly what a read refuses,
/// with the same error); then the gateway's feed of the channel reads `hatchat.channel_window` once
/// per wake-up for all its readers, and checks membership in the same snapshot. Before the stream
/// starts, refusals are JSON errors with their usual statuses; once it has started, the status is
/// 200 and the end is a `closed` event. A stream costs what a waiting long-poll costs and counts
/// against the same per-user bound (`--max-polls-per-user`, 429 beyond). The stream (README,
/// "Streams"):
///
/// - `retry: 2000` first: how long `EventSource` waits before reconnecting.
/// - `event: message`, `id: <seq>`, `data:` the row as `GET /messages` answers it (`Message`).
/// - `event: reset`, `id: <oldestSeq - 1>`, `data: {"oldestSeq"}` (`StreamReset`): the position is
///   older than what the channel still holds (`maxMessages`); resuming after its id continues from
///   the oldest message held.
/// - `event: closed`, `data: {"reason", "lastSeq"}` (`StreamClosed`), the last event: `not a member`
///   (left or removed; nothing committed after that is sent), `channel deleted`, `token expired`,
///   `slow consumer` (the client read too slowly), `gateway shutting down`, `database unavailable`.
///   Resume after `lastSeq`.
/// - `: heartbeat`, a comment every `--stream-heartbeat-secs` while idle, so proxies keep a quiet
///   stream open.
/// - With `presence=true`: `event: presence` (`{kind: join|leave|resync, userId, username, at}`) and
///   `event: typing` (`{kind: typing, userId, username, at, until}`), without an `id`, best effort
///   (docs/presence.md). Every stream makes its user present on the channel.
#[utoipa::path(get, path = "/channels/{id}/events", tag = "streams", security(("token" = []), ("queryToken" = [])),
    params(ChannelId,
        AfterSeq,
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, nullable = false, description = "The position to resume after, as \
            `EventSource` sends it when it reconnects (the `id` of the last event it got). Wins over the query. Not an \
            integer of 0 or more: 400."),
        ("token" = Option<String>, Query, description = "The token, for `EventSource` (which cannot set headers); \
            `Authorization` wins. The stream ends (`closed`, `token expired`) when the token expires."),
        ("presence" = Option<bool>, Query, description = "Also send `presence` and `typing` events (false by default).")),
    responses(ChannelStream,
        (status = 400, description = "A bad `afterSeq` (not an integer, or negative) or `Last-Event-ID`, or a bad \
            channel id", body = ErrorBody),
        (status = 403, description = "Not a member of the channel (42501)", body = ErrorBody),
        Unauthorized, NotFound, TooManyRequests, Db))]
pub async fn channel_events(
    Call(app, header_token): Call,
    PathParams(channel): PathParam,
    headers: HeaderMap,
    QueryParams(position): QueryParams<Position>,
) -> Result<Response, ApiError> {
    // The header's token, else the query's.
    let token = header_token.or(position.token);
    let after_seq = resume_after(&headers, position.after_seq)?;
    let subscribed = app.live.open_channel(&token, &channel, after_seq, position.presence).await?;
    let opened = app.live.feeds.stream_opened();
    let events = stream::unfold((subscribed, opened), |(mut stream, opened)| async move {
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
        // No id: resuming goes by messages alone.
        Delivery::Presence { json } => Event::default().event("presence").data(&**json),
        Delivery::Typing { json } => Event::default().event("typing").data(&**json),
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
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The caller's notifications as server-sent events
///
/// `text/event-stream` of the caller's notifications after a position (`Last-Event-ID`, else
/// `after`, else 0), oldest first, then live: `hatchat.get_notifications` in pages of 100, once and
/// on every wake-up of the user (notifications are per user: there is no read to share). Before
/// the stream starts, refusals are JSON errors with their usual statuses; once it has started, the
/// status is 200 and the end is a `closed` event. A stream costs what a waiting long-poll costs and
/// counts against the same per-user bound (`--max-polls-per-user`, 429 beyond). The stream:
///
/// - `retry: 2000` first.
/// - `event: notification`, `id: <notification id>`, `data:` the notification as `GET
///   /notifications` answers it (`Notification`).
/// - `event: closed`, `data: {"reason", "lastSeq"}` (`StreamClosed`), the last event: `token
///   expired`, `gateway shutting down` or `database unavailable`; `lastSeq` is the last
///   notification id sent (resume with it as `after` or `Last-Event-ID`).
/// - `: heartbeat` comments every `--stream-heartbeat-secs` while idle.
#[utoipa::path(get, path = "/notifications/events", tag = "streams", tags = ["notifications"],
    security(("token" = []), ("queryToken" = [])),
    params(
        After,
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, nullable = false, description = "The position to resume after, as \
            `EventSource` sends it when it reconnects (the `id` of the last event it got). Wins over the query. Not an \
            integer of 0 or more: 400."),
        ("token" = Option<String>, Query, description = "The token, for `EventSource` (which cannot set headers); \
            `Authorization` wins. The stream ends (`closed`, `token expired`) when the token expires.")),
    responses(NotificationStream,
        (status = 400, description = "A bad `after` (not an integer, or negative) or `Last-Event-ID`", body = ErrorBody),
        (status = 403, description = "The server secret, which has no notifications (42501)", body = ErrorBody),
        Unauthorized, TooManyRequests, Db))]
// Each notification is an `event: notification` with the notification's id.
pub async fn notification_events(
    Call(app, header_token): Call,
    headers: HeaderMap,
    QueryParams(position): QueryParams<Position>,
) -> Result<Response, ApiError> {
    let token = header_token.or(position.token);
    let after = resume_after(&headers, position.after)?;
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

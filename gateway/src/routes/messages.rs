//! /messages: send, and read with a long-poll that wakes on NOTIFY.

use crate::db::{self, JsonText};
use crate::error::ApiError;
use crate::extract::{raw_json, wait_param, Answer, AppState, Call, JsonBody, PathParams, QueryParams};
use crate::live::{still_open, Follow, LongPoll};
use crate::openapi::{BadRequest, Body, Db, Forbidden, MessageSeq, NotFound, TooManyRequests, Unauthorized};
use hatchat_wire::api;
use hatchat_wire::shapes::{ErrorBody, Message, Sent};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

// Fields are optional so that the extension names a missing one; the document says which it needs.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewMessage {
    #[schema(required, nullable = false)]
    channel_id: Option<String>,
    /// any JSON value, up to hatchat.max_payload_bytes; its text reaches PostgreSQL unparsed
    /// (nothing is rounded)
    #[serde(default, deserialize_with = "raw_json")]
    #[schema(required, value_type = serde_json::Value)]
    payload: Option<Box<RawValue>>,
    /// The client's id for this send (1..64 characters, no control characters): makes retries safe.
    #[schema(nullable = false, min_length = 1, max_length = 64)]
    client_id: Option<String>,
}

/// Send a message (group commit: concurrent sends share a transaction)
///
/// Calls `hatchat.send_message_text / hatchat.send_messages`. With a `clientId`, a retry (same
/// channel, sender and client id, for as long as the message is kept) stores nothing and answers
/// the first send's answer; its payload is not compared. A muted sender is answered with `seq:
/// null`, nothing stored.
#[utoipa::path(post, path = "/messages", tag = "messages", request_body = inline(NewMessage),
    responses((status = 200, description = "OK", body = Sent), BadRequest, Body, Unauthorized, Forbidden, NotFound, Db))]
pub async fn send(Call(app, token): Call, JsonBody(m): JsonBody<NewMessage>) -> Answer {
    app.group_commit.send(token, m.channel_id, m.payload, m.client_id).await.map(JsonText)
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    #[param(required)]
    channel_id: Option<String>,
    /// timestamptz (ISO-8601 with a time zone, or -infinity/infinity): messages created after
    /// (exclusive)
    since: Option<String>,
    /// timestamptz: messages created before (exclusive)
    until: Option<String>,
    /// most messages to answer: 1..1000, default 20
    #[param(minimum = 1, maximum = 1000, default = 20)]
    limit: Option<i32>,
    /// messages after this seq (an exact cursor, 0 or more)
    #[param(minimum = 0)]
    after_seq: Option<i64>,
    /// Messages only (no event rows), each in its current state: the latest edit's payload,
    /// `edited`, `deleted` (payload null) and `reactions` counted per reaction. A client that opens
    /// a channel folded follows on from the channel's `lastSeq`.
    #[param(default = false)]
    fold: Option<bool>,
    /// seconds to wait at most when nothing matches (capped by --max-wait-secs)
    wait: Option<f64>,
}

impl MessagesQuery {
    async fn read(&self, app: &AppState, token: &Option<String>) -> Result<String, ApiError> {
        // Absent parameters go as NULL: the extension applies its own defaults.
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [token, &self.channel_id, &self.since, &self.until, &self.limit, &self.after_seq, &self.fold];
        db::call_json(&app.pool, api::GET_MESSAGES, &params).await
    }
}

/// Read a channel's messages; long-polls (`wait`) while nothing matches
///
/// Calls `hatchat.get_messages`: oldest first, events included (unless `fold`). A long-poll that
/// only follows a position, `afterSeq` or `since` (not both; no `until`, not folded), waits through
/// the channel's shared feed.
#[utoipa::path(get, path = "/messages", tag = "messages", params(MessagesQuery),
    responses((status = 200, description = "OK", body = Vec<Message>), BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Db))]
// It waits for a message in the channel while the window is still open (see `LongPoll`).
pub async fn poll(Call(app, token): Call, QueryParams(w): QueryParams<MessagesQuery>) -> Answer {
    let deadline = Instant::now() + wait_param(w.wait, app.live.max_wait)?;
    let channel = w.channel_id.as_deref().unwrap_or_default();
    if let Some(follow) = Follow::of(w.after_seq, w.since.as_deref(), w.until.as_deref(), w.fold) {
        let follow = (channel, follow, w.limit);
        return app.live.long_poll_channel(&token, follow, deadline, || w.read(&app, &token)).await;
    }
    let poll = LongPoll { topic: app.live.hub.channel(channel), deadline, token: &token, user: None };
    app.live.long_poll(poll, || still_open(w.until.as_deref()), || w.read(&app, &token)).await
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Edit {
    /// the new payload: any JSON value, up to hatchat.max_payload_bytes, kept exactly as POST
    /// /messages keeps it
    #[serde(default, deserialize_with = "raw_json")]
    #[schema(required, value_type = serde_json::Value)]
    payload: Option<Box<RawValue>>,
    /// The client's id for this edit (1..64 characters, no control characters): makes retries safe.
    #[schema(nullable = false, min_length = 1, max_length = 64)]
    client_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    /// 1..64 characters, no control characters (an emoji, a word)
    #[schema(required, nullable = false, min_length = 1, max_length = 64)]
    reaction: Option<String>,
    /// The client's id for this reaction (1..64 characters, no control characters): makes retries
    /// safe.
    #[schema(nullable = false, min_length = 1, max_length = 64)]
    client_id: Option<String>,
}

/// A DELETE's client id, in its query string (a DELETE has no body).
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct Retry {
    /// The client's id for this request (1..64 characters, no control characters): a retry with the
    /// same id answers the first answer and changes nothing.
    #[param(nullable = false, min_length = 1, max_length = 64)]
    client_id: Option<String>,
}

/// Edit a message (its author)
///
/// Calls `hatchat.edit_message`: appends an `edit` event about message `seq` (its own seq, `event:
/// "edit"`, `target: seq`, the new payload as its payload), which every follower receives in order
/// like any message; folded windows show the new payload with `edited: true`. The answer is the
/// event's, as a send's (`seq: null` for a muted author: nothing stored). Only the author may edit
/// (403). Message `seq` must be a user's message the channel still holds and that is not deleted: an event
/// or a system message is 400, a missing, retention-removed or deleted one 404.
/// With a `clientId`, a retry answers the first answer and changes nothing; an id the caller used for
/// another message or event in the channel is 409.
#[utoipa::path(patch, path = "/channels/{id}/messages/{seq}", tag = "messages", params(MessageSeq),
    request_body = inline(Edit),
    responses((status = 200, description = "OK", body = Sent), BadRequest, Body, Unauthorized, Forbidden, NotFound,
        (status = 409, description = "The clientId names another message or event of the caller's (23505)", body = ErrorBody), Db))]
pub async fn edit(
    Call(app, token): Call,
    PathParams((channel, seq)): PathParams<(String, i64)>,
    JsonBody(e): JsonBody<Edit>,
) -> Answer {
    let payload = e.payload.as_deref().map(RawValue::get);
    app.call(api::EDIT_MESSAGE, &[&token, &channel, &seq, &payload, &e.client_id]).await
}

/// Delete a message (its author, the channel's owner, or the server secret)
///
/// Calls `hatchat.delete_message`: appends a `delete` event about message `seq` (payload null) and
/// erases the message: its payload and its edit events' payloads are overwritten with JSON null in
/// the table (gone, not hidden), and its reactions are dropped. Folded windows show it `deleted:
/// true`; it no longer counts as unread. The answer is the event's, as a send's. Anyone else gets
/// 403. Message `seq` must be a user's message the channel still holds and that is not deleted: an event
/// or a system message is 400, a missing, retention-removed or deleted one 404.
/// With a `clientId`, a retry answers the first answer and changes nothing; an id the caller used for
/// another message or event in the channel is 409.
#[utoipa::path(delete, path = "/channels/{id}/messages/{seq}", tag = "messages", params(MessageSeq, Retry),
    responses((status = 200, description = "OK", body = Sent), BadRequest, Unauthorized, Forbidden, NotFound,
        (status = 409, description = "The clientId names another message or event of the caller's (23505)", body = ErrorBody), Db))]
pub async fn delete(
    Call(app, token): Call,
    PathParams((channel, seq)): PathParams<(String, i64)>,
    QueryParams(retry): QueryParams<Retry>,
) -> Answer {
    app.call(api::DELETE_MESSAGE, &[&token, &channel, &seq, &retry.client_id]).await
}

/// React to a message (members)
///
/// Calls `hatchat.react`: records the caller's reaction and appends a `reaction` event about message
/// `seq` with payload `{reaction, action: "add"}`. One of each reaction per user: giving it again is
/// 409. Folded windows count reactions per reaction. The answer is the event's, as a send's (`seq:
/// null` for a muted user: nothing stored). The server secret gets 403 (a reaction is a user's).
/// Message `seq` must be a user's message the channel still holds and that is not deleted: an event
/// or a system message is 400, a missing, retention-removed or deleted one 404.
/// With a `clientId`, a retry answers the first answer and changes nothing; an id the caller used for
/// another message or event in the channel is 409.
#[utoipa::path(post, path = "/channels/{id}/messages/{seq}/reactions", tag = "messages", params(MessageSeq),
    request_body = inline(Reaction),
    responses((status = 200, description = "OK", body = Sent), BadRequest, Body, Unauthorized, Forbidden, NotFound,
        (status = 409, description = "The caller already gave this reaction to this message, or the clientId names \
            another message or event of the caller's (23505)", body = ErrorBody), Db))]
pub async fn react(
    Call(app, token): Call,
    PathParams((channel, seq)): PathParams<(String, i64)>,
    JsonBody(r): JsonBody<Reaction>,
) -> Answer {
    app.call(api::REACT, &[&token, &channel, &seq, &r.reaction, &r.client_id]).await
}

/// Take back a reaction (members)
///
/// Calls `hatchat.unreact`: removes the caller's reaction and appends a `reaction` event about
/// message `seq` with payload `{reaction, action: "remove"}`; 404 when the caller had not given it.
/// The answer is the event's, as a send's (`seq: null` for a muted user). Message `seq` must be a
/// user's message the channel still holds and that is not deleted: an event or a system message is
/// 400, a missing, retention-removed or deleted one 404. With a `clientId`, a retry answers the
/// first answer and changes nothing; an id the caller used for another message or event in the
/// channel is 409.
#[utoipa::path(delete, path = "/channels/{id}/messages/{seq}/reactions/{reaction}", tag = "messages",
    params(MessageSeq, ("reaction" = String, Path, description = "The reaction, percent-encoded (`%F0%9F%91%8D` for 👍).",
        min_length = 1, max_length = 64), Retry),
    responses((status = 200, description = "OK", body = Sent), BadRequest, Unauthorized, Forbidden,
        (status = 409, description = "The clientId names another message or event of the caller's (23505)", body = ErrorBody),
        (status = 404, description = "No such channel or message, or the caller has not given this reaction (P0002)", body = ErrorBody), Db))]
pub async fn unreact(
    Call(app, token): Call,
    PathParams((channel, seq, reaction)): PathParams<(String, i64, String)>,
    QueryParams(retry): QueryParams<Retry>,
) -> Answer {
    app.call(api::UNREACT, &[&token, &channel, &seq, &reaction, &retry.client_id]).await
}

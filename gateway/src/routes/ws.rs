//! GET /ws: one WebSocket for many channels, each subscribed from its own `afterSeq`, and for
//! sends (answered with their seq, through the same group commit as POST /messages). Frames are
//! JSON; the protocol is in docs/streams.md.
//!
//! The token travels in `Authorization`, or (browsers cannot set that on an upgrade) in
//! `Sec-WebSocket-Protocol` as `hatchat.token.<base64url of the token>` next to `hatchat.v1` (the
//! server echoes only `hatchat.v1`), or in a first frame `{"type": "auth", "token": "..."}`.

use crate::db;
use crate::error::ApiError;
use crate::extract::{raw_json, AppState, Call};
use crate::live::bounds::Purse;
use crate::live::feeds::SLOW_CONSUMER;
use crate::live::{ChannelStream, Delivery};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hatchat_wire::api;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

pub const PROTOCOL: &str = "hatchat.v1";
const TOKEN_PROTOCOL_PREFIX: &str = "hatchat.token.";
/// Largest frame a client may send (as the default request body limit).
const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// How long a client has to send its auth frame.
const AUTH_WITHIN: Duration = Duration::from_secs(10);
/// What a socket reads at a time.
const READ_BUFFER_BYTES: usize = 2 * 1024;
/// Close code for a policy violation (RFC 6455): a slow consumer, a failed authentication.
const POLICY: u16 = 1008;

/// A client frame's kind; each kind's fields are read next (an internally tagged enum would
/// buffer the payload and lose its exact text).
#[derive(Deserialize)]
struct Kind {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct AuthFrame {
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribeFrame {
    channel_id: String,
    after_seq: Option<i64>,
    /// Also tell this subscription of presence and typing.
    #[serde(default)]
    presence: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendFrame {
    #[serde(rename = "ref")]
    reference: Option<Value>,
    channel_id: Option<String>,
    /// Kept as the client's JSON text: parsed only by PostgreSQL, so nothing is rounded.
    #[serde(default, deserialize_with = "raw_json")]
    payload: Option<Box<RawValue>>,
    /// As on POST /messages: a retry with the same id answers the first send's answer.
    client_id: Option<String>,
}

/// A client frame.
enum ClientFrame {
    Auth(AuthFrame),
    Subscribe(SubscribeFrame),
    Unsubscribe(SubscribeFrame),
    Send(SendFrame),
    Typing(TypingFrame),
}

/// `{"type": "typing", "channelId"}`: as POST /channels/{id}/typing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypingFrame {
    channel_id: Option<String>,
}

impl ClientFrame {
    fn parse(frame: &str) -> Result<Self, ApiError> {
        let bad =
            |e: serde_json::Error| ApiError::bad_request(format!("not a frame this protocol knows: {e}"));
        let Kind { kind } = serde_json::from_str(frame).map_err(bad)?;
        match kind.as_str() {
            "auth" => serde_json::from_str(frame).map(ClientFrame::Auth).map_err(bad),
            "subscribe" => serde_json::from_str(frame).map(ClientFrame::Subscribe).map_err(bad),
            "unsubscribe" => serde_json::from_str(frame).map(ClientFrame::Unsubscribe).map_err(bad),
            "send" => serde_json::from_str(frame).map(ClientFrame::Send).map_err(bad),
            "typing" => serde_json::from_str(frame).map(ClientFrame::Typing).map_err(bad),
            other => Err(ApiError::bad_request(format!(
                "frame type must be auth, subscribe, unsubscribe, send or typing, got {other:?}"
            ))),
        }
    }
}

/// One WebSocket for many channels' messages and for sends
///
/// Upgrades to a WebSocket (RFC 6455: `Connection: Upgrade`, `Upgrade: websocket`,
/// `Sec-WebSocket-Version: 13`, `Sec-WebSocket-Key`) whose frames are JSON text: subscribe to
/// channels, each from its own `afterSeq` (delivered exactly once and in order through the same
/// feed as the SSE stream, with `reset` and `closed` as there), unsubscribe, and send (through the
/// same group commit as `POST /messages`, answered with the seq; `ref` and `clientId` as there).
/// OpenAPI cannot describe frames: **the frame table in the README's section "Streams"
/// (WebSocket) is their specification.**
///
/// The token: in `Authorization` as on every route, or (browsers cannot set `Authorization` on an
/// upgrade) offer `Sec-WebSocket-Protocol: hatchat.v1, hatchat.token.<base64url of the token,
/// unpadded>`; the server echoes only `hatchat.v1`. Or offer `hatchat.v1` alone and send `{"type":
/// "auth", "token": "Bearer ..."}` as the first frame within 10 s. The upgrade itself checks no
/// token: the first server frame is `{"type": "ready", "userId"}`, or `{"type": "error", "status":
/// 401, ...}` followed by a close (1008, `unauthenticated`). A refused frame is answered with
/// `{"type": "error", "status", "error", "message", "ref"?, "channelId"?}`: the status and body a
/// request would get (429 for a subscription beyond `--max-polls-per-user`). The server pings every
/// `--stream-heartbeat-secs`; a client that does not read is closed with 1008 `slow consumer` and
/// resumes from the last seq it saw on each channel. Client frames are at most 1 MiB.
#[utoipa::path(get, path = "/ws", tag = "streams", security(),
    params(("Sec-WebSocket-Protocol" = Option<String>, Header, nullable = false, example = "hatchat.v1, hatchat.token.QmVhcmVyIGV5Si4uLg",
        description = "`hatchat.v1`, and `hatchat.token.<base64url (unpadded) of the token>` unless the token comes in \
            a first `auth` frame.")),
    responses(crate::openapi::Upgraded,
        (status = 400, description = "Not a WebSocket upgrade request (missing or wrong `Connection`, `Upgrade`, \
            `Sec-WebSocket-Version` or `Sec-WebSocket-Key`)", body = hatchat_wire::shapes::ErrorBody),
        crate::openapi::Internal))]
pub async fn upgrade(
    Call(app, authorization): Call,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    // A client that can set headers sends Authorization, as on every route; a browser cannot on
    // an upgrade, and offers the token as a subprotocol (or in its first frame).
    let token = authorization.or_else(|| protocol_token(&headers));
    Ok(upgrade
        .protocols([PROTOCOL])
        .max_message_size(MAX_FRAME_BYTES)
        // tungstenite reserves its whole read buffer up front (128 kB by default): an idle socket
        // holds what one read takes. Larger frames are read in more reads.
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| session(app, socket, token)))
}

/// The token a browser offered as a subprotocol (base64url of the token text), if any.
fn protocol_token(headers: &HeaderMap) -> Option<String> {
    let offered = headers.get_all("sec-websocket-protocol");
    offered
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|protocol| protocol.trim().strip_prefix(TOKEN_PROTOCOL_PREFIX))
        .find_map(|encoded| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// What a session's tasks tell it.
enum Signal {
    /// A subscription's reader could not keep up: the socket closes.
    SlowConsumer,
}

async fn session(app: AppState, socket: WebSocket, token: Option<String>) {
    let _opened = app.live.feeds.stream_opened();
    let (mut sink, mut incoming) = socket.split();
    let token = if token.is_some() { token } else { auth_frame(&mut incoming).await };
    // The database calls are boxed (here, and for each frame below): a session lives as long as
    // its socket, and their futures held inline would make every idle session as large as them.
    let caller = match Box::pin(app.live.caller(&token)).await {
        Ok(caller) => caller,
        Err(error) => return refuse(&mut sink, &error, "unauthenticated").await,
    };
    // The socket counts against its user's streams, as each of its subscriptions does.
    let _socket = match app.live.take_place(&caller.user) {
        Ok(place) => place,
        Err(error) => return refuse(&mut sink, &error, "too many streams").await,
    };
    let (frames, mut outgoing) = mpsc::channel::<Queued>(app.live.streams.buffer);
    let out = Outbox { frames, purse: app.live.budget.purse(), taken: Arc::new(Notify::new()) };
    let written = out.clone();
    let mut writer = tokio::spawn(async move {
        while let Some(queued) = outgoing.recv().await {
            let (message, bytes) = *queued;
            let sent = sink.send(message).await;
            written.purse.give_back(bytes);
            written.taken.notify_waiters();
            if sent.is_err() {
                return;
            }
        }
    });
    let (signals, mut signalled) = mpsc::channel::<Signal>(1);
    let mut session = Session { app: app.clone(), token, out, signals, subscriptions: HashMap::new() };
    session.out.try_queue(text(json!({"type": "ready", "userId": caller.user}).to_string()));
    let mut heartbeat = tokio::time::interval(app.live.streams.heartbeat);
    heartbeat.reset();
    loop {
        tokio::select! {
            frame = incoming.next() => match frame {
                Some(Ok(Message::Text(frame))) => {
                    if !Box::pin(session.handle(frame.as_str())).await {
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let error = ApiError::bad_request("frames are JSON text");
                    if !session.out.try_queue(text(error_frame(None, None, &error))) {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => break,
            },
            Some(Signal::SlowConsumer) = signalled.recv() => {
                // Best effort: a client that does not read will not see it; it resumes from the
                // last seq it saw on each channel.
                let _ = session.out.try_queue(close(SLOW_CONSUMER));
                break;
            }
            _ = heartbeat.tick() => {
                if !session.out.try_queue(Message::Ping(Default::default())) {
                    break;
                }
            }
            _ = app.live.hub.until_shutdown() => {
                let _ = session.out.try_queue(close("gateway shutting down"));
                break;
            }
        }
    }
    session.subscriptions.values().for_each(JoinHandle::abort);
    drop(session);
    // The writer ends once it wrote what is queued (the close frame last), unless the client does
    // not read: then it is cut off after a moment.
    if tokio::time::timeout(Duration::from_secs(1), &mut writer).await.is_err() {
        writer.abort();
    }
}

/// Answers a socket that may not open with `error`, and closes it with `reason`.
async fn refuse(sink: &mut SplitSink<WebSocket, Message>, error: &ApiError, reason: &'static str) {
    let _ = sink.send(text(error_frame(None, None, error))).await;
    let _ = sink.send(close(reason)).await;
}

/// The token of a first frame `{"type": "auth", "token": "..."}`.
async fn auth_frame(incoming: &mut SplitStream<WebSocket>) -> Option<String> {
    let frame = tokio::time::timeout(AUTH_WITHIN, incoming.next()).await.ok()??.ok()?;
    let Message::Text(frame) = frame else { return None };
    match ClientFrame::parse(frame.as_str()) {
        Ok(ClientFrame::Auth(AuthFrame { token })) => token,
        _ => None,
    }
}

/// A frame on its way to the writer, and the bytes it holds of the socket's purse. Boxed: a queue
/// reserves room for 32 of what it carries as it is made, so an idle socket holds 32 pointers
/// rather than 32 frames.
type Queued = Box<(Message, usize)>;

/// The socket's frames on their way to its writer, each with the bytes it holds of the socket's
/// purse. Forwarded messages are bounded in bytes (a client that does not read holds its socket's
/// bound at most); the session's own frames (answers, errors, pings) are small and bounded in
/// number, and never wait behind a full purse: a busy subscription does not cost a client its
/// answers.
#[derive(Clone)]
struct Outbox {
    frames: mpsc::Sender<Queued>,
    purse: Arc<Purse>,
    /// Told each time the writer wrote a frame (and gave its bytes back).
    taken: Arc<Notify>,
}

impl Outbox {
    /// Queues one of the session's own frames without waiting; false when the client reads too
    /// slowly to take it.
    fn try_queue(&self, message: Message) -> bool {
        self.frames.try_send(Box::new((message, 0))).is_ok()
    }

    /// Queues a forwarded message, waiting while the queue is full; false once the writer is gone.
    async fn queue(&self, message: Message) -> bool {
        let bytes = frame_bytes(&message);
        loop {
            let taken = self.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            if self.purse.take(bytes) {
                break;
            }
            if self.frames.is_closed() {
                return false;
            }
            taken.await;
        }
        if self.frames.send(Box::new((message, bytes))).await.is_err() {
            self.purse.give_back(bytes);
            return false;
        }
        true
    }
}

/// What a frame costs while it waits: its text (control frames cost nothing to speak of).
fn frame_bytes(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) => bytes.len(),
        _ => 0,
    }
}

struct Session {
    app: AppState,
    token: Option<String>,
    out: Outbox,
    signals: mpsc::Sender<Signal>,
    subscriptions: HashMap<String, JoinHandle<()>>,
}

impl Session {
    /// Handles one client frame; false when the session must end.
    async fn handle(&mut self, frame: &str) -> bool {
        let parsed = hatchat_wire::json::check_depth(frame.as_bytes(), self.app.max_json_depth)
            .map_err(ApiError::bad_request)
            .and_then(|()| ClientFrame::parse(frame));
        let answer = match parsed {
            Err(error) => error_frame(None, None, &error),
            Ok(ClientFrame::Auth(_)) => {
                error_frame(None, None, &ApiError::bad_request("already authenticated"))
            }
            Ok(ClientFrame::Subscribe(SubscribeFrame { channel_id, after_seq, presence })) => {
                self.subscribe(channel_id, after_seq.unwrap_or(0), presence).await
            }
            Ok(ClientFrame::Unsubscribe(SubscribeFrame { channel_id, .. })) => {
                if let Some(task) = self.subscriptions.remove(&channel_id) {
                    task.abort();
                }
                json!({"type": "unsubscribed", "channelId": channel_id}).to_string()
            }
            Ok(ClientFrame::Send(SendFrame { reference, channel_id, payload, client_id })) => {
                let group_commit = &self.app.group_commit;
                match group_commit.send(self.token.clone(), channel_id.clone(), payload, client_id).await {
                    Ok(answer) => {
                        let reference = serde_json::to_string(&reference).expect("a JSON value serializes");
                        format!(r#"{{"type":"sent","ref":{reference},"message":{answer}}}"#)
                    }
                    Err(error) => error_frame(reference, channel_id.as_deref(), &error),
                }
            }
            Ok(ClientFrame::Typing(TypingFrame { channel_id })) => {
                match db::call_json(&self.app.pool, api::TYPING, &[&self.token, &channel_id]).await {
                    Ok(answer) => format!(r#"{{"type":"typed","typing":{answer}}}"#),
                    Err(error) => error_frame(None, channel_id.as_deref(), &error),
                }
            }
        };
        self.out.try_queue(text(answer))
    }

    /// Starts (or restarts, from the new position) a channel's subscription.
    async fn subscribe(&mut self, channel: String, after_seq: i64, presence: bool) -> String {
        let stream = match self.app.live.open_channel(&self.token, &channel, after_seq, presence).await {
            Ok(stream) => stream,
            Err(error) => return error_frame(None, Some(&channel), &error),
        };
        let task = tokio::spawn(forward(stream, channel.clone(), self.out.clone(), self.signals.clone()));
        if let Some(previous) = self.subscriptions.insert(channel.clone(), task) {
            previous.abort();
        }
        json!({"type": "subscribed", "channelId": channel, "afterSeq": after_seq}).to_string()
    }
}

/// Passes one channel's deliveries to the socket, in order; waits while the socket's queue is
/// full (its reader's own buffer then fills, and the feed closes it as a slow consumer).
async fn forward(stream: ChannelStream, channel: String, out: Outbox, signals: mpsc::Sender<Signal>) {
    let ChannelStream { mut reader, place: _place, here: _here } = stream;
    let name = serde_json::to_string(&channel).expect("a string serializes");
    while let Some(delivery) = reader.next().await {
        let frame = match &delivery {
            Delivery::Message { json, .. } => {
                format!(r#"{{"type":"message","channelId":{name},"message":{json}}}"#)
            }
            Delivery::Reset { oldest_seq } => {
                json!({"type": "reset", "channelId": channel, "oldestSeq": oldest_seq}).to_string()
            }
            Delivery::Presence { json } => {
                format!(r#"{{"type":"presence","channelId":{name},"presence":{json}}}"#)
            }
            Delivery::Typing { json } => format!(r#"{{"type":"typing","channelId":{name},"typing":{json}}}"#),
            Delivery::Closed { reason } => {
                if *reason == SLOW_CONSUMER {
                    let _ = signals.try_send(Signal::SlowConsumer);
                }
                let last = reader.cursor();
                json!({"type": "closed", "channelId": channel, "reason": reason, "lastSeq": last}).to_string()
            }
        };
        if !out.queue(text(frame)).await {
            return;
        }
    }
}

fn text(frame: String) -> Message {
    Message::Text(Utf8Bytes::from(frame))
}

fn close(reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code: POLICY, reason: Utf8Bytes::from_static(reason) }))
}

/// An error as a frame: the HTTP status and body a request would have been answered with.
fn error_frame(reference: Option<Value>, channel: Option<&str>, error: &ApiError) -> String {
    let mut frame = json!({"type": "error", "status": error.status.as_u16(), "error": error.code});
    if error.status != axum::http::StatusCode::INTERNAL_SERVER_ERROR {
        frame["message"] = error.message.clone().into();
    }
    if let Some(reference) = reference {
        frame["ref"] = reference;
    }
    if let Some(channel) = channel {
        frame["channelId"] = channel.into();
    }
    frame.to_string()
}

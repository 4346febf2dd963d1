//! /ping and /health.

use crate::extract::AppState;
use crate::live::forward;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use utoipa::ToSchema;

// What GET /ping answers: always `{"pong": 1}`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Pong {
    #[schema(minimum = 1, maximum = 1)]
    pong: i64,
}

// What GET /health answers (built with `json!` below; this is its description).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
struct Health {
    #[schema(inline)]
    database: UpDown,
    #[schema(inline)]
    listener: UpDown,
    #[schema(minimum = 0)]
    waiting: u64,
    #[schema(inline)]
    sends: Sends,
    /// Live streams open on this gateway (SSE streams and WebSockets).
    #[schema(minimum = 0)]
    streams: u64,
    /// Readers following a channel's feed: SSE streams, WebSocket subscriptions and long-polls past
    /// their first read.
    #[schema(minimum = 0)]
    live_readers: u64,
    /// Shared window reads (`hatchat.channel_window`) made so far: one per wake-up of a channel,
    /// however many readers wait on it.
    #[schema(minimum = 0)]
    window_queries: u64,
    /// Bytes live streams hold for clients that have not taken them yet (each stream within
    /// --stream-buffer-bytes, all within --streams-max-bytes).
    #[schema(minimum = 0)]
    held_bytes: u64,
    #[schema(inline, nullable = false)]
    forwarding: Option<Forwarding>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum UpDown {
    Up,
    Down,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct Sends {
    transactions: i64,
    messages: i64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct Forwarding {
    #[schema(nullable = false)]
    active: Option<bool>,
    pending: Option<i64>,
    undeliverable: Option<i64>,
}

/// Liveness
#[utoipa::path(get, path = "/ping", tag = "operations", security(),
    responses((status = 200, description = "OK", body = Pong)))]
pub async fn ping() -> Json<Value> {
    Json(json!({"pong": 1}))
}

/// Readiness: database, listener, waiting long-polls, sends, live streams, forwarding
#[utoipa::path(get, path = "/health", tag = "operations", security(),
    responses((status = 200, description = "database and listener up", body = Health),
        (status = 503, description = "database or listener down", body = Health)))]
// 200 when the database answers and the listener is connected, 503 otherwise; `waiting` counts
// the long-polls this process holds, `sends` the send transactions and the sends they carried;
// `forwarding`, when this process was started to forward, whether it does (one gateway at a
// time) and the notifications pending and set aside as undeliverable, as its forwarder last
// counted them (every few seconds: /health itself runs no count). `streams` counts the live
// streams open (SSE, WebSocket), `liveReaders` the readers following a channel's feed (streams,
// subscriptions and long-polls past their first read), `windowQueries` the shared window reads made so far (one per
// wake-up of a channel, however many readers wait on it), `heldBytes` what live streams hold for
// clients that have not taken it yet.
pub async fn health(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = match app.pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    let listener = app.live.hub.is_connected();
    let status = if database && listener { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let up = |ok: bool| if ok { "up" } else { "down" };
    let (transactions, messages) = app.group_commit.counts();
    let mut body = json!({
        "database": up(database),
        "listener": up(listener),
        "waiting": app.live.hub.waiting(),
        "sends": {"transactions": transactions, "messages": messages},
        "streams": app.live.feeds.streams_open(),
        "liveReaders": app.live.feeds.readers(),
        "windowQueries": app.live.feeds.window_queries(),
        "heldBytes": app.live.budget.held(),
    });
    if let Some(forwarding) = forward::health() {
        body["forwarding"] = forwarding;
    }
    (status, Json(body))
}

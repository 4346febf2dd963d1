//! /ping and /health.

use crate::live::forward;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

pub async fn ping() -> Json<Value> {
    Json(json!({"pong": 1}))
}

/// 200 when the database answers and the listener is connected, 503 otherwise; `waiting` counts
/// the long-polls this process holds, `sends` the send transactions and the sends they carried;
/// `forwarding`, when this process was started to forward, whether it does (one gateway at a
/// time) and the notifications pending and set aside as undeliverable, as its forwarder last
/// counted them (every few seconds: /health itself runs no count). `streams` counts the live
/// streams open (SSE, WebSocket), `liveReaders` the readers following a channel's feed (streams,
/// subscriptions and long-polls past their first read), `windowQueries` the shared window reads made so far (one per
/// wake-up of a channel, however many readers wait on it), `heldBytes` what live streams hold for
/// clients that have not taken it yet.
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

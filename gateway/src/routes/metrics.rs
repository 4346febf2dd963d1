//! GET /metrics: the Prometheus text of what crate::metrics recorded, with the states read at
//! scrape time from what already tracks them (waiting requests, streams, pool, forwarding).

use crate::extract::AppState;
use crate::live::forward;
use crate::metrics::{
    install, ALLOCATOR_ALLOCATED, ALLOCATOR_RESIDENT, FORWARD_PENDING, FORWARD_UNDELIVERABLE,
    LISTENER_CONNECTED, LIVE_READERS, POOL_CONNECTIONS, POOL_MAX, POOL_WAITING, STREAMS_OPEN, WAITING,
    WINDOW_READS,
};
use ::metrics::{counter, gauge};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// Prometheus metrics (text format 0.0.4); see the README's Metrics section
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(),
    responses(crate::openapi::MetricsText)
)]
pub async fn render(State(app): State<AppState>) -> Response {
    let handle = install();
    record_states(&app);
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
}

/// The gauges read at scrape time.
fn record_states(app: &AppState) {
    gauge!(WAITING).set(app.live.hub.waiting() as f64);
    gauge!(STREAMS_OPEN).set(app.live.feeds.streams_open() as f64);
    gauge!(LIVE_READERS).set(app.live.feeds.readers() as f64);
    counter!(WINDOW_READS).absolute(app.live.feeds.window_queries());
    gauge!(LISTENER_CONNECTED).set(if app.live.hub.is_connected() { 1.0 } else { 0.0 });
    let pool = app.pool.status();
    gauge!(POOL_CONNECTIONS, "state" => "in_use").set(pool.size.saturating_sub(pool.available) as f64);
    gauge!(POOL_CONNECTIONS, "state" => "idle").set(pool.available as f64);
    gauge!(POOL_WAITING).set(pool.waiting as f64);
    gauge!(POOL_MAX).set(pool.max_size as f64);
    if let Some(held) = crate::memory::held() {
        gauge!(ALLOCATOR_RESIDENT).set(held.resident as f64);
        gauge!(ALLOCATOR_ALLOCATED).set(held.allocated as f64);
    }
    if let Some(forwarding) = forward::health() {
        // -1 until the forwarder's first count.
        let count = |name: &str| forwarding[name].as_i64().unwrap_or(-1) as f64;
        gauge!(FORWARD_PENDING).set(count("pending"));
        gauge!(FORWARD_UNDELIVERABLE).set(count("undeliverable"));
    }
}

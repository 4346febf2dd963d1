//! Prometheus metrics, served as text at GET /metrics. Events are counted where they happen, one
//! call each (`metrics` crate macros, a no-op until the recorder is installed); states (waiting
//! requests, pool, forwarding backlog) are read at scrape time from what already tracks them, by
//! the route (routes/metrics.rs): this module records and depends on nothing of the gateway, so
//! every module may count.
//! Every label value comes from a short fixed set (route templates, never raw paths), so a client
//! cannot grow the number of series.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

/// Requests answered, by route template, method and status.
pub const REQUESTS: &str = "hatchat_http_requests_total";
/// Seconds from a POST /messages arriving at group commit to its answer.
pub const SEND_SECONDS: &str = "hatchat_send_seconds";
/// Sends carried by each group-commit transaction.
pub const SENDS_PER_TRANSACTION: &str = "hatchat_sends_per_transaction";
/// Requests subscribed to wake-ups: long-polls (and streams) waiting or re-querying.
pub const WAITING: &str = "hatchat_waiting_requests";
/// NOTIFY announcements the listener received from the extension.
pub const WAKE_UPS_RECEIVED: &str = "hatchat_wake_ups_received_total";
/// Wake-ups handed to waiting requests: `to="topic"` (a channel or user with waiters) or
/// `to="everyone"` (after a reconnect, an announcement naming nothing, shutdown).
pub const WAKE_UPS_DISPATCHED: &str = "hatchat_wake_ups_dispatched_total";
/// Whether the LISTEN connection is up (1) or not (0).
pub const LISTENER_CONNECTED: &str = "hatchat_listener_connected";
/// Notifications waiting to be forwarded, and set aside as undeliverable, as the forwarder last
/// counted them (only when this gateway was started with a notify URL).
pub const FORWARD_PENDING: &str = "hatchat_forward_pending";
pub const FORWARD_UNDELIVERABLE: &str = "hatchat_forward_undeliverable";
/// Request pool connections: `state="in_use"` or `"idle"`; requests waiting for one; the maximum.
pub const POOL_CONNECTIONS: &str = "hatchat_pool_connections";
pub const POOL_WAITING: &str = "hatchat_pool_waiting";
pub const POOL_MAX: &str = "hatchat_pool_max_connections";
/// Live streams open (SSE and WebSocket), readers following a channel's feed (streams'
/// subscriptions and long-polls that follow a seq), and the window reads made for them: one per
/// channel per wake-up, however many read it.
pub const STREAMS_OPEN: &str = "hatchat_streams_open";
pub const LIVE_READERS: &str = "hatchat_live_readers";
pub const WINDOW_READS: &str = "hatchat_window_reads_total";
/// What the allocator holds: its resident pages, and what the gateway has allocated (memory.rs).
pub const ALLOCATOR_RESIDENT: &str = "hatchat_allocator_resident_bytes";
pub const ALLOCATOR_ALLOCATED: &str = "hatchat_allocator_allocated_bytes";
/// Errors from the database, by SQLSTATE class (`22`, `28`, `P0`…; `connection` when it was not
/// reachable, `pool` when no connection came in time).
pub const DATABASE_ERRORS: &str = "hatchat_database_errors_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (once per process); later calls return the same handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(SEND_SECONDS.into()),
                &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(SENDS_PER_TRANSACTION.into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1000.0],
                )
            })
            .expect("fixed, non-empty buckets");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder already installed (a test harness): this handle then renders nothing
        // counted, which is better than no /metrics at all.
        if let Err(error) = metrics::set_global_recorder(recorder) {
            tracing::warn!(%error, "a metrics recorder was already installed");
        }
        describe();
        handle
    })
}

/// The HELP lines of the scrape.
fn describe() {
    describe_counter!(REQUESTS, "HTTP answers by route template, method and status");
    describe_histogram!(SEND_SECONDS, "seconds from a send reaching group commit to its answer");
    describe_histogram!(SENDS_PER_TRANSACTION, "sends carried by each group-commit transaction");
    describe_gauge!(WAITING, "requests subscribed to wake-ups (long-polls and streams)");
    describe_counter!(WAKE_UPS_RECEIVED, "announcements (NOTIFY) received from the extension");
    describe_counter!(WAKE_UPS_DISPATCHED, "wake-ups handed to waiting requests");
    describe_gauge!(LISTENER_CONNECTED, "1 while the LISTEN connection is up");
    describe_gauge!(FORWARD_PENDING, "notifications waiting to be forwarded (last count)");
    describe_gauge!(FORWARD_UNDELIVERABLE, "notifications set aside as undeliverable (last count)");
    describe_gauge!(POOL_CONNECTIONS, "request pool connections by state");
    describe_gauge!(POOL_WAITING, "requests waiting for a pool connection");
    describe_gauge!(POOL_MAX, "request pool size");
    describe_counter!(DATABASE_ERRORS, "database errors by SQLSTATE class");
    describe_gauge!(STREAMS_OPEN, "live streams open (SSE and WebSocket)");
    describe_gauge!(LIVE_READERS, "readers following a channel's feed");
    describe_gauge!(ALLOCATOR_RESIDENT, "bytes of the allocator's pages resident in memory");
    describe_gauge!(ALLOCATOR_ALLOCATED, "bytes the gateway has allocated and not freed");
    describe_counter!(WINDOW_READS, "channel window reads, each serving every reader of its channel");
}

/// Middleware: counts every answer by the route template it matched (`unmatched` for none).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let route = route.to_string();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_str().to_string();
    counter!(REQUESTS, "route" => route, "method" => method, "status" => status).increment(1);
    response
}

/// The method as a label: the standard ones by name, anything else as `other`.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 7] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ];
    KNOWN.iter().find(|m| *m == method).map_or("other", |m| m.as_str())
}

/// A send answered, `started` when it arrived at group commit.
pub fn send_answered(started: Instant) {
    histogram!(SEND_SECONDS).record(started.elapsed().as_secs_f64());
}

/// A group-commit transaction carrying `sends` sends.
pub fn send_transaction(sends: usize) {
    histogram!(SENDS_PER_TRANSACTION).record(sends as f64);
}

pub fn wake_up_received() {
    counter!(WAKE_UPS_RECEIVED).increment(1);
}

/// `to`: `topic` or `everyone`.
pub fn wake_up_dispatched(to: &'static str) {
    counter!(WAKE_UPS_DISPATCHED, "to" => to).increment(1);
}

/// An error from the database with `sqlstate`, or `connection`/`pool` for none.
pub fn database_error(sqlstate: &str) {
    counter!(DATABASE_ERRORS, "class" => sqlstate_class(sqlstate)).increment(1);
}

/// The SQLSTATE's class (its first two characters), or the word given for errors without one;
/// anything else is `other`, so the label stays bounded whatever a server sends.
fn sqlstate_class(sqlstate: &str) -> String {
    match sqlstate {
        "connection" | "pool" => sqlstate.to_string(),
        s if s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) => {
            s[..2].to_string()
        }
        _ => "other".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_within_fixed_sets() {
        assert_eq!(sqlstate_class("P0002"), "P0");
        assert_eq!(sqlstate_class("22023"), "22");
        assert_eq!(sqlstate_class("connection"), "connection");
        assert_eq!(sqlstate_class("2202"), "other");
        assert_eq!(sqlstate_class("ab\u{e9}12"), "other");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}

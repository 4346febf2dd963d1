//! GET /metrics after real traffic: each counter moves by exactly what the requests did (a 200, a
//! 404 from the database, an unknown route, sends through group commit, a long-poll woken by a
//! send), gauges show the waiting long-poll and the pool, and labels are route templates.

mod support;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;
use uuid::Uuid;

/// One scrape: each sample by its name and its labels (sorted, so their order does not matter).
struct Scrape(BTreeMap<(String, BTreeMap<String, String>), f64>);

impl Scrape {
    async fn of(gateway: &Gateway) -> Self {
        let response = reqwest::get(format!("{}/metrics", gateway.base)).await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        Self::parse(&response.text().await.unwrap())
    }

    fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap())),
                None => (series, BTreeMap::new()),
            };
            samples.insert((name.to_string(), labels), value.parse::<f64>().unwrap());
        }
        Scrape(samples)
    }

    /// The sample's value, 0 when the series does not exist yet.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.0.get(&(name.to_string(), labels)).copied().unwrap_or(0.0)
    }

    fn names(&self) -> Vec<&str> {
        self.0.keys().map(|(name, _)| name.as_str()).collect()
    }

    fn label_values(&self, name: &str, label: &str) -> Vec<&str> {
        self.0
            .keys()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, l)| l.get(label).map(String::as_str))
            .collect()
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    // Label values here never hold `",` (route templates, statuses, classes).
    text.split("\",")
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("label: {pair}"));
            (key.to_string(), value.trim_end_matches('"').to_string())
        })
        .collect()
}

fn requests(route: &str, method: &str, status: &str) -> Vec<(&'static str, String)> {
    vec![("route", route.to_string()), ("method", method.to_string()), ("status", status.to_string())]
}

fn get_requests(scrape: &Scrape, route: &str, method: &str, status: &str) -> f64 {
    let labels = requests(route, method, status);
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    scrape.get("hatchat_http_requests_total", &labels)
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_match_the_traffic() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let channel = api.create_channel(&alice, "self").await;
    let before = Scrape::of(&gateway).await;

    api.get("/ping", None).await.expect(200);
    api.get("/api/ping", None).await.expect(200);
    api.get(&format!("/users/{}", Uuid::new_v4()), None).await.expect(404);
    api.get("/no/such/route", None).await.expect(404);
    let first = api.send(&alice, &channel, json!({"n": 1})).await.expect(200);
    let after_first = format!("afterSeq={}&wait=10", first["seq"]);
    let poll = background_poll(&gateway, &alice, &channel, &after_first).await;
    let waiting = Scrape::of(&gateway).await;
    api.send(&alice, &channel, json!({"n": 2})).await.expect(200);
    let (reply, _) = poll.await.unwrap();
    let second = first["seq"].as_i64().unwrap() + 1;
    assert_eq!(seqs(&reply.expect(200)), [second], "the long-poll got the second message");
    // The channel's feed may still be ending a read it began for another wake-up (the first
    // send's) when the poll is answered: the scrape is taken once its connection is back.
    let mut after = Scrape::of(&gateway).await;
    for _ in 0..40 {
        if after.get("hatchat_pool_connections", &[("state", "in_use")]) == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = Scrape::of(&gateway).await;
    }

    let delta = |f: &dyn Fn(&Scrape) -> f64| f(&after) - f(&before);
    assert_eq!(delta(&|s| get_requests(s, "/ping", "GET", "200")), 1.0);
    assert_eq!(
        delta(&|s| get_requests(s, "/api/ping", "GET", "200")),
        1.0,
        "/api routes by their own template"
    );
    assert_eq!(
        delta(&|s| get_requests(s, "/users/{id}", "GET", "404")),
        1.0,
        "a template, never the raw path"
    );
    assert_eq!(delta(&|s| get_requests(s, "unmatched", "GET", "404")), 1.0, "unknown routes under one label");
    assert_eq!(delta(&|s| get_requests(s, "/messages", "POST", "200")), 2.0);
    assert_eq!(delta(&|s| get_requests(s, "/messages", "GET", "200")), 1.0);
    let routes = after.label_values("hatchat_http_requests_total", "route");
    assert!(routes.iter().all(|r| !r.contains(&alice.id.to_string())), "no raw ids in labels: {routes:?}");

    assert_eq!(
        delta(&|s| s.get("hatchat_database_errors_total", &[("class", "P0")])),
        1.0,
        "the 404's P0002"
    );
    assert_eq!(delta(&|s| s.get("hatchat_send_seconds_count", &[])), 2.0);
    assert_eq!(
        delta(&|s| s.get("hatchat_sends_per_transaction_count", &[])),
        2.0,
        "one transaction per lone send"
    );
    assert_eq!(delta(&|s| s.get("hatchat_sends_per_transaction_sum", &[])), 2.0);
    assert_eq!(delta(&|s| s.get("hatchat_sends_per_transaction_bucket", &[("le", "1")])), 2.0);
    // The announcement of the second send, at least (the first send and the channel's creation may
    // be announced in the same window), woke the waiting poll's topic.
    assert!(
        after.get("hatchat_wake_ups_received_total", &[])
            > waiting.get("hatchat_wake_ups_received_total", &[])
    );
    let woken = |s: &Scrape| s.get("hatchat_wake_ups_dispatched_total", &[("to", "topic")]);
    assert!(woken(&after) > woken(&waiting), "the send woke the poll's topic");

    assert_eq!(waiting.get("hatchat_waiting_requests", &[]), 1.0, "the long-poll, while it waited");
    assert_eq!(after.get("hatchat_waiting_requests", &[]), 0.0);
    // The long-poll followed its seq through the channel's feed, which read the window for it.
    assert!(delta(&|s| s.get("hatchat_window_reads_total", &[])) >= 1.0);
    assert_eq!(after.get("hatchat_live_readers", &[]), 0.0, "the poll left the feed when answered");
    assert_eq!(after.get("hatchat_streams_open", &[]), 0.0);
    assert_eq!(after.get("hatchat_listener_connected", &[]), 1.0);
    assert_eq!(after.get("hatchat_pool_max_connections", &[]), 8.0, "HATCHAT_POOL_SIZE of the harness");
    assert_eq!(after.get("hatchat_pool_connections", &[("state", "in_use")]), 0.0, "nothing running");
    assert!(after.get("hatchat_pool_connections", &[("state", "idle")]) >= 1.0);
    assert_eq!(after.get("hatchat_pool_waiting", &[]), 0.0);
    assert!(!after.names().contains(&"hatchat_forward_pending"), "not a forwarding gateway");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forwarding_gateway_shows_its_backlog() {
    // An unreachable receiver: notifications stay pending; the counts come from the forwarder.
    let gateway = Gateway::start_with(&[("HATCHAT_NOTIFY_URL", "http://127.0.0.1:9/")]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let scrape = Scrape::of(&gateway).await;
        if scrape.get("hatchat_forward_pending", &[]) >= 0.0
            && scrape.names().contains(&"hatchat_forward_pending")
        {
            assert!(scrape.get("hatchat_forward_undeliverable", &[]) >= 0.0, "counted with the backlog");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the forwarder never counted its backlog");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

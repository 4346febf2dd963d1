//! Forwarding that one user cannot stall: a receiver that refuses (400) or keeps failing (500) on
//! one user's notifications gets them set aside as undeliverable, and everyone else's arrive, in
//! order per user.

mod support;
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// Bodies the receiver accepted, by recipient username.
type Received = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// A receiver that refuses (400) a notification whose `push` says `poison`, fails (500) on one that
/// says `crash`, and records the message of every other one.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let record = {
        let received = received.clone();
        move |axum::Json(body): axum::Json<Value>| async move {
            if body["push"]["poison"] == json!(true) {
                return (StatusCode::BAD_REQUEST, "unknown device token");
            }
            if body["push"]["crash"] == json!(true) {
                return (StatusCode::INTERNAL_SERVER_ERROR, "receiver crashed");
            }
            let to = body["to"].as_str().unwrap_or_default().to_string();
            let message = body["data"]["message"].as_str().unwrap_or_default().to_string();
            received.lock().unwrap().entry(to).or_default().push(message);
            (StatusCode::OK, "ok")
        }
    };
    let app = axum::Router::new().route("/notify", axum::routing::post(record));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Hatch@'s web client's token, percent-encoded for the path.
fn path_token(user: &User) -> String {
    encode(&seed_token(&user.key_name, user.id, 60))
}

async fn room(api: &Api, by: &User, users: &[&User]) -> String {
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    let path = format!("/chat/v1/auth/{}/rooms", path_token(by));
    let created = api.post(&path, None, json!({"type": "forward/v1", "users": names})).await.expect(200);
    created["id"].as_str().unwrap().to_string()
}

async fn post(api: &Api, by: &User, room: &str, body: Value) {
    let path = format!("/chat/v1/auth/{}/rooms/{}/messages", path_token(by), encode(room));
    api.post(&path, None, body).await.expect(200);
}

fn text(message: &str, push: Option<Value>) -> Value {
    let mut body = json!({"timestamp": 1, "type": "text", "message": message});
    if let Some(push) = push {
        body["push"] = push;
    }
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_whose_notifications_fail_is_set_aside_and_nobody_else_waits() {
    // Earlier suites' notifications would be forwarded to this receiver too: mark them all done.
    let db = admin().await;
    db.execute("UPDATE hatchat.notifications SET forwarded_at = now() WHERE forwarded_at IS NULL", &[])
        .await
        .unwrap();
    db.execute("UPDATE hatchat.inboxes SET pending_since = NULL WHERE pending_since IS NOT NULL", &[])
        .await
        .unwrap();
    let (url, received) = receiver().await;
    let gateway =
        Gateway::start_with(&[("HATCHAT_NOTIFY_URL", &url), ("HATCHAT_FORWARD_GIVE_UP", "1")]).await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let (bob, carol) = (api.register("bob").await, api.register("carol").await);
    let (dave, erin) = (api.register("bob").await, api.register("carol").await);

    // The sender fills `push`: 110 notifications for bob that the receiver refuses (more than one
    // batch), one for carol that makes it fail, all older than what everyone gets next.
    let bobs = room(&api, &alice, &[&alice, &bob]).await;
    for i in 0..110 {
        post(&api, &alice, &bobs, text(&format!("poison {i}"), Some(json!({"poison": true})))).await;
    }
    let carols = room(&api, &alice, &[&alice, &carol]).await;
    post(&api, &alice, &carols, text("crash", Some(json!({"crash": true})))).await;
    let everyone = room(&api, &alice, &[&alice, &bob, &carol, &dave, &erin]).await;
    let said: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    for message in &said {
        post(&api, &alice, &everyone, text(message, None)).await;
    }

    let users = [&bob, &carol, &dave, &erin];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = received.lock().unwrap().clone();
        if users.iter().all(|u| got.get(&u.username).is_some_and(|m| m.len() >= said.len())) {
            break;
        }
        assert!(Instant::now() < deadline, "forwarded only {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.lock().unwrap().clone();
    for user in users {
        assert_eq!(got[&user.username], said, "{}: all, in order, once, nothing refused", user.username);
    }

    // Set aside with their reasons, listed by the SQL function and counted in /health.
    let aside: Value =
        db.query_one("SELECT hatchat.undeliverable_notifications(1000)", &[]).await.unwrap().get(0);
    let of = |user: &User| -> Vec<(i64, String)> {
        let mut set_aside: Vec<(i64, String)> = aside
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["userId"] == json!(user.id))
            .map(|n| (n["id"].as_i64().unwrap(), n["reason"].as_str().unwrap().to_string()))
            .collect();
        set_aside.sort(); // listed newest first
        set_aside
    };
    let bobs_aside = of(&bob);
    assert_eq!(bobs_aside.iter().map(|(id, _)| *id).collect::<Vec<_>>(), (1..=110).collect::<Vec<_>>());
    assert!(
        bobs_aside[0].1.contains("400") && bobs_aside[0].1.contains("unknown device token"),
        "{bobs_aside:?}"
    );
    let carols_aside = of(&carol);
    assert_eq!(carols_aside.len(), 1, "{carols_aside:?}");
    assert_eq!(carols_aside[0].0, 1);
    assert!(carols_aside[0].1.contains("500"), "{carols_aside:?}");
    loop {
        let health = gateway.health().await;
        let forwarding = &health["forwarding"];
        if forwarding["undeliverable"].as_i64() >= Some(111) && forwarding["pending"] == json!(0) {
            break;
        }
        assert!(Instant::now() < deadline, "/health says {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

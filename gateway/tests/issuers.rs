//! Trusted issuers over HTTP: an app's token works wherever a token is taken (Authorization, SSE,
//! WebSocket, the rooms routes' path), and the gateway carries rotated keys from the issuer's JWKS
//! URL (a server in this test, on the loopback) to the database: a new key works within one
//! refresh, a removed one stops.

#[path = "../../tests/common/issuer.rs"]
#[allow(dead_code)] // the SQL suites use all of it
mod issuer;
mod support;

use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use issuer::{Issuer, IssuerKey};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// A JWKS server on the loopback, serving whatever `keys` holds now.
async fn jwks_server(keys: Arc<Mutex<Value>>) -> String {
    let app = axum::Router::new()
        .route("/jwks.json", get(move || async move { axum::Json(keys.lock().unwrap().clone()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn trust(issuer: &Issuer, url: Option<&str>) {
    let db = admin().await;
    let jwks = issuer.jwks().to_string();
    db.execute(
        "SELECT hatchat.add_issuer(NULL, $1, $2::text::jsonb, $3, 'preferred_username', $4)",
        &[&issuer.iss, &jwks, &issuer.audience, &url],
    )
    .await
    .unwrap();
}

/// Tries `token` on GET /channels every 100 ms until it is (or is not) accepted, for `within`.
async fn accepted_within(api: &Api, token: &str, want: bool, within: Duration) -> bool {
    let until = tokio::time::Instant::now() + within;
    loop {
        let ok = api.get("/channels", Some(token)).await.status == 200;
        if ok == want || tokio::time::Instant::now() >= until {
            return ok == want;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuers_token_works_everywhere_a_token_is_taken() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let app = Issuer::new(&format!("everywhere-{}", short_id()), IssuerKey::es256());
    trust(&app, None).await;
    let (ann, bea) = (format!("ann-{}", short_id()), format!("bea-{}", short_id()));
    let (ann_token, bea_token) = (app.token("ann", &ann), app.token("bea", &bea));

    // Authorization: a channel, a join, a send.
    let channel = format!("iss-{}", short_id());
    api.post("/channels", Some(&ann_token), json!({"id": channel, "inviteModel": "self"})).await.expect(200);
    let me = api.get("/channels", Some(&bea_token)).await.expect(200);
    assert!(me.as_array().unwrap().iter().all(|c| c["id"] != channel), "bea is no member yet");
    let bea_id = id_of(&api, &bea_token).await;
    api.post("/invite", Some(&bea_token), json!({"channelId": channel, "userId": bea_id})).await.expect(200);
    let body = json!({"channelId": channel, "payload": {"text": "hi bea"}});
    let sent = api.post("/messages", Some(&ann_token), body).await.expect(200)["seq"].as_i64().unwrap();

    // SSE with ?token= (what EventSource sends).
    let path =
        format!("/channels/{}/events?afterSeq={}&token={}", encode(&channel), sent - 1, encode(&bea_token));
    let mut response = api.http.get(format!("{}{path}", api.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    while !text.contains("hi bea") {
        let chunk =
            tokio::time::timeout(Duration::from_secs(10), response.chunk()).await.unwrap().unwrap().unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }

    // WebSocket, with the token in the first frame.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{}/ws", gateway.base.replace("http://", "ws://")))
            .await
            .unwrap();
    socket.send(Message::Text(json!({"type": "auth", "token": bea_token}).to_string().into())).await.unwrap();
    let ready = next_frame(&mut socket).await;
    assert_eq!((ready["type"].as_str(), ready["userId"].as_str()), (Some("ready"), Some(bea_id.as_str())));

    // The rooms routes' token path segment.
    let rooms = format!("/chat/v1/auth/{}/rooms", encode(&ann_token));
    let room = api.post(&rooms, None, json!({"type": "iss/v1", "users": [ann, bea]})).await.expect(200);
    assert!(room["id"].as_str().is_some_and(|id| id.starts_with("iss/v1/")), "{room}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_keys_reach_the_database_within_one_refresh() {
    let mut app = Issuer::new(&format!("rotating-{}", short_id()), IssuerKey::es256());
    let keys = Arc::new(Mutex::new(app.jwks()));
    let url = jwks_server(Arc::clone(&keys)).await;
    trust(&app, Some(&url)).await;
    let gateway = Gateway::start_with(&[("HATCHAT_JWKS_REFRESH", "2")]).await;
    let api = gateway.api();
    let name = format!("cy-{}", short_id());
    let old = app.token("cy", &name);
    api.get("/channels", Some(&old)).await.expect(200);

    // The app rotates: a new key (k2) is served; k1 is gone. A token under k2 asks the gateway to
    // fetch the issuer's keys: it works within one refresh, and the old one stops.
    app.key = IssuerKey::eddsa();
    app.kid = "k2".into();
    *keys.lock().unwrap() = app.jwks();
    let new = app.token("cy", &name);
    assert!(accepted_within(&api, &new, true, Duration::from_secs(5)).await, "the new key works");
    assert!(accepted_within(&api, &old, false, Duration::from_secs(5)).await, "the removed key stops");

    // A kid nobody serves stays refused after the refresh it asks for.
    let unknown = app.token_with(json!({"kid": "k9"}), json!({"sub": "cy", "preferred_username": name}));
    let refused = api.get("/channels", Some(&unknown)).await;
    assert_eq!(refused.status, 401);
    assert!(!accepted_within(&api, &unknown, true, Duration::from_secs(3)).await);
}

/// The id a token speaks for: the owner of a channel it creates.
async fn id_of(api: &Api, token: &str) -> String {
    let probe = json!({"id": format!("probe-{}", short_id())});
    let channel = api.post("/channels", Some(token), probe).await.expect(200);
    channel["ownerId"].as_str().unwrap().to_string()
}

async fn next_frame(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> Value {
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

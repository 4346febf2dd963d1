//! The multi-room chat service over HTTP: ganomede-chat's routes and status codes, the moderation
//! routes, the notifications long-poll, purging, and forwarding to a receiver that fails at first.

mod support;
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const SECRET: &str = "test-server-secret-4b1d9f0e7c";

async fn set_secret() {
    admin().await.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).await.unwrap();
}

/// A token as a path segment: URL-safe base64, signed over that text (no escaping needed).
fn url_safe_token(user: &User) -> String {
    let exp = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS512","typ":"JWT"}"#);
    let claim = URL_SAFE_NO_PAD.encode(format!(r#"{{"id":"{}","exp":{}}}"#, user.id, exp.as_second()));
    let token = sign_parts(&user.key_name, &header, &claim);
    let (input, signature) = token.rsplit_once('.').unwrap();
    let signature =
        URL_SAFE_NO_PAD.encode(base64::engine::general_purpose::STANDARD.decode(signature).unwrap());
    format!("{input}.{signature}")
}

/// Hatch@'s web client's token (standard base64), percent-encoded for the path.
fn encoded_token(user: &User) -> String {
    encode(&seed_token(&user.key_name, user.id, 60))
}

fn text(timestamp: i64, message: &str) -> Value {
    json!({"timestamp": timestamp, "type": "text", "message": message})
}

/// The id of a new room of `alice` and `bob`.
async fn room_id(api: &Api, alice: &User, bob: &User) -> String {
    let created = room(api, &encoded_token(alice), &[&alice.username, &bob.username]).await.expect(200);
    created["id"].as_str().unwrap().to_string()
}

async fn room(api: &Api, token: &str, users: &[&str]) -> Reply {
    api.post(&format!("/chat/v1/auth/{token}/rooms"), None, json!({"type": "triominos/v1", "users": users}))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn rooms_with_the_seeds_routes_and_statuses() {
    set_secret().await;
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let carol = api.register("carol").await;

    // Create: 200 (URL-safe token), 200 again (existing), 401 not a participant, 404 unknown user.
    let created = room(&api, &url_safe_token(&alice), &[&alice.username, &bob.username]).await.expect(200);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["messages"], json!([]));
    room(&api, &encoded_token(&bob), &[&bob.username, &alice.username]).await.expect(200);
    room(&api, &encoded_token(&carol), &[&alice.username, &bob.username]).await.expect(401);
    room(&api, &encoded_token(&alice), &[&alice.username, "nobody-here"]).await.expect(404);
    room(&api, "not-a-token", &[&alice.username]).await.expect(401);
    room(&api, SECRET, &[&carol.username, &bob.username]).await.expect(200);

    // Post: 200 stored, 400 per bad field, 401, 404.
    let path = format!("/chat/v1/auth/{}/rooms/{}/messages", encoded_token(&alice), encode(&id));
    let posted = api.post(&path, None, text(1429084016939, "Hey bob!")).await.expect(200);
    assert_eq!(posted["from"], json!(alice.username));
    let bad =
        api.post(&path, None, json!({"timestamp": "now", "type": "t", "message": "m"})).await.expect(400);
    assert!(bad["message"].as_str().unwrap().starts_with("timestamp"), "{bad}");
    api.post(&path, None, json!({"timestamp": 1, "type": "t"})).await.expect(400);
    let outsider = format!("/chat/v1/auth/{}/rooms/{}/messages", encoded_token(&carol), encode(&id));
    api.post(&outsider, None, text(1, "let me in")).await.expect(401);
    let missing =
        format!("/chat/v1/auth/{}/rooms/{}/messages", encoded_token(&alice), encode("no/such/room"));
    api.post(&missing, None, text(1, "anyone?")).await.expect(404);
    // Plain slashes in the room id work too.
    let plain = format!("/chat/v1/auth/{}/rooms/{id}/messages", url_safe_token(&bob));
    api.post(&plain, None, text(1429084016940, "Hi Alice :)")).await.expect(200);

    // Get: newest first, for participants and the secret; 401, 404.
    let got = api
        .get(&format!("/chat/v1/auth/{}/rooms/{}", encoded_token(&alice), encode(&id)), None)
        .await
        .expect(200);
    let said: Vec<&str> =
        got["messages"].as_array().unwrap().iter().map(|m| m["message"].as_str().unwrap()).collect();
    assert_eq!(said, ["Hi Alice :)", "Hey bob!"]);
    api.get(&format!("/chat/v1/auth/{SECRET}/rooms/{}", encode(&id)), None).await.expect(200);
    api.get(&format!("/chat/v1/auth/{}/rooms/{}", encoded_token(&carol), encode(&id)), None)
        .await
        .expect(401);
    api.get(&format!("/chat/v1/auth/{}/rooms/{}", encoded_token(&alice), encode("no/room")), None)
        .await
        .expect(404);

    // Banned: 403 on creating and posting.
    let ban = json!({"until": "2099-01-01T00:00:00Z"});
    api.post(&format!("/admin/users/{}/ban", bob.id), Some(SECRET), ban).await.expect(200);
    room(&api, &encoded_token(&bob), &[&bob.username, &alice.username]).await.expect(403);
    let bob_posts = format!("/chat/v1/auth/{}/rooms/{}/messages", encoded_token(&bob), encode(&id));
    api.post(&bob_posts, None, text(2, "banned")).await.expect(403);
    api.call(Method::DELETE, &format!("/admin/users/{}/ban", bob.id), Some(SECRET), None).await.expect(200);
    api.post(&bob_posts, None, text(3, "back")).await.expect(200);

    // System messages: the secret only; they create the room and post an event from $$.
    let system = json!({"type": "triominos/v1", "users": [carol.username, alice.username], "timestamp": 5, "message": "GAME_STARTED"});
    api.post(&format!("/chat/v1/auth/{}/system-messages", encoded_token(&alice)), None, system.clone())
        .await
        .expect(401);
    let event = api.post(&format!("/chat/v1/auth/{SECRET}/system-messages"), None, system).await.expect(200);
    assert_eq!((event["from"].clone(), event["type"].clone()), (json!("$$"), json!("event")));
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_routes_need_the_secret_even_when_the_gateway_logs_in_as_superuser() {
    set_secret().await;
    let gateway = Gateway::start().await; // its DATABASE_URL is the postgres superuser
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    for token in [None, Some(alice.token())] {
        let status = api
            .post(&format!("/admin/users/{}/mute", bob.id), token.as_deref(), json!({"muted": true}))
            .await;
        assert!(status.status == 401 || status.status == 403, "{status:?}");
    }
    let muted =
        api.post(&format!("/admin/users/{}/mute", bob.id), Some(SECRET), json!({"muted": true})).await;
    assert_eq!(muted.expect(200)["muted"], json!(true));
    api.post(&format!("/admin/users/{}/ban", bob.id), Some(SECRET), json!({"until": "someday"}))
        .await
        .expect(400);
}

#[tokio::test(flavor = "multi_thread")]
async fn self_service_moderation_routes() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let blocks = format!("/users/{}/blocks", alice.id);
    let listed = api.post(&blocks, Some(&alice.token()), json!({"userId": bob.id})).await.expect(200);
    assert_eq!(listed, json!([{"id": bob.id, "username": bob.username}]));
    assert_eq!(api.get(&blocks, Some(&alice.token())).await.expect(200), listed);
    api.get(&blocks, Some(&bob.token())).await.expect(403);
    api.post(&blocks, Some(&alice.token()), json!({"userId": alice.id})).await.expect(400);
    let unblocked =
        api.call(Method::DELETE, &format!("{blocks}/{}", bob.id), Some(&alice.token()), None).await;
    assert_eq!(unblocked.expect(200), json!([]));
    let path = format!("/users/{}/chat-disabled", alice.id);
    let disabled = api.call(Method::PUT, &path, Some(&alice.token()), Some(json!({"disabled": true}))).await;
    assert_eq!(disabled.expect(200)["chatDisabled"], json!(true));
    api.call(Method::PUT, &path, Some(&bob.token()), Some(json!({"disabled": true}))).await.expect(403);
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_long_poll_wakes_on_a_post() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let id = room_id(&api, &alice, &bob).await;
    let waiting = {
        let (api, bob) = (api.clone(), bob.clone());
        tokio::spawn(async move { api.get("/notifications?after=0&wait=10", Some(&bob.token())).await })
    };
    while gateway.waiting().await == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let path = format!("/chat/v1/auth/{}/rooms/{}/messages", encoded_token(&alice), encode(&id));
    let sent = Instant::now();
    api.post(&path, None, text(1, "ping")).await.expect(200);
    let notes = waiting.await.unwrap().expect(200);
    assert!(sent.elapsed() < Duration::from_secs(2));
    assert_eq!(notes[0]["data"]["message"], json!("ping"));
    assert_eq!(notes[0]["id"], json!(1));
    let quiet = api.get("/notifications?after=1&wait=0.3", Some(&bob.token())).await.expect(200);
    assert_eq!(quiet, json!([]));
    api.get("/notifications?wait=0", None).await.expect(401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_purges_expired_rooms() {
    let gateway = Gateway::start_with(&[("HATCHAT_PURGE_INTERVAL", "1")]).await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let id = format!("short-{}", short_id());
    let options = json!({"id": id, "options": {"ttlSeconds": 1}});
    api.post("/channels", Some(&alice.token()), options).await.expect(200);
    let db = admin().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 =
            db.query_one("SELECT count(*) FROM hatchat.channels WHERE id = $1", &[&id]).await.unwrap().get(0);
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not purged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

type Received = Arc<Mutex<Vec<Value>>>;

/// A notification receiver that refuses its first `failures` requests, then records the bodies.
async fn receiver(failures: usize) -> (String, Received) {
    let received: Received = Arc::default();
    let refused = Arc::new(Mutex::new(0usize));
    let record = {
        let received = received.clone();
        move |axum::Json(body): axum::Json<Value>| async move {
            let mut refused = refused.lock().unwrap();
            if *refused < failures {
                *refused += 1;
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            received.lock().unwrap().push(body);
            StatusCode::OK
        }
    };
    let app = axum::Router::new().route("/notify", axum::routing::post(record));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_are_forwarded_in_order_despite_a_failing_receiver() {
    // Other tests' notifications would be forwarded to this receiver too: mark them all done first.
    let db = admin().await;
    db.execute("UPDATE hatchat.notifications SET forwarded_at = now() WHERE forwarded_at IS NULL", &[])
        .await
        .unwrap();
    let (url, received) = receiver(3).await;
    let gateway = Gateway::start_with(&[("HATCHAT_NOTIFY_URL", &url)]).await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let id = room_id(&api, &alice, &bob).await;
    let path = format!("/chat/v1/auth/{}/rooms/{}/messages", encoded_token(&alice), encode(&id));
    for i in 0..5 {
        api.post(&path, None, text(i, &format!("m{i}"))).await.expect(200);
    }
    let for_bob = |received: &Received| -> Vec<String> {
        received
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n["to"] == json!(bob.username))
            .map(|n| n["data"]["message"].as_str().unwrap().to_string())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while for_bob(&received).len() < 5 {
        assert!(Instant::now() < deadline, "forwarded only {:?}", for_bob(&received));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(for_bob(&received), ["m0", "m1", "m2", "m3", "m4"], "in order, each once");

    // A restart neither loses nor repeats: what was recorded as acknowledged is not sent again.
    // (Killed between the receiver's answer and the record, a gateway sends that one again: at
    // least once. So wait for the record before killing it.)
    let unrecorded =
        "SELECT count(*) FROM hatchat.notifications WHERE user_id = $1::text::uuid AND forwarded_at IS NULL";
    while db.query_one(unrecorded, &[&bob.id.to_string()]).await.unwrap().get::<_, i64>(0) > 0 {
        assert!(Instant::now() < deadline, "the acknowledgements were never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(gateway);
    let restarted = Gateway::start_with(&[("HATCHAT_NOTIFY_URL", &url)]).await;
    restarted.api().post(&path, None, text(9, "after restart")).await.expect(200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while for_bob(&received).len() < 6 {
        assert!(Instant::now() < deadline, "not forwarded after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(for_bob(&received), ["m0", "m1", "m2", "m3", "m4", "after restart"]);
}

/// Hatch@'s web client exports its key with the whole base64 on one line.
const ONE_LINE_PEM: &str = include_str!("../../tests/fixtures/keys/alice.oneline.pub.pem");

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_clients_one_line_pem_registers_and_its_tokens_work() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let bob = api.register("bob").await;
    for pem in [ONE_LINE_PEM.to_string(), ONE_LINE_PEM.replace('\n', "\r\n")] {
        let id = uuid::Uuid::new_v4();
        let username = format!("web-{}", short_id());
        let body = json!({"id": id, "publicKey": pem, "username": username});
        let registered = api.post("/users", None, body).await.expect(200);
        assert_eq!(registered["username"], json!(username));
        let user = User { id, username, key_name: "alice".into() };
        let created = room(&api, &encoded_token(&user), &[&user.username, &bob.username]).await.expect(200);
        assert_eq!(created["messages"], json!([]));
    }
}

async fn rename(api: &Api, user: &User, name: &str) {
    let body = json!({"username": name});
    api.call(Method::PATCH, &format!("/users/{}", user.id), Some(&user.token()), Some(body))
        .await
        .expect(200);
}

/// A 409 for a room: the error shape and not a word of what the id holds.
#[track_caller]
fn assert_reveals_nothing(body: &Value, secrets: &[&str]) {
    assert_eq!(body["error"], json!("conflict"), "{body}");
    assert!(body.get("messages").is_none() && body.get("users").is_none(), "{body}");
    for secret in secrets {
        assert!(!body.to_string().contains(secret), "{secret:?} in {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rooms_are_never_opened_by_a_name_or_an_id_that_changed_hands() {
    set_secret().await;
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let mallory = api.register("carol").await;

    // A segment-named user asks for the "room" that is alice's ordinary channel team-…/general-….
    let kind = format!("team-{}", short_id());
    let segment = format!("general-{}", short_id());
    let channel = format!("{kind}/{segment}");
    api.post("/channels", Some(&alice.token()), json!({"id": channel, "inviteModel": "owner"}))
        .await
        .expect(200);
    api.send(&alice, &channel, json!({"text": "secret plan"})).await.expect(200);
    rename(&api, &mallory, &segment).await;
    let path = format!("/chat/v1/auth/{}/rooms", encoded_token(&mallory));
    let squat = api.post(&path, None, json!({"type": kind, "users": [segment]})).await.expect(409);
    assert_reveals_nothing(&squat, &["secret plan", &alice.username]);
    let not_a_room = format!("/chat/v1/auth/{}/rooms/{}", encoded_token(&alice), encode(&channel));
    api.get(&not_a_room, None).await.expect(404);
    api.post(&format!("{not_a_room}/messages"), None, text(1, "hi")).await.expect(404);

    // A name that changed hands: alice moves away, mallory takes her old name.
    let id = room_id(&api, &alice, &bob).await;
    let path = format!("/chat/v1/auth/{}/rooms/{}/messages", encoded_token(&alice), encode(&id));
    api.post(&path, None, text(1, "for bob only")).await.expect(200);
    let old_name = alice.username.clone();
    rename(&api, &alice, &format!("alice-moved-{}", short_id())).await;
    rename(&api, &mallory, &old_name).await;
    let taken = room(&api, &encoded_token(&mallory), &[&old_name, &bob.username]).await.expect(401);
    assert_eq!(taken["detail"], json!("you are not one of the room's users"), "{taken}");
    assert!(!taken.to_string().contains("for bob only"), "{taken}");
    let mismatch = room(&api, &encoded_token(&bob), &[&old_name, &bob.username]).await.expect(409);
    assert_reveals_nothing(&mismatch, &["for bob only"]);
    assert!(mismatch["message"].as_str().unwrap().contains("other members"), "{mismatch}");
    let system =
        json!({"type": "triominos/v1", "users": [old_name, bob.username], "timestamp": 5, "message": "HI"});
    let by_secret = api.post(&format!("/chat/v1/auth/{SECRET}/system-messages"), None, system).await;
    assert_reveals_nothing(&by_secret.expect(409), &["for bob only"]);
    let got = api.get(&format!("/chat/v1/auth/{}/rooms/{}", encoded_token(&bob), encode(&id)), None).await;
    let got = got.expect(200);
    assert_eq!(got["messages"].as_array().unwrap().len(), 1, "nothing posted: {got}");
    assert_eq!(got["users"].as_array().unwrap().len(), 2, "nobody added: {got}");
}

#[tokio::test(flavor = "multi_thread")]
async fn room_posts_over_the_payload_limit_are_413_over_the_depth_limit_400() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let id = room_id(&api, &alice, &bob).await;
    let path = format!("/chat/v1/auth/{}/rooms/{}/messages", encoded_token(&alice), encode(&id));
    let big = api.post(&path, None, text(1, &"x".repeat(70_000))).await.expect(413);
    assert!(big["message"].as_str().unwrap().contains("hatchat.max_payload_bytes"), "{big}");
    let got = api.get(&format!("/chat/v1/auth/{}/rooms/{}", encoded_token(&bob), encode(&id)), None).await;
    assert_eq!(got.expect(200)["messages"], json!([]), "nothing stored");
}

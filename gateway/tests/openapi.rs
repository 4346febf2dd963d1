//! The API description (GET /openapi.json) and the router agree. Both come from one table
//! (gateway/src/routes/mod.rs registers each handler with its `#[utoipa::path]`), so what is left
//! to check is the table's one exception and the document's own coherence: the chat routes, routed
//! by hand under the configured prefix, are the only `.route(…)` calls; every `{parameter}` of a
//! path is declared and every `$ref` resolves. Then every described route is requested from a real
//! gateway (directly and under /api) and must reach a handler, and every route answers as described.

mod support;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The chat routes' prefix as the document shows it (the `--chat-prefix` default).
const CHAT: &str = "/chat/v1/auth/{token}";

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn document() -> Value {
    serde_json::from_str(hatchat_gateway::routes::document()).unwrap()
}

/// (METHOD, path) for every operation in the document.
fn described_routes(document: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys().filter(|m| METHODS.contains(&m.as_str())) {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

#[test]
fn only_the_chat_routes_are_routed_outside_the_described_table() {
    let table = include_str!("../src/routes/mod.rs");
    let by_hand: Vec<&str> = table.lines().map(str::trim).filter(|l| l.starts_with(".route(")).collect();
    assert_eq!(by_hand.len(), 3, "{by_hand:?}");
    for line in by_hand {
        assert!(line.starts_with(".route(&format!(\"{chat}/"), "described by no `routes!`: {line}");
    }
    let described = described_routes(&document());
    for (method, path) in [
        ("POST", "/rooms"),
        ("GET", "/rooms/{roomId}"),
        ("POST", "/rooms/{roomId}/messages"),
        ("POST", "/system-messages"),
    ] {
        let route = (method.to_string(), format!("{CHAT}{path}"));
        assert!(described.contains(&route), "{route:?} is not described");
    }
    let chat: Vec<_> = described.iter().filter(|(_, p)| p.starts_with("/chat/")).collect();
    assert_eq!(chat.len(), 4, "the chat routes are all at the default prefix: {chat:?}");
}

#[test]
fn the_document_is_whole() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    let described = described_routes(&document);
    assert!(described.len() > 30, "{described:?}");
    for (method, path) in &described {
        let operation = &document["paths"][path][method.to_lowercase()];
        let name = format!("{method} {path}");
        assert!(operation["summary"].as_str().is_some_and(|s| !s.is_empty()), "{name} has no summary");
        assert!(operation["tags"].as_array().is_some_and(|t| !t.is_empty()), "{name} has no tag");
        let statuses: Vec<&String> = operation["responses"].as_object().unwrap().keys().collect();
        assert!(statuses.iter().any(|s| s.starts_with('2') || *s == "101"), "{name} answers no success");
        // Each `{parameter}` of the path is declared as a path parameter, and only those.
        let in_path: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        let declared: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(in_path, declared, "{name}: path parameters");
    }
    // Every `$ref` points at a component the document has.
    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference.strip_prefix('#').expect("a local $ref");
        assert!(document.pointer(pointer).is_some(), "{reference} does not resolve");
    }
}

/// The answer schemas refuse what the extension must not answer: a missing field, a wrong type, a
/// null where it never writes one, a value outside its set, an unknown field in an error.
#[test]
fn the_schemas_refuse_wrong_answers() {
    let valid = |method: &str, template: &str, status: u16, body: Value| {
        let schema = described::schema(method, template, status);
        jsonschema::validator_for(&schema).unwrap().is_valid(&body)
    };
    let user = "6f1c3a4e-0000-4000-8000-000000000000";
    let sent = json!({"channelId": "c", "seq": 7, "createdAt": "2026-12-02T06:05:43Z", "fromUserId": user});
    assert!(valid("POST", "/messages", 200, sent.clone()));
    assert!(valid("POST", "/messages", 200, json!({"seq": null, "createdAt": null}).merged(&sent)));
    let mut no_seq = sent.clone();
    no_seq.as_object_mut().unwrap().remove("seq");
    assert!(!valid("POST", "/messages", 200, no_seq));
    assert!(!valid("POST", "/messages", 200, json!({"seq": "7"}).merged(&sent)));
    let message = json!({"seq": 7, "createdAt": "t", "fromUserId": user, "username": null, "payload": null});
    assert!(valid("GET", "/messages", 200, json!([message.clone()])));
    assert!(!valid("GET", "/messages", 200, json!([json!({"event": "bogus"}).merged(&message)])));
    assert!(!valid("GET", "/messages", 200, json!([json!({"clientId": null}).merged(&message)])));
    assert!(!valid("GET", "/messages", 200, json!([json!({"reactions": {"x": 0}}).merged(&message)])));
    let channel = json!({"id": "c", "ownerId": user, "inviteModel": "self", "createdAt": "t",
        "maxMessages": null, "ttlSeconds": null, "expiresAt": null, "notifyMembers": false});
    assert!(valid("POST", "/channels", 200, channel.clone()));
    assert!(!valid("POST", "/channels", 200, json!({"notifyMembers": null}).merged(&channel)));
    let listed = json!({"lastSeq": 0, "readSeq": null, "unread": null}).merged(&channel);
    assert!(valid("GET", "/channels", 200, json!([listed.clone()])));
    assert!(!valid("GET", "/channels", 200, json!([channel])), "no read state");
    assert!(valid("DELETE", "/channels/{id}", 200, json!({"deleted": true})));
    assert!(!valid("DELETE", "/channels/{id}", 200, json!({"deleted": false})));
    assert!(valid("GET", "/users/{id}", 404, json!({"error": "not_found", "message": "no such user"})));
    assert!(!valid("GET", "/users/{id}", 404, json!({"error": "missing", "message": "no such user"})));
    assert!(!valid("GET", "/users/{id}", 404, json!({"error": "not_found", "sqlstate": "P0002"})));
}

trait Merged {
    /// `self`'s fields over `base`'s.
    fn merged(self, base: &Value) -> Value;
}

impl Merged for Value {
    fn merged(self, base: &Value) -> Value {
        let mut merged = base.clone();
        for (key, value) in self.as_object().unwrap() {
            merged[key] = value.clone();
        }
        merged
    }
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                refs.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_described_route_is_routed() {
    let gateway = Gateway::start().await;
    let served: Value =
        reqwest::get(format!("{}/openapi.json", gateway.base)).await.unwrap().json().await.unwrap();
    assert_eq!(served, document(), "GET /openapi.json serves the document");

    // Each described route reaches a handler, directly and under /api.
    let api = gateway.api();
    for (method, path) in &described_routes(&served) {
        for prefix in ["", "/api"] {
            let url = format!("{prefix}{}", concrete(path));
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let reply = probe(&api, method.clone(), &url).await;
            let unrouted =
                (reply.status == 404 && reply.body["message"] == "no such route") || reply.status == 405;
            assert!(
                !unrouted,
                "{method} {url} (described as {path}) is not routed: {} {}",
                reply.status, reply.body
            );
        }
    }
}

fn is_param(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

/// A described path with each parameter filled in (a uuid fits every kind of id).
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| if is_param(s) { "00000000-0000-4000-8000-000000000000" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Any answer, JSON or not (/metrics is text).
async fn probe(api: &Api, method: Method, path: &str) -> Reply {
    let response = api.http.request(method, format!("{}{path}", api.base)).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
}

/// The server secret of the admin and system-message routes (the rooms suite sets the same one).
const SECRET: &str = "test-server-secret-4b1d9f0e7c";

/// Checks `reply` against the document's schema for it and returns its body.
#[track_caller]
fn described(method: &str, template: &str, reply: Reply) -> Value {
    described::check(method, template, reply.status, &reply.body);
    reply.body
}

/// Every route answers as described at least once, with error answers of each kind.
#[tokio::test(flavor = "multi_thread")]
async fn answers_match_the_documented_schemas() {
    admin().await.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).await.unwrap();
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (mut alice, bob) = (api.register("alice").await, api.register("bob").await);
    let (get, post, patch, put, delete) = ("GET", "POST", "PATCH", "PUT", "DELETE");

    // Users.
    let carol = User {
        id: uuid::Uuid::new_v4(),
        username: format!("carol-{}", short_id()),
        key_name: "carol".into(),
    };
    let new_carol = serde_json::json!({"id": carol.id, "publicKey": fixture("carol.pub.pem"), "username": carol.username});
    described(post, "/users", api.post("/users", None, new_carol.clone()).await.expect_status(200));
    described(post, "/users", api.post("/users", None, new_carol).await.expect_status(409));
    let broken = api.post_raw("/users", None, Some("application/json"), b"{".to_vec()).await;
    described(post, "/users", broken.expect_status(400));
    let xml = api.post_raw("/users", None, Some("application/xml"), b"<user/>".to_vec()).await;
    described(post, "/users", xml.expect_status(415));
    let alice_path = format!("/users/{}", alice.id);
    described(get, "/users/{id}", api.get(&alice_path, None).await.expect_status(200));
    described(
        get,
        "/users/{id}",
        api.get(&format!("/users/{}", uuid::Uuid::new_v4()), None).await.expect_status(404),
    );
    described(get, "/users/{id}", api.get("/users/not-a-uuid", None).await.expect_status(400));
    alice.username = format!("alice-{}", short_id());
    let rename = serde_json::json!({"username": alice.username});
    let renamed = api.call(Method::PATCH, &alice_path, Some(&alice.token()), Some(rename.clone())).await;
    described(patch, "/users/{id}", renamed.expect_status(200));
    let anonymous = api.call(Method::PATCH, &alice_path, None, Some(rename.clone())).await;
    described(patch, "/users/{id}", anonymous.expect_status(401));
    let by_bob = api.call(Method::PATCH, &alice_path, Some(&bob.token()), Some(rename)).await;
    described(patch, "/users/{id}", by_bob.expect_status(403));

    // Channels and messages.
    let channel = format!("described-{}", short_id());
    let create = serde_json::json!({"id": channel, "inviteModel": "self"});
    described(
        post,
        "/channels",
        api.post("/channels", Some(&alice.token()), create.clone()).await.expect_status(200),
    );
    described(
        post,
        "/channels",
        api.post("/channels", Some(&alice.token()), create).await.expect_status(409),
    );
    described(get, "/channels", api.get("/channels", Some(&alice.token())).await.expect_status(200));
    let channel_path = format!("/channels/{channel}");
    described(get, "/channels/{id}", api.get(&channel_path, Some(&alice.token())).await.expect_status(200));
    described(
        get,
        "/channels/{id}",
        api.get("/channels/no-such-channel", Some(&alice.token())).await.expect_status(404),
    );
    let change = api
        .call(
            Method::PATCH,
            &channel_path,
            Some(&alice.token()),
            Some(serde_json::json!({"inviteModel": "self"})),
        )
        .await;
    described(patch, "/channels/{id}", change.expect_status(200));
    described(post, "/channels/invite", api.join(&bob, &channel).await.expect_status(200));
    let join = serde_json::json!({"channelId": channel, "userId": carol.id});
    described(post, "/invite", api.post("/invite", Some(&carol.token()), join).await.expect_status(200));
    let sent = api.send(&alice, &channel, serde_json::json!({"text": "hi"})).await.expect_status(200);
    let seq = described(post, "/messages", sent)["seq"].as_i64().unwrap();
    let big = serde_json::json!({"text": "x".repeat(70_000)});
    described(post, "/messages", api.send(&alice, &channel, big).await.expect_status(413));
    described(
        post,
        "/messages",
        api.send(&alice, "no-such-channel", serde_json::json!(1)).await.expect_status(404),
    );
    let read = api.poll(&bob, &channel, &format!("afterSeq={}", seq - 1)).await.expect_status(200);
    assert_eq!(described(get, "/messages", read).as_array().unwrap().len(), 1);
    described(get, "/messages", api.poll(&bob, &channel, "limit=x").await.expect_status(400));

    // Read positions and read receipts.
    let read = format!("{channel_path}/read");
    let marked = api.post(&read, Some(&bob.token()), json!({"seq": seq})).await;
    described(post, "/channels/{id}/read", marked.expect_status(200));
    let too_far = api.post(&read, Some(&bob.token()), json!({"seq": seq + 1000})).await;
    described(post, "/channels/{id}/read", too_far.expect_status(400));
    let receipts = format!("/users/{}/read-receipts", bob.id);
    let hidden = api.call(Method::PUT, &receipts, Some(&bob.token()), Some(json!({"enabled": false}))).await;
    described(put, "/users/{id}/read-receipts", hidden.expect_status(200));
    let not_hers =
        api.call(Method::PUT, &receipts, Some(&alice.token()), Some(json!({"enabled": true}))).await;
    described(put, "/users/{id}/read-receipts", not_hers.expect_status(403));
    let detail = described(
        get,
        "/channels/{id}",
        api.get(&channel_path, Some(&alice.token())).await.expect_status(200),
    );
    assert_eq!(detail["readSeq"], json!(seq), "her post moved her read position: {detail}");
    let as_secret =
        described(get, "/channels/{id}", api.get(&channel_path, Some(SECRET)).await.expect_status(200));
    assert_eq!(as_secret["readSeq"], Value::Null, "no member, no read position: {as_secret}");

    // Events: edit, react, unreact, delete; windows folded and not.
    let message = format!("{channel_path}/messages/{seq}");
    let (one, edit) = ("/channels/{id}/messages/{seq}", json!({"payload": {"text": "hi, edited"}}));
    let edited = api.call(Method::PATCH, &message, Some(&alice.token()), Some(edit.clone())).await;
    described(patch, one, edited.expect_status(200));
    let not_author = api.call(Method::PATCH, &message, Some(&bob.token()), Some(edit.clone())).await;
    described(patch, one, not_author.expect_status(403));
    let (reactions, thumbs) = (format!("{message}/reactions"), json!({"reaction": "👍"}));
    let react = "/channels/{id}/messages/{seq}/reactions";
    described(post, react, api.post(&reactions, Some(&bob.token()), thumbs.clone()).await.expect_status(200));
    described(post, react, api.post(&reactions, Some(&bob.token()), thumbs).await.expect_status(409));
    let folded = api.poll(&bob, &channel, &format!("afterSeq={}&fold=true", seq - 1)).await;
    let folded = described(get, "/messages", folded.expect_status(200));
    assert_eq!(folded[0]["reactions"], json!({"👍": 1}), "{folded}");
    let events = api.poll(&bob, &channel, &format!("afterSeq={seq}")).await.expect_status(200);
    let events = described(get, "/messages", events);
    assert_eq!(events[0]["event"], "edit", "{events}");
    let (unreact, thumb) =
        ("/channels/{id}/messages/{seq}/reactions/{reaction}", format!("{reactions}/{}", encode("👍")));
    described(
        delete,
        unreact,
        api.call(Method::DELETE, &thumb, Some(&bob.token()), None).await.expect_status(200),
    );
    described(
        delete,
        unreact,
        api.call(Method::DELETE, &thumb, Some(&bob.token()), None).await.expect_status(404),
    );
    described(
        delete,
        one,
        api.call(Method::DELETE, &message, Some(&bob.token()), None).await.expect_status(403),
    );
    described(
        delete,
        one,
        api.call(Method::DELETE, &message, Some(&alice.token()), None).await.expect_status(200),
    );
    let deleted = api.call(Method::PATCH, &message, Some(&alice.token()), Some(edit)).await;
    described(patch, one, deleted.expect_status(404));
    let once = json!({"channelId": channel, "payload": "lunch?", "clientId": "described-1"});
    let first = described(
        post,
        "/messages",
        api.post("/messages", Some(&alice.token()), once.clone()).await.expect_status(200),
    );
    let retry = described(
        post,
        "/messages",
        api.post("/messages", Some(&alice.token()), once).await.expect_status(200),
    );
    assert_eq!(first, retry, "a retry answers the first answer");

    // Streams: the JSON errors before a stream starts, the stream's media type, the upgrade.
    let (channel_events, events_path) = ("/channels/{id}/events", format!("{channel_path}/events"));
    described(get, channel_events, api.get(&events_path, None).await.expect_status(401));
    let missing = api.get("/channels/no-such-channel/events", Some(&alice.token())).await;
    described(get, channel_events, missing.expect_status(404));
    let url = format!("{}{events_path}?afterSeq={seq}&token={}", api.base, encode(&alice.token()));
    let stream = api.http.get(url).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let media = stream.headers()["content-type"].to_str().unwrap().to_string();
    assert!(described::response(get, channel_events, 200)["content"][&media].is_object(), "{media}");
    drop(stream);
    let notes = "/notifications/events";
    described(get, notes, api.get(notes, None).await.expect_status(401));
    described(get, notes, api.get(notes, Some(SECRET)).await.expect_status(403));
    described(
        get,
        notes,
        api.get("/notifications/events?after=-1", Some(&alice.token())).await.expect_status(400),
    );
    described(get, "/ws", api.get("/ws", None).await.expect_status(400));
    let mut upgrade =
        format!("{}/ws", gateway.base.replace("http://", "ws://")).into_client_request().unwrap();
    let offered = format!("hatchat.v1, hatchat.token.{}", URL_SAFE_NO_PAD.encode(alice.token()));
    upgrade.headers_mut().insert("Sec-WebSocket-Protocol", offered.parse().unwrap());
    let (_socket, upgraded) = tokio_tungstenite::connect_async(upgrade).await.unwrap();
    let protocol =
        &described::response(get, "/ws", upgraded.status().as_u16())["headers"]["Sec-WebSocket-Protocol"];
    assert_eq!(upgraded.headers()["sec-websocket-protocol"], protocol["schema"]["enum"][0].as_str().unwrap());
    let notes = api.get("/notifications?after=0&wait=0", Some(&alice.token())).await.expect_status(200);
    described(get, "/notifications", notes);
    let leave = api.post(&format!("{channel_path}/leave"), Some(&bob.token()), serde_json::json!({})).await;
    described(post, "/channels/{id}/leave", leave.expect_status(200));
    let not_member = api.get(&events_path, Some(&bob.token())).await;
    described(get, channel_events, not_member.expect_status(403));

    // Rooms.
    let token = encode(&seed_token(&alice.key_name, alice.id, 60));
    let users = serde_json::json!({"type": "described/v1", "users": [alice.username, bob.username]});
    let rooms = format!("/chat/v1/auth/{token}/rooms");
    let room = described(
        post,
        &format!("{CHAT}/rooms"),
        api.post(&rooms, None, users.clone()).await.expect_status(200),
    );
    let room = encode(room["id"].as_str().unwrap());
    let text = serde_json::json!({"timestamp": 1, "type": "text", "message": "hello"});
    let posted = api.post(&format!("{rooms}/{room}/messages"), None, text).await.expect_status(200);
    described(post, &format!("{CHAT}/rooms/{{roomId}}/messages"), posted);
    let seen = api.get(&format!("{rooms}/{room}"), None).await.expect_status(200);
    described(get, &format!("{CHAT}/rooms/{{roomId}}"), seen);
    let missing = api.get(&format!("{rooms}/no%2Fsuch%2Froom"), None).await.expect_status(404);
    described(get, &format!("{CHAT}/rooms/{{roomId}}"), missing);
    let system = serde_json::json!({"type": "described/v1", "users": [alice.username, bob.username], "timestamp": 2, "message": "GAME_STARTED"});
    let event = api.post(&format!("/chat/v1/auth/{SECRET}/system-messages"), None, system.clone()).await;
    described(post, &format!("{CHAT}/system-messages"), event.expect_status(200));
    let not_secret = api.post(&format!("/chat/v1/auth/{token}/system-messages"), None, system).await;
    described(post, &format!("{CHAT}/system-messages"), not_secret.expect_status(401));

    // Moderation.
    let disabled = api
        .call(
            Method::PUT,
            &format!("/users/{}/chat-disabled", carol.id),
            Some(&carol.token()),
            Some(serde_json::json!({"disabled": true})),
        )
        .await;
    described(put, "/users/{id}/chat-disabled", disabled.expect_status(200));
    let blocks = format!("/users/{}/blocks", alice.id);
    let block = serde_json::json!({"userId": bob.id});
    described(
        post,
        "/users/{id}/blocks",
        api.post(&blocks, Some(&alice.token()), block).await.expect_status(200),
    );
    described(get, "/users/{id}/blocks", api.get(&blocks, Some(&alice.token())).await.expect_status(200));
    let unblock = api.call(Method::DELETE, &format!("{blocks}/{}", bob.id), Some(&alice.token()), None).await;
    described(delete, "/users/{id}/blocks/{blocked}", unblock.expect_status(200));
    let ban = format!("/admin/users/{}/ban", bob.id);
    described(
        post,
        "/admin/users/{id}/ban",
        api.post(&ban, Some(SECRET), serde_json::json!({"until": "2099-01-01T00:00:00Z"}))
            .await
            .expect_status(200),
    );
    described(
        post,
        "/admin/users/{id}/ban",
        api.post(&ban, Some(&alice.token()), serde_json::json!({"until": "2099-01-01T00:00:00Z"}))
            .await
            .expect_status(403),
    );
    described(
        delete,
        "/admin/users/{id}/ban",
        api.call(Method::DELETE, &ban, Some(SECRET), None).await.expect_status(200),
    );
    let mute = format!("/admin/users/{}/mute", bob.id);
    let muted = api.post(&mute, Some(SECRET), serde_json::json!({"muted": false})).await;
    described(post, "/admin/users/{id}/mute", muted.expect_status(200));

    // Deletions, and the operations routes.
    let gone = api.call(Method::DELETE, &channel_path, Some(&alice.token()), None).await;
    described(delete, "/channels/{id}", gone.expect_status(200));
    let carol_gone =
        api.call(Method::DELETE, &format!("/users/{}", carol.id), Some(&carol.token()), None).await;
    described(delete, "/users/{id}", carol_gone.expect_status(200));
    described(get, "/ping", api.get("/ping", None).await.expect_status(200));
    described(get, "/health", api.get("/health", None).await.expect_status(200));
    described(get, "/openapi.json", api.get("/openapi.json", None).await.expect_status(200));
}

/// A reply with the status the test expects (the body is then checked against the document).
trait ExpectStatus {
    fn expect_status(self, status: u16) -> Reply;
}

impl ExpectStatus for Reply {
    #[track_caller]
    fn expect_status(self, status: u16) -> Reply {
        assert_eq!(self.status, status, "body: {}", self.body);
        self
    }
}

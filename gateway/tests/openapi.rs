//! The API description (GET /openapi.json) and the router agree: every (method, path) the router
//! serves is in the document, and every one in the document reaches a handler. A failure names each
//! (method, path) and the side it is missing from.
//!
//! axum cannot list a router's routes, so the router's side is read from the `.route(…)` calls in
//! gateway/src (the one table in routes/mod.rs, and any route group that adds its own). Once the
//! two lists agree, every described route is requested from a real gateway (directly and under
//! /api) and must reach a handler, so a reading that drifted from the router still fails.

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

type Route = (String, String);

#[tokio::test(flavor = "multi_thread")]
async fn every_route_is_described_and_every_description_is_routed() {
    let gateway = Gateway::start().await;
    let document: Value =
        reqwest::get(format!("{}/openapi.json", gateway.base)).await.unwrap().json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let described = described_routes(&document);
    let routed = routed_routes();
    assert!(routed.len() > 20, "the source scan found the route table: {routed:?}");

    let undescribed: Vec<String> =
        routed.iter().filter(|r| !described.iter().any(|d| matches(r, d))).map(show).collect();
    let unrouted: Vec<String> =
        described.iter().filter(|d| !routed.iter().any(|r| matches(r, d))).map(show).collect();
    assert!(
        undescribed.is_empty() && unrouted.is_empty(),
        "in the router but not in gateway/openapi.json: {undescribed:?}; \
         in gateway/openapi.json but not in the router: {unrouted:?}"
    );

    // Each described route reaches a handler, directly and under /api.
    let api = gateway.api();
    for (method, path) in &described {
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

/// (METHOD, path) for every operation in the document.
fn described_routes(document: &Value) -> BTreeSet<Route> {
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&method.as_str()) {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// (METHOD, path) for every `.route(PATH, METHODS)` in the gateway's source whose path is a
/// literal (or the chat prefix's `format!`); the web client's files are served apart.
fn routed_routes() -> BTreeSet<Route> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut files: Vec<_> =
        std::fs::read_dir(format!("{dir}/routes")).unwrap().map(|e| e.unwrap().path()).collect();
    files.push(format!("{dir}/app.rs").into());
    let mut routes = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        for call in route_calls(&source) {
            if let Some((path, methods)) = read_route(&call) {
                routes.extend(methods.into_iter().map(|m| (m, path.clone())));
            }
        }
    }
    routes
}

/// The argument text of each `.route(…)` call (parentheses balanced, strings skipped).
fn route_calls(source: &str) -> Vec<String> {
    let mut calls = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        let args = &rest[at + ".route(".len()..];
        let (mut depth, mut in_string, mut end) = (1, false, args.len());
        let mut chars = args.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' if in_string => {
                    chars.next();
                }
                '"' => in_string = !in_string,
                '(' if !in_string => depth += 1,
                ')' if !in_string => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        calls.push(args[..end].to_string());
        rest = &args[end..];
    }
    calls
}

/// The path and the methods of one `.route(…)` call's arguments.
fn read_route(args: &str) -> Option<(String, Vec<String>)> {
    let args = args.trim_start();
    let (path, methods) = if let Some(rest) = args.strip_prefix('"') {
        let end = rest.find('"')?;
        (rest[..end].to_string(), &rest[end..])
    } else if let Some(rest) = args.strip_prefix("&format!(\"{chat}") {
        let end = rest.find('"')?;
        (format!("{CHAT}{}", rest[..end].replace("{{", "{").replace("}}", "}")), &rest[end..])
    } else {
        return None;
    };
    let mut found = Vec::new();
    for method in ["get", "post", "put", "patch", "delete"] {
        let call = format!("{method}(");
        // A whole word: `get(`, `.get(`, `routing::delete(`, not `forget(`.
        let whole_word = |(i, _): &(usize, &str)| {
            *i == 0 || !methods.as_bytes()[i - 1].is_ascii_alphanumeric() && methods.as_bytes()[i - 1] != b'_'
        };
        if methods.match_indices(&call).any(|m| whole_word(&m)) {
            found.push(method.to_uppercase());
        }
    }
    Some((path, found))
}

/// Whether router route `r` serves described route `d`: same method, same segments, any parameter
/// names; a router wildcard (`{*room}`) stands for one or more segments starting with a parameter.
fn matches(r: &Route, d: &Route) -> bool {
    if r.0 != d.0 {
        return false;
    }
    let (rs, ds): (Vec<&str>, Vec<&str>) = (r.1.split('/').collect(), d.1.split('/').collect());
    for (i, segment) in rs.iter().enumerate() {
        if segment.starts_with("{*") {
            return ds.len() > i && is_param(ds[i]);
        }
        match ds.get(i) {
            Some(other) if other == segment || (is_param(segment) && is_param(other)) => {}
            _ => return false,
        }
    }
    rs.len() == ds.len()
}

fn is_param(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

fn show(route: &Route) -> String {
    format!("{} {}", route.0, route.1)
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

#[test]
fn the_source_scan_reads_paths_and_methods() {
    let source = r#"Router::new()
        .route("/users/{id}", get(users::get).patch(users::update).delete(users::delete))
        .route("/users/{id}/blocks/{blocked}", axum::routing::delete(moderation::unblock))
        .route(&format!("{chat}/rooms/{{*room}}"), get(rooms::get).post(rooms::post_message))
        .route(asset.path, get(move || serve()))"#;
    let routes: Vec<_> = route_calls(source).iter().filter_map(|c| read_route(c)).collect();
    assert_eq!(
        routes,
        [
            ("/users/{id}".into(), vec!["GET".into(), "PATCH".into(), "DELETE".into()]),
            ("/users/{id}/blocks/{blocked}".into(), vec!["DELETE".into()]),
            (format!("{CHAT}/rooms/{{*room}}"), vec!["GET".into(), "POST".into()]),
        ]
    );
    let room = |m: &str, p: &str| (m.to_string(), format!("{CHAT}{p}"));
    assert!(matches(&room("POST", "/rooms/{*room}"), &room("POST", "/rooms/{roomId}/messages")));
    assert!(matches(&room("GET", "/rooms/{*room}"), &room("GET", "/rooms/{roomId}")));
    assert!(!matches(&room("GET", "/rooms/{*room}"), &room("GET", "/rooms")));
    assert!(!matches(&room("GET", "/rooms"), &room("POST", "/rooms")));
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
    assert_eq!(upgraded.headers()["sec-websocket-protocol"], protocol["schema"]["const"].as_str().unwrap());
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

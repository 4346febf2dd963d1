//! The trust boundary over HTTP: every route of the API (as GET /openapi.json describes it,
//! which the openapi suite holds equal to the router) has its row here, saying what it is for the
//! boundary; a new route fails `every_route_has_its_row` until it gets one. The routes that write a
//! channel's messages are then tried on a room by each kind of caller: only the room routes write
//! there (409 for the others), strangers and banned users are refused, erasure still works. The
//! SQL functions behind them have their own matrix (tests/boundary_matrix.rs).

mod support;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "test-server-secret-4b1d9f0e7c";

/// What a route is, for the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Writes through this SQL function (its row in the SQL matrix decides who may).
    Writes(&'static str),
    /// Writes a channel's messages: tried on a room below.
    WritesMessages(&'static str),
    /// Only reads, through this SQL function.
    Reads(&'static str),
    /// A live stream or socket: counted against its user, bounded in bytes (tests/memory.rs).
    Live,
    /// About the gateway itself; reads no user's data.
    Gateway,
}

/// Every (method, path template) of the API description.
const ROUTES: &[(&str, &str, Kind)] = &[
    ("POST", "/users", Kind::Writes("register_user")),
    ("GET", "/users/{id}", Kind::Reads("get_user")),
    ("PATCH", "/users/{id}", Kind::Writes("update_user")),
    ("DELETE", "/users/{id}", Kind::Writes("delete_user")),
    ("PUT", "/users/{id}/chat-disabled", Kind::Writes("set_chat_disabled")),
    ("PUT", "/users/{id}/read-receipts", Kind::Writes("set_read_receipts")),
    ("PUT", "/users/{id}/presence", Kind::Writes("set_presence_hidden")),
    ("GET", "/users/{id}/blocks", Kind::Reads("list_blocked")),
    ("POST", "/users/{id}/blocks", Kind::Writes("block_user")),
    ("DELETE", "/users/{id}/blocks/{blocked}", Kind::Writes("unblock_user")),
    ("POST", "/admin/users/{id}/ban", Kind::Writes("ban_user")),
    ("DELETE", "/admin/users/{id}/ban", Kind::Writes("unban_user")),
    ("POST", "/admin/users/{id}/mute", Kind::Writes("mute_user")),
    ("POST", "/channels", Kind::Writes("create_channel")),
    ("GET", "/channels", Kind::Reads("list_channels")),
    ("GET", "/channels/{id}", Kind::Reads("get_channel")),
    ("PATCH", "/channels/{id}", Kind::Writes("update_channel")),
    ("DELETE", "/channels/{id}", Kind::Writes("delete_channel")),
    ("POST", "/invite", Kind::Writes("invite")),
    ("POST", "/channels/invite", Kind::Writes("invite")),
    ("POST", "/channels/{id}/leave", Kind::Writes("leave_channel")),
    ("POST", "/channels/{id}/read", Kind::Writes("mark_read")),
    ("GET", "/channels/{id}/presence", Kind::Reads("channel_presence")),
    // Writes no message: an ephemeral row that streams show and nothing keeps.
    ("POST", "/channels/{id}/typing", Kind::Writes("typing")),
    ("PATCH", "/channels/{id}/messages/{seq}", Kind::WritesMessages("edit_message")),
    ("DELETE", "/channels/{id}/messages/{seq}", Kind::WritesMessages("delete_message")),
    ("POST", "/channels/{id}/messages/{seq}/reactions", Kind::WritesMessages("react")),
    ("DELETE", "/channels/{id}/messages/{seq}/reactions/{reaction}", Kind::WritesMessages("unreact")),
    ("POST", "/messages", Kind::WritesMessages("send_message_text")),
    ("GET", "/messages", Kind::Reads("get_messages")),
    ("GET", "/notifications", Kind::Reads("get_notifications")),
    ("GET", "/channels/{id}/events", Kind::Live),
    ("GET", "/notifications/events", Kind::Live),
    ("GET", "/ws", Kind::Live),
    ("POST", "/chat/v1/auth/{token}/rooms", Kind::Writes("create_room")),
    ("GET", "/chat/v1/auth/{token}/rooms/{roomId}", Kind::Reads("get_room")),
    ("POST", "/chat/v1/auth/{token}/rooms/{roomId}/messages", Kind::WritesMessages("post_room_message")),
    ("POST", "/chat/v1/auth/{token}/system-messages", Kind::WritesMessages("post_system_message")),
    ("GET", "/ping", Kind::Gateway),
    ("GET", "/health", Kind::Gateway),
    ("GET", "/metrics", Kind::Gateway),
    ("GET", "/openapi.json", Kind::Gateway),
];

#[test]
fn every_route_has_its_row() {
    let document: Value = serde_json::from_str(hatchat_gateway::routes::document()).unwrap();
    let described: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, operations)| {
            operations.as_object().unwrap().keys().map(move |method| (method.to_uppercase(), path.clone()))
        })
        .filter(|(method, _)| ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()))
        .collect();
    let rows: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(method, path, _)| (method.to_string(), path.to_string())).collect();
    let missing: Vec<_> = described.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&described).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "routes without a row here (say what each is for the boundary): {missing:?}; rows for routes \
         that no longer exist: {stale:?}"
    );
    assert_eq!(rows.len(), ROUTES.len(), "one row per route");
}

/// Alice and Mallory in a room with one post of Alice's (seq 1), and Carol, who is not in it.
struct Room {
    alice: User,
    mallory: User,
    carol: User,
    id: String,
}

async fn a_room(api: &Api) -> Room {
    let (alice, mallory, carol) =
        (api.register("alice").await, api.register("bob").await, api.register("carol").await);
    let db = admin().await;
    db.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).await.unwrap();
    let users = vec![alice.username.clone(), mallory.username.clone()];
    let room: Value = db
        .query_one(
            "SELECT hatchat.create_room($1, $2, $3)::text::json",
            &[&alice.token(), &format!("game-{}", short_id()), &users],
        )
        .await
        .unwrap()
        .get(0);
    let id = room["id"].as_str().unwrap().to_string();
    let post = json!({"timestamp": 1, "type": "text", "message": "your move"});
    db.execute(
        "SELECT hatchat.post_room_message($1, $2, $3::text::jsonb)",
        &[&alice.token(), &id, &post.to_string()],
    )
    .await
    .unwrap();
    Room { alice, mallory, carol, id }
}

/// What each kind of caller may do with a room through the plain message routes: a member or the
/// server secret is told to use the room routes (409); a stranger is refused (403); so is a
/// banned member (403); and the room is unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn the_plain_message_routes_never_write_to_a_room() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let room = a_room(&api).await;
    let forged = json!({"from": "$$", "type": "event", "message": "GAME_OVER: mallory wins"});
    let at = |path: &str| path.replace("{id}", &encode(&room.id)).replace("{seq}", "1");
    let before = api
        .get(&format!("/chat/v1/auth/{}/rooms/{}", encode(&room.alice.token()), encode(&room.id)), None)
        .await
        .expect(200);

    type Call<'a> = (&'a str, String, Option<Value>);
    let calls: Vec<Call> = vec![
        ("POST", "/messages".to_string(), Some(json!({"channelId": room.id, "payload": forged}))),
        ("PATCH", at("/channels/{id}/messages/{seq}"), Some(json!({"payload": forged}))),
        ("POST", at("/channels/{id}/messages/{seq}/reactions"), Some(json!({"reaction": "👑"}))),
        ("DELETE", at("/channels/{id}/messages/{seq}/reactions/%F0%9F%91%91"), None),
    ];
    let mut wrong = Vec::new();
    for (method, path, body) in &calls {
        let method_of = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for (caller, token, expected) in [
            ("member", room.mallory.token(), 409),
            ("stranger", room.carol.token(), 403),
            ("the secret", SECRET.to_string(), if path.contains("reactions") { 403 } else { 409 }),
        ] {
            let reply = api.call(method_of.clone(), path, Some(&token), body.clone()).await;
            if reply.status != expected {
                wrong.push(format!(
                    "{method} {path} by {caller}: {} {}, expected {expected}",
                    reply.status, reply.body
                ));
            }
        }
    }
    // A banned member: every one of them refused as a write, before anything else.
    admin()
        .await
        .execute(
            "SELECT hatchat.ban_user(NULL, $1::text::uuid, now() + interval '1 hour')",
            &[&room.mallory.id.to_string()],
        )
        .await
        .unwrap();
    for (method, path, body) in &calls {
        let method_of = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let reply = api.call(method_of, path, Some(&room.mallory.token()), body.clone()).await;
        if reply.status != 403 {
            wrong.push(format!(
                "{method} {path} by a banned member: {} {}, expected 403",
                reply.status, reply.body
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The WebSocket's send frame is no way in either.
    let url = format!("{}/ws", gateway.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(room.alice.token());
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", format!("hatchat.v1, hatchat.token.{encoded}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let send = json!({"type": "send", "ref": 1, "channelId": room.id, "payload": forged});
    socket.send(Message::Text(send.to_string().into())).await.unwrap();
    let answer = loop {
        let frame =
            tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["type"] != "ready" {
                break value;
            }
        }
    };
    assert_eq!((&answer["type"], &answer["status"]), (&json!("error"), &json!(409)), "{answer}");

    let after = api
        .get(&format!("/chat/v1/auth/{}/rooms/{}", encode(&room.alice.token()), encode(&room.id)), None)
        .await
        .expect(200);
    assert_eq!(after["messages"], before["messages"], "nothing reached the room");
    // Erasure is never withheld: the author deletes her post through the plain route.
    api.call(reqwest::Method::DELETE, &at("/channels/{id}/messages/{seq}"), Some(&room.alice.token()), None)
        .await
        .expect(200);
    let erased = api
        .get(&format!("/chat/v1/auth/{}/rooms/{}", encode(&room.alice.token()), encode(&room.id)), None)
        .await
        .expect(200);
    assert_eq!(erased["messages"], json!([]), "{erased}");
}

//! Every route's success and error statuses through a real gateway and a real HTTP client. The
//! status *and* the JSON error body are checked, and failed calls are shown to change nothing.

mod support;
use reqwest::Method;
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn ping_health_unknown_routes_and_methods() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    assert_eq!(api.get("/ping", None).await.expect(200), json!({"pong": 1}));
    let health = api.get("/health", None).await.expect(200);
    assert_eq!((health["database"].clone(), health["listener"].clone()), (json!("up"), json!("up")));
    api.get("/no/such/route", None).await.expect(404);
    api.call(Method::PUT, "/users", None, None).await.expect(405);
    assert_eq!(api.get("/api/ping", None).await.expect(200), json!({"pong": 1}), "also under /api");
}

#[tokio::test(flavor = "multi_thread")]
async fn users_routes() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;

    // POST /users
    let again = json!({"id": alice.id, "publicKey": fixture("alice.pub.pem"), "username": "fresh-name"});
    api.post("/users", None, again).await.expect(409);
    let taken =
        json!({"id": Uuid::new_v4(), "publicKey": fixture("alice.pub.pem"), "username": alice.username});
    api.post("/users", None, taken).await.expect(409);
    let bad_name = json!({"id": Uuid::new_v4(), "publicKey": fixture("alice.pub.pem"), "username": ""});
    api.post("/users", None, bad_name).await.expect(400);
    let bad_id = json!({"id": "not-a-uuid", "publicKey": fixture("alice.pub.pem"), "username": "x-y-z"});
    api.post("/users", None, bad_id).await.expect(400);
    let small_key = json!({"id": Uuid::new_v4(), "publicKey": fixture("small.pub.pem"), "username": "smol"});
    api.post("/users", None, small_key).await.expect(400);
    let missing = api.post("/users", None, json!({"username": "nobody"})).await.expect(400);
    assert!(missing["message"].as_str().unwrap().contains("required"), "{missing}");
    let wrong_type = json!({"id": 42, "publicKey": "k", "username": "n"});
    api.post("/users", None, wrong_type).await.expect(400);

    // GET /users/:id
    let seen = api.get(&format!("/users/{}", alice.id), None).await.expect(200);
    assert_eq!(seen["username"], json!(alice.username));
    api.get(&format!("/users/{}", Uuid::new_v4()), None).await.expect(404);
    api.get("/users/not-a-uuid", None).await.expect(400);

    // PATCH /users/:id
    let path = format!("/users/{}", alice.id);
    let new_name = format!("alice2-{}", short_id());
    let renamed =
        api.call(Method::PATCH, &path, Some(&alice.token()), Some(json!({"username": new_name}))).await;
    assert_eq!(renamed.expect(200)["username"], json!(new_name));
    let by_bob = api.call(Method::PATCH, &path, Some(&bob.token()), Some(json!({"username": "mine"}))).await;
    by_bob.expect(403);
    api.call(Method::PATCH, &path, None, Some(json!({"username": "anon"}))).await.expect(401);
    let clash =
        api.call(Method::PATCH, &path, Some(&alice.token()), Some(json!({"username": bob.username}))).await;
    clash.expect(409);
    assert_eq!(api.get(&path, None).await.expect(200)["username"], json!(new_name));

    // DELETE /users/:id
    let bob_path = format!("/users/{}", bob.id);
    api.call(Method::DELETE, &bob_path, Some(&alice.token()), None).await.expect(403);
    api.call(Method::DELETE, &bob_path, Some("Bearer garbage"), None).await.expect(401);
    api.call(Method::DELETE, &bob_path, Some(&bob.token()), None).await.expect(200);
    api.get(&bob_path, None).await.expect(404);
}

#[tokio::test(flavor = "multi_thread")]
async fn channel_routes() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let carol = api.register("carol").await;
    let (a, b, c) = (alice.token(), bob.token(), carol.token());

    // POST /channels
    let id = format!("room-{}", short_id());
    let created = api.post("/channels", Some(&a), json!({"id": id})).await.expect(200);
    assert_eq!(
        (created["ownerId"].clone(), created["inviteModel"].clone()),
        (json!(alice.id), json!("owner"))
    );
    api.post("/channels", Some(&a), json!({"id": id})).await.expect(409);
    api.post("/channels", Some(&a), json!({"id": ""})).await.expect(400);
    api.post("/channels", Some(&a), json!({"id": "x", "inviteModel": "anyone"})).await.expect(400);
    api.post("/channels", None, json!({"id": "x"})).await.expect(401);

    // Invite models through both invite routes.
    let path = format!("/channels/{}", encode(&id));
    api.post("/invite", Some(&b), json!({"channelId": id, "userId": bob.id})).await.expect(403);
    let invited = api.post("/invite", Some(&a), json!({"channelId": id, "userId": bob.id})).await.expect(200);
    assert_eq!(invited["joined"], json!(true));
    api.post("/channels/invite", Some(&b), json!({"channelId": id, "userId": carol.id})).await.expect(403);
    let missing = json!({"channelId": "no-such-channel", "userId": bob.id});
    api.post("/channels/invite", Some(&a), missing).await.expect(404);
    api.post("/channels/invite", Some(&a), json!({"channelId": id, "userId": "nope"})).await.expect(400);
    api.call(Method::PATCH, &path, Some(&b), Some(json!({"inviteModel": "self"}))).await.expect(403);
    api.call(Method::PATCH, &path, Some(&a), Some(json!({"inviteModel": "all"}))).await.expect(400);
    let changed = api.call(Method::PATCH, &path, Some(&a), Some(json!({"inviteModel": "self"}))).await;
    assert_eq!(changed.expect(200)["inviteModel"], json!("self"));
    api.join(&carol, &id).await.expect(200);

    // GET /channels/:id and /channels
    let outsider = api.register("dave").await;
    let seen = api.get(&path, Some(&c)).await.expect(200);
    assert_eq!(seen["members"].as_array().unwrap().len(), 3);
    api.get(&path, Some(&outsider.token())).await.expect(403);
    api.get("/channels/no-such-channel", Some(&a)).await.expect(404);
    let listed = api.get("/channels", Some(&b)).await.expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    api.get("/channels", None).await.expect(401);

    // POST /channels/:id/leave
    api.post(&format!("{path}/leave"), Some(&a), json!({})).await.expect(403);
    api.post(&format!("{path}/leave"), Some(&outsider.token()), json!({})).await.expect(403);
    assert_eq!(
        api.post(&format!("{path}/leave"), Some(&c), json!({})).await.expect(200),
        json!({"left": true})
    );
    api.get(&path, Some(&c)).await.expect(403);

    // DELETE /channels/:id
    api.call(Method::DELETE, &path, Some(&b), None).await.expect(403);
    api.call(Method::DELETE, &path, Some(&a), None).await.expect(200);
    api.get(&path, Some(&a)).await.expect(404);
    api.call(Method::DELETE, &path, Some(&a), None).await.expect(404);
}

#[tokio::test(flavor = "multi_thread")]
async fn channel_ids_with_slashes_and_unicode_route_correctly() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let id = format!("games/v1/é €/{}", short_id());
    api.post("/channels", Some(&alice.token()), json!({"id": id})).await.expect(200);
    let seen = api.get(&format!("/channels/{}", encode(&id)), Some(&alice.token())).await.expect(200);
    assert_eq!(seen["id"], json!(id));
}

#[tokio::test(flavor = "multi_thread")]
async fn message_routes() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let stranger = api.register("carol").await;
    let channel = api.create_channel(&alice, "owner").await;

    let payload =
        r#"{"channelId":"CH","payload":{"n":12345678901234567890123,"t":"héllo"}}"#.replace("CH", &channel);
    let sent =
        api.post_raw("/messages", Some(&alice.token()), Some("application/json"), payload.into()).await;
    let sent = sent.expect(200);
    assert_eq!(sent["seq"], json!(2));
    let raw = api
        .http
        .get(format!("{}/messages?channelId={}&afterSeq=1&wait=0", api.base, encode(&channel)))
        .header("Authorization", alice.token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains("12345678901234567890123"), "wide numbers pass through exactly: {raw}");

    api.send(&stranger, &channel, json!("hi")).await.expect(403);
    api.send(&alice, "no-such-channel", json!("hi")).await.expect(404);
    api.send(&User { key_name: "bob".into(), ..alice.clone() }, &channel, json!(1)).await.expect(401);
    api.post("/messages", Some(&alice.token()), json!({"channelId": channel})).await.expect(400);
    let null_payload = json!({"channelId": channel, "payload": null});
    let stored = api.post("/messages", Some(&alice.token()), null_payload).await.expect(200);
    assert_eq!(stored["seq"], json!(3), "JSON null is a payload like any other");
    let big = json!({"channelId": channel, "payload": "x".repeat(70_000)});
    api.post("/messages", Some(&alice.token()), big).await.expect(413);

    let page = api.poll(&alice, &channel, "wait=0").await.expect(200);
    assert_eq!(seqs(&page), vec![1, 2, 3]);
    api.poll(&alice, &channel, "since=yesterday&wait=0").await.expect(400);
    api.poll(&alice, &channel, "limit=0&wait=0").await.expect(400);
    api.poll(&alice, &channel, "limit=abc&wait=0").await.expect(400);
    api.poll(&alice, &channel, "wait=-1").await.expect(400);
    api.poll(&stranger, &channel, "wait=0").await.expect(403);
    api.poll(&alice, "no-such-channel", "wait=0").await.expect(404);
    api.get(&format!("/messages?channelId={channel}&wait=0"), None).await.expect(401);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_are_json_or_clearly_refused() {
    let gateway = Gateway::start_with(&[("HATCHAT_MAX_BODY_BYTES", "4096")]).await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let channel = api.create_channel(&alice, "owner").await;
    let token = alice.token();
    let body = format!(r#"{{"channelId":"{channel}","payload":"plain"}}"#);

    // The original web client posts without a type (fetch then says text/plain).
    for content_type in [Some("application/json"), Some("text/plain;charset=UTF-8"), None] {
        api.post_raw("/messages", Some(&token), content_type, body.clone().into()).await.expect(200);
    }
    for content_type in ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let refused = api.post_raw("/messages", Some(&token), Some(content_type), body.clone().into()).await;
        refused.expect(415);
    }
    let malformed =
        api.post_raw("/messages", Some(&token), Some("application/json"), b"{oops".to_vec()).await;
    malformed.expect(400);
    let empty = api.post_raw("/messages", Some(&token), Some("application/json"), Vec::new()).await;
    empty.expect(400);
    let huge = format!(r#"{{"channelId":"{channel}","payload":"{}"}}"#, "x".repeat(5000));
    api.post_raw("/messages", Some(&token), Some("application/json"), huge.into()).await.expect(413);

    let stored: Value = api.poll(&alice, &channel, "wait=0").await.expect(200);
    assert_eq!(seqs(&stored), vec![1, 2, 3, 4], "only the accepted sends were stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn post_users_follows_the_registration_policy() {
    const SECRET: &str = "test-server-secret-4b1d9f0e7c";
    admin().await.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).await.unwrap();
    // This gateway's sessions run under `secret` (a superuser's login may set it at connect, as an
    // operator sets it for the database).
    let url = format!("{}?options=-c%20hatchat.registration%3Dsecret", database_url());
    let gateway = Gateway::start_with(&[("DATABASE_URL", url.as_str())]).await;
    let api = gateway.api();
    let new_user = || {
        let id = Uuid::new_v4();
        (
            id,
            json!({"id": id, "publicKey": fixture("alice.pub.pem"), "username": format!("r-{}", short_id())}),
        )
    };
    let (id, body) = new_user();
    let refused = api.post("/users", None, body.clone()).await.expect(403);
    assert!(refused["message"].as_str().unwrap().contains("server secret"), "{refused}");
    api.get(&format!("/users/{id}"), None).await.expect(404);
    // A user (registered over SQL, where this session's policy is open) is no server secret.
    let alice =
        User { id: Uuid::new_v4(), username: format!("alice-{}", short_id()), key_name: "alice".into() };
    admin()
        .await
        .execute(
            "SELECT hatchat.register_user($1::text::uuid, $2, $3)",
            &[&alice.id.to_string(), &fixture("alice.pub.pem"), &alice.username],
        )
        .await
        .unwrap();
    let as_a_user = api.post("/users", Some(&alice.token()), body.clone()).await;
    assert_eq!(as_a_user.status, 403, "a user's token is no secret: {}", as_a_user.body);
    let registered = api.post("/users", Some(SECRET), body).await.expect(200);
    assert_eq!(registered["id"], json!(id));
    api.get(&format!("/users/{id}"), None).await.expect(200);
}

//! The wire contract, against the extension as it runs: the gateway's own decoder reads the
//! announcements a live database really makes (a plain-SQL send, a join, a room post that creates
//! notifications, a batch) and finds the keys of what changed; the gateway's reader reads a batch's
//! answers, a failed item's error included. If either side changes a shape alone, this fails.

mod support;
use futures_util::StreamExt;
use hatchat_gateway::live::hub::{decode, Audience, Topic};
use hatchat_wire::api;
use hatchat_wire::api::{Item, ItemError};
use hatchat_wire::wake::{Secret, NOTIFY_CHANNEL};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use uuid::Uuid;

/// The database's wake-up secret, as the gateway reads it at start.
async fn secret(db: &Client) -> Secret {
    let hex: String = db.query_one("SELECT hatchat.wake_secret()", &[]).await.unwrap().get(0);
    Secret::from_hex(&hex).expect("32 hex digits")
}

/// A connection that LISTENs on the announcements' channel, and the payloads it hears.
async fn listener() -> (Client, mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = tokio_postgres::connect(&database_url(), NoTls).await.unwrap();
    let (heard, payloads) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = heard.send(n.payload().to_string());
            }
        }
    });
    client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")).await.unwrap();
    (client, payloads)
}

/// Reads announcements until they have named every topic in `expected` (other tests announce too,
/// so anything else is skipped); every payload heard must decode, and name topics.
async fn hear_all(payloads: &mut mpsc::UnboundedReceiver<String>, expected: &[Topic]) {
    let mut missing: Vec<Topic> = expected.to_vec();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !missing.is_empty() {
        let payload = tokio::time::timeout_at(deadline, payloads.recv())
            .await
            .unwrap_or_else(|_| panic!("no announcement named {missing:?}"))
            .expect("the listener is connected");
        match decode(&payload) {
            Ok(Audience::Topics(topics)) => missing.retain(|topic| !topics.contains(topic)),
            other => panic!("the gateway cannot read {payload:?} as topics: {other:?}"),
        }
    }
}

/// Registers a user through SQL (no gateway involved).
async fn register(db: &Client, key_name: &str) -> User {
    let (id, username) = (Uuid::new_v4(), format!("{key_name}-{}", short_id()));
    let key = fixture(&format!("{key_name}.pub.pem"));
    db.execute("SELECT hatchat.register_user($1::text::uuid, $2, $3)", &[&id.to_string(), &key, &username])
        .await
        .unwrap();
    User { id, username, key_name: key_name.into() }
}

async fn call(db: &Client, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Value {
    let text: String = db.query_one(sql, params).await.unwrap().get(0);
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_reads_what_the_extension_announces() {
    let db = admin().await;
    let secret = secret(&db).await;
    let (_listening, mut payloads) = listener().await;
    let alice = register(&db, "alice").await;
    let bob = register(&db, "bob").await;
    let channel = format!("wire-{}", short_id());
    let create = "SELECT hatchat.create_channel($1, $2, 'self')::text";
    call(&db, create, &[&alice.token(), &channel]).await;
    // Heard before the next step, so that each step below is heard for itself.
    hear_all(&mut payloads, &[Topic::channel(&secret, &channel)]).await;

    // A join posts to the channel.
    let join = "SELECT hatchat.invite($1, $2, $3::text::uuid)::text";
    call(&db, join, &[&bob.token(), &channel, &bob.id.to_string()]).await;
    hear_all(&mut payloads, &[Topic::channel(&secret, &channel)]).await;

    // A plain-SQL send, as any program would make it.
    let send = "SELECT hatchat.send_message($1, $2, '{\"text\": \"hi\"}')::text";
    call(&db, send, &[&alice.token(), &channel]).await;
    hear_all(&mut payloads, &[Topic::channel(&secret, &channel)]).await;

    // A room post notifies the other member: the room's channel and that user, by key.
    let users = vec![alice.username.clone(), bob.username.clone()];
    let room =
        call(&db, "SELECT hatchat.create_room($1, 'wire/v1', $2)::text", &[&alice.token(), &users]).await;
    let room = room["id"].as_str().unwrap().to_string();
    let body = json!({"timestamp": 1, "type": "text", "message": "your turn"}).to_string();
    let post = "SELECT hatchat.post_room_message($1, $2, $3::text::jsonb)::text";
    call(&db, post, &[&alice.token(), &room, &body]).await;
    let bob_id = bob.id.to_string();
    hear_all(&mut payloads, &[Topic::channel(&secret, &room), Topic::user(&secret, &bob_id), Topic::AnyUser])
        .await;

    // Typing wakes the channel's presence key (a key apart from its messages').
    call(&db, api::TYPING, &[&alice.token(), &channel]).await;
    hear_all(&mut payloads, &[Topic::Channel(secret.presence_key(&channel))]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_answers_per_item_in_the_gateways_shape_and_announces_its_channel() {
    let db = admin().await;
    let secret = secret(&db).await;
    let (_listening, mut payloads) = listener().await;
    let alice = register(&db, "alice").await;
    let stranger = register(&db, "carol").await;
    let channel = format!("wire-{}", short_id());
    call(&db, "SELECT hatchat.create_channel($1, $2, 'owner')::text", &[&alice.token(), &channel]).await;

    let (alice_token, stranger_token) = (alice.token(), stranger.token());
    let items = [
        Item {
            token: Some(&alice_token),
            channel_id: Some(&channel),
            payload_text: Some("{\"n\": 1}"),
            client_id: None,
        },
        Item {
            token: Some(&stranger_token),
            channel_id: Some(&channel),
            payload_text: Some("{\"n\": 2}"),
            client_id: None,
        },
        Item {
            token: Some(&alice_token),
            channel_id: Some(&channel),
            payload_text: Some("[3]"),
            client_id: None,
        },
    ];
    let items = serde_json::to_string(&items).unwrap();
    let answers: String =
        db.query_one("SELECT hatchat.send_messages($1::text::jsonb)::text", &[&items]).await.unwrap().get(0);
    let answers: Vec<&RawValue> = serde_json::from_str(&answers).unwrap();
    let errors: Vec<Option<ItemError>> = answers.iter().map(|a| ItemError::from_answer(a.get())).collect();
    assert!(errors[0].is_none() && errors[2].is_none(), "{answers:?}");
    let refused = errors[1].as_ref().expect("the stranger's item failed");
    assert_eq!(refused.sqlstate, "42501", "{refused:?}");
    let sent: Vec<Value> = [0, 2].iter().map(|&i| serde_json::from_str(answers[i].get()).unwrap()).collect();
    assert_eq!((sent[0]["seq"].as_i64(), sent[1]["seq"].as_i64()), (Some(2), Some(3)), "{sent:?}");
    hear_all(&mut payloads, &[Topic::channel(&secret, &channel)]).await;
}

/// Every call the gateway makes (`hatchat_wire::api`) names a function the database has, with
/// parameters it takes: prepared as the gateway's role would, so a renamed function or a changed
/// signature fails here, not in a request.
#[tokio::test(flavor = "multi_thread")]
async fn every_call_of_the_contract_prepares_against_the_database() {
    let db = admin().await;
    let mut refused = Vec::new();
    for sql in api::ALL {
        if let Err(error) = db.prepare(sql).await {
            refused.push(format!("{sql}: {error}"));
        }
    }
    assert!(refused.is_empty(), "calls the database refuses: {refused:#?}");
}

/// The answers the gateway reads itself decode with the contract's types, from a live database.
#[tokio::test(flavor = "multi_thread")]
async fn the_answers_the_gateway_reads_decode_with_the_contracts_types() {
    let db = admin().await;
    let alice = register(&db, "alice").await;
    let channel = format!("wire-{}", short_id());
    let create = api::CREATE_CHANNEL;
    let no_model: Option<String> = None;
    call(&db, create, &[&alice.token(), &channel, &no_model, &"{}"]).await;
    let payload = json!({"text": "hi"}).to_string();
    let no_client_id: Option<String> = None;
    call(&db, api::SEND_MESSAGE_TEXT, &[&alice.token(), &channel, &payload, &no_client_id]).await;
    let users = vec![alice.id.to_string(), Uuid::new_v4().to_string()];
    let text: String =
        db.query_one(api::CHANNEL_WINDOW, &[&channel, &0i64, &10i32, &users]).await.unwrap().get(0);
    let window: api::ChannelWindow = serde_json::from_str(&text).unwrap();
    assert!(window.live);
    assert_eq!(window.members, vec![alice.id.to_string()], "only the member");
    let seqs: Vec<i64> =
        window.messages.iter().map(|m| serde_json::from_str::<api::Seq>(m.get()).unwrap().seq).collect();
    assert_eq!(window.last_seq, seqs.last().copied());
    assert_eq!(window.oldest_seq, seqs.first().copied());

    let gone: String =
        db.query_one(api::CHANNEL_WINDOW, &[&"no-such-channel", &0i64, &10i32, &users]).await.unwrap().get(0);
    let gone: api::ChannelWindow = serde_json::from_str(&gone).unwrap();
    assert!(!gone.live && gone.messages.is_empty() && gone.last_seq.is_none());

    let start: api::SinceStart = typed(&db, api::SINCE_START, &[&Some(alice.token()), &channel]).await;
    assert_eq!((start.caller.user_id, start.last_seq), (alice.id.to_string(), window.last_seq));
    let stamp: api::Stamp = serde_json::from_str(window.messages[0].get()).unwrap();
    assert!(stamp.created_at.parse::<jiff::Timestamp>().is_ok(), "{}", stamp.created_at);
    let (token, last) = (alice.token(), window.last_seq.unwrap());
    let items = json!([
        {"token": token, "channelId": channel, "afterSeq": 0},
        {"token": token, "channelId": channel, "afterSeq": last},
        {"token": token, "channelId": "no-such-channel", "afterSeq": 0},
        {"token": token},
        {"token": "Bearer not-a-token"},
    ])
    .to_string();
    let opened: Vec<Box<RawValue>> = typed(&db, api::OPEN_STREAMS, &[&items]).await;
    let behind: api::StreamOpen = serde_json::from_str(opened[0].get()).unwrap();
    assert!(behind.backlog && behind.caller.user_id == alice.id.to_string());
    let caught_up: api::StreamOpen = serde_json::from_str(opened[1].get()).unwrap();
    assert!(!caught_up.backlog, "nothing after the last seq");
    let refused = ItemError::from_answer(opened[2].get()).expect("an error");
    assert_eq!(refused.sqlstate, "P0002", "{refused:?}");
    let connected: api::StreamOpen = serde_json::from_str(opened[3].get()).unwrap();
    assert_eq!(connected.caller.user_id, alice.id.to_string());
    assert!(connected.caller.expires_at.is_some(), "a user's token expires");
    let unknown = ItemError::from_answer(opened[4].get()).expect("an error");
    assert_eq!(unknown.sqlstate, "28000", "{unknown:?}");

    // Presence: a gateway's first sync holds no lease yet; Alice joins, then types.
    let gateway = Uuid::new_v4().to_string();
    let (channels, members) = (vec![channel.clone()], vec![alice.id.to_string()]);
    let none: Vec<String> = Vec::new();
    let sync = api::PRESENCE_SYNC;
    let first: api::PresenceSync =
        typed(&db, sync, &[&gateway, &channels, &members, &none, &none, &true, &15i32]).await;
    let again: api::PresenceSync =
        typed(&db, sync, &[&gateway, &none, &none, &none, &none, &false, &15i32]).await;
    assert!(!first.held && again.held);
    call(&db, api::TYPING, &[&alice.token(), &channel]).await;
    let ephemera: api::Ephemera = typed(&db, api::CHANNEL_EPHEMERA, &[&channel, &users]).await;
    let kinds: Vec<&str> = ephemera.events.iter().map(|event| event.kind.as_str()).collect();
    assert_eq!(kinds, ["join", "typing"]);
    assert!(ephemera.events.iter().all(|event| event.user_id == alice.id.to_string()));
    assert!(ephemera.events[1].until.is_some() && ephemera.events[0].until.is_none());
    assert_eq!(ephemera.names[&alice.id.to_string()], alice.username);
    assert_eq!(ephemera.members, vec![alice.id.to_string()]);
    assert!(ephemera.blocked_by.is_empty());
}

async fn typed<T: serde::de::DeserializeOwned>(
    db: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> T {
    let text: String = db.query_one(sql, params).await.unwrap().get(0);
    serde_json::from_str(&text).unwrap()
}

//! What the HTTP suites share: a real gateway process on a free port against the test database, a
//! real HTTP client, and users with real RSA keys signing as Hatch@'s web client does.
#![allow(dead_code)] // each suite uses its own part of this module

pub mod described;
#[path = "../../../tests/common/signing.rs"]
mod signing;
pub mod ws;
pub use signing::*;
#[path = "../../../tests/common/skip.rs"]
mod skip;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;
use uuid::Uuid;

pub fn database_url() -> String {
    std::env::var("HATCHAT_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("HATCHAT_TEST_DATABASE_URL is not set: run scripts/test.sh, or point it at a database with the extension")
    })
}

/// A superuser connection to the test database (to look behind the API, or kill backends).
pub async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// True, having said so on the terminal with `reason`, when the test database is a Citus
/// cluster's: a test that does not apply to a cluster begins with
/// `if skip_on_citus("why").await { return; }` (tests/common/skip.rs).
pub async fn skip_on_citus(reason: &str) -> bool {
    let on_citus: bool =
        admin().await.query_one(skip::CITUS_INSTALLED, &[]).await.expect("ask for citus").get(0);
    skip::announce_skip(on_citus, reason)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A gateway process; stopped (SIGKILL) when dropped unless it already exited.
pub struct Gateway {
    pub base: String,
    pub name: String,
    child: Child,
}

impl Gateway {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts `hatchat-gateway` with extra environment settings and waits until /health is 200.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let name = format!("hatchat-test-{}", short_id());
        let child = Command::new(env!("CARGO_BIN_EXE_hatchat-gateway"))
            .env("DATABASE_URL", database_url())
            .env("HATCHAT_LISTEN", format!("127.0.0.1:{port}"))
            .env("HATCHAT_APPLICATION_NAME", &name)
            .env("HATCHAT_POOL_SIZE", "8")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the gateway");
        let gateway = Gateway { base: format!("http://127.0.0.1:{port}"), name, child };
        gateway.wait_healthy(Duration::from_secs(20)).await;
        gateway
    }

    pub async fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(response) = reqwest::get(format!("{}/health", self.base)).await {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "gateway {} not healthy in time", self.base);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn api(&self) -> Api {
        Api { base: self.base.clone(), http: reqwest::Client::new() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit on its own, returning its exit code.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "gateway did not exit in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn health(&self) -> Value {
        reqwest::get(format!("{}/health", self.base)).await.unwrap().json().await.unwrap()
    }

    /// Waits (up to 20 s) until /health's `field` satisfies `done`; its last value.
    pub async fn until_health(&self, field: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.health().await[field].clone();
            if done(&value) {
                return value;
            }
            assert!(Instant::now() < deadline, "/health {field} stayed at {value}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the gateway's allocator says it holds (`resident` or `allocated`), in bytes (/metrics).
    pub async fn allocator(&self, figure: &str) -> i64 {
        let text = reqwest::get(format!("{}/metrics", self.base)).await.unwrap().text().await.unwrap();
        let name = format!("hatchat_allocator_{figure}_bytes ");
        let line =
            text.lines().find_map(|line| line.strip_prefix(name.as_str())).expect("the allocator's figure");
        line.trim().parse::<f64>().unwrap() as i64
    }

    pub async fn waiting(&self) -> u64 {
        self.health().await["waiting"].as_u64().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status and JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// Asserts the status, and for errors the JSON error shape; returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        if status >= 400 {
            assert!(self.body["error"].is_string(), "error body: {}", self.body);
            assert!(self.body["message"].is_string(), "error body: {}", self.body);
        }
        self.body
    }
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        self.call_with_headers(method, path, token, body).await.0
    }

    /// As `call`, with the response's headers too.
    pub async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (Reply, reqwest::header::HeaderMap) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let content_type = headers.get("content-type").map(|v| v.to_str().unwrap());
        assert_eq!(content_type, Some("application/json"), "{status} {text}");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        (Reply { status, body }, headers)
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Sends raw bytes with the given Content-Type.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(body);
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        Reply { status, body: response.json().await.unwrap_or(Value::Null) }
    }

    pub async fn register(&self, key_name: &str) -> User {
        let id = Uuid::new_v4();
        let username = format!("{key_name}-{}", short_id());
        let body =
            json!({"id": id, "publicKey": fixture(&format!("{key_name}.pub.pem")), "username": username});
        self.post("/users", None, body).await.expect(200);
        User { id, username, key_name: key_name.into() }
    }

    pub async fn create_channel(&self, owner: &User, model: &str) -> String {
        let id = format!("{model}-{}", short_id());
        self.post("/channels", Some(&owner.token()), json!({"id": id, "inviteModel": model}))
            .await
            .expect(200);
        id
    }

    pub async fn join(&self, user: &User, channel: &str) -> Reply {
        self.post("/channels/invite", Some(&user.token()), json!({"channelId": channel, "userId": user.id}))
            .await
    }

    /// Alice and Bob, both members of a fresh `self` channel of Alice's.
    pub async fn alice_and_bob_in_a_channel(&self) -> (User, User, String) {
        let alice = self.register("alice").await;
        let bob = self.register("bob").await;
        let channel = self.create_channel(&alice, "self").await;
        self.join(&bob, &channel).await.expect(200);
        (alice, bob, channel)
    }

    pub async fn send(&self, from: &User, channel: &str, payload: Value) -> Reply {
        self.post("/messages", Some(&from.token()), json!({"channelId": channel, "payload": payload})).await
    }

    /// GET /messages with the given query string (without channelId).
    pub async fn poll(&self, reader: &User, channel: &str, query: &str) -> Reply {
        let path = format!("/messages?channelId={}&{query}", encode(channel));
        self.get(&path, Some(&reader.token())).await
    }
}

pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub key_name: String,
}

impl User {
    pub fn token(&self) -> String {
        format!("Bearer {}", seed_token(&self.key_name, self.id, 60))
    }
}

pub fn seqs(messages: &Value) -> Vec<i64> {
    messages.as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect()
}

/// Starts a long-poll in the background; returns when the gateway holds it.
pub async fn background_poll(
    gateway: &Gateway,
    reader: &User,
    channel: &str,
    query: &str,
) -> tokio::task::JoinHandle<(Reply, Instant)> {
    let before = gateway.waiting().await;
    let (api, reader, channel, query) =
        (gateway.api(), reader.clone(), channel.to_string(), query.to_string());
    let handle = tokio::spawn(async move {
        let reply = api.poll(&reader, &channel, &query).await;
        (reply, Instant::now())
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.waiting().await <= before {
        assert!(Instant::now() < deadline, "the long-poll never started waiting");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle
}

//! The API description (GET /openapi.json) and the router agree: every (method, path) the router
//! serves is in the document, and every one in the document reaches a handler. A failure names each
//! (method, path) and the side it is missing from.
//!
//! axum cannot list a router's routes, so the router's side is read from the `.route(…)` calls in
//! gateway/src (the one table in routes/mod.rs, and any route group that adds its own), and every
//! route read there is then requested from a real gateway, so the reading cannot silently miss
//! what the router does.

mod support;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;
use support::*;

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

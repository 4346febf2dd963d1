//! The API description, GET /openapi.json: an OpenAPI 3.1 document made from the code. Each
//! handler's `#[utoipa::path]` says its path, parameters, body and answers; the answer shapes are
//! hatchat_wire::shapes; routes/mod.rs registers each handler and its description together, so a
//! route cannot be served undescribed. This file holds what is the document's own: the front
//! matter, the security schemes, and the error answers every route shares; routes/mod.rs puts the
//! document together and serves it.
//!
//! Its chat routes use the default prefix (`chat/v1`): a gateway started with another
//! `--chat-prefix` serves them there instead (the document says so).

use hatchat_wire::shapes::{ErrorBody, StreamClosed, StreamReset};
use serde_json::json;
use std::collections::BTreeMap;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hatchat gateway",
        license(name = "MIT", identifier = "MIT"),
        description = "The HTTP doorway to the hatchat PostgreSQL extension: each route calls one SQL \
            function. Every route is also served under `/api/`. The multi-room chat routes are shown \
            under the default prefix `chat/v1`; a gateway started with `--chat-prefix P` serves them \
            under `/P/auth/{token}/…` instead. Errors are `{error, message, detail?}` with the status \
            from the SQLSTATE table in the README. Request bodies are JSON (`application/json`, \
            `text/plain` or no Content-Type)."
    ),
    servers((url = "/"), (url = "/api")),
    security(("token" = [])),
    tags(
        (name = "users"), (name = "moderation"), (name = "channels"), (name = "messages"),
        (name = "notifications"), (name = "rooms"),
        (name = "streams", description = "Live streams: server-sent events and a WebSocket. Each \
            delivers a channel's messages exactly once and in order, resumes by seq, and counts \
            against the user's long-polls (`--max-polls-per-user`). The README's section \"Streams\" \
            is their full description."),
        (name = "operations"),
    ),
    // The shared error answers' body; and two shapes the streams' text names, which no answer does.
    components(schemas(ErrorBody, StreamReset, StreamClosed)),
    modifiers(&Shared),
)]
struct Api;

/// What the document says besides its routes: routes/mod.rs starts its table from this.
pub fn front_matter() -> Document {
    Api::openapi()
}

/// The security schemes and the shared error answers.
struct Shared;

impl Modify for Shared {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        let token = "`Bearer <token>`: a token signed with the user's RSA key (scripts/make-token; \
            header.claim.signature), or for admin routes the server secret. The chat routes carry it \
            in the path instead.";
        let query_token = "The same token as `Authorization`, in the URL: for `EventSource`, which \
            cannot set headers (server-sent events only). A URL ends up in logs where a header does \
            not: use a short-lived token. `Authorization` wins when both are given.";
        let scheme = |key: ApiKey| SecurityScheme::ApiKey(key);
        components.add_security_scheme(
            "token",
            scheme(ApiKey::Header(ApiKeyValue::with_description("Authorization", token))),
        );
        components.add_security_scheme(
            "queryToken",
            scheme(ApiKey::Query(ApiKeyValue::with_description("token", query_token))),
        );
        let body = Content::new(Some(RefOr::Ref(Ref::from_schema_name(ErrorBody::name()))));
        for (name, description) in ERRORS {
            let mut answer = ResponseBuilder::new()
                .description(*description)
                .content("application/json", body.clone())
                .build();
            if *name == "TooManyRequests" {
                let seconds = utoipa::openapi::HeaderBuilder::new().schema(i64::schema()).build();
                answer.headers.insert("Retry-After".into(), seconds);
            }
            components.responses.insert(name.to_string(), answer.into());
        }
    }
}

/// The error answers routes share: each is a response component of the document, and a type of the
/// same name to list in a route's `responses(...)` (a `$ref` to the component).
macro_rules! error_answers {
    ($($name:ident $status:literal $description:literal;)*) => {
        $(
            pub struct $name;
            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    [($status.to_string(), RefOr::Ref(Ref::from_response_name(stringify!($name))))].into()
                }
            }
        )*
        const ERRORS: &[(&str, &str)] = &[$((stringify!($name), $description)),*];
    };
}

error_answers! {
    BadRequest 400 "Malformed input: bad JSON, a missing or mistyped field, a bad uuid or time \
        (SQLSTATE class 22), JSON nested deeper than hatchat.max_json_depth";
    Unauthorized 401 "Bad, expired or missing token (SQLSTATE 28000)";
    Forbidden 403 "Not allowed (42501)";
    NotFound 404 "No such user, channel or room (P0002)";
    Conflict 409 "Id or username taken, or a concurrent change (23505, 23503)";
    PayloadTooLarge 413 "Payload over hatchat.max_payload_bytes (54000), or body over --max-body-bytes";
    UnsupportedMediaType 415 "The body is not JSON (Content-Type other than application/json, \
        text/plain or none)";
    TooManyRequests 429 "The user's long-polls on this gateway are at --max-polls-per-user; see \
        Retry-After";
    Internal 500 "A bug: only {error: internal, requestId}";
    Unavailable 503 "The database is away, busy or shutting down; nothing changed, try again \
        (SQLSTATE classes 08, 40, 53, 57)";
}

/// 413 and 415: what the JSON body extractor refuses.
pub struct Body;

impl IntoResponses for Body {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [PayloadTooLarge::responses(), UnsupportedMediaType::responses()].into_iter().flatten().collect()
    }
}

/// 500 and 503: every route that calls the database.
pub struct Db;

impl IntoResponses for Db {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [Internal::responses(), Unavailable::responses()].into_iter().flatten().collect()
    }
}

/// Answers that OpenAPI attributes cannot spell (a header with one value, a media type's example),
/// written as the document shows them.
macro_rules! answers_as_json {
    ($($(#[$doc:meta])* $type:ident = $json:expr;)*) => {$(
        $(#[$doc])*
        pub struct $type;
        impl IntoResponses for $type {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                serde_json::from_value($json).expect("an OpenAPI response")
            }
        }
    )*};
}

/// `X-Accel-Buffering: no` on a stream's 200.
fn unbuffered() -> serde_json::Value {
    json!({"description": "`no`: proxies (nginx) pass events on as they come.",
           "schema": {"type": "string", "enum": ["no"]}})
}

answers_as_json! {
    /// GET /channels/{id}/events' 200.
    ChannelStream = json!({"200": {
        "description": "The stream (never ends by itself before `closed`)",
        "headers": {"X-Accel-Buffering": unbuffered()},
        "content": {"text/event-stream": {"schema": {"type": "string"}, "example": "retry: 2000\n\n\
            id: 7\nevent: message\ndata: {\"seq\": 7, \"createdAt\": \"2026-12-02T06:05:43.807080Z\", \
            \"fromUserId\": \"6f1c3a4e-0000-4000-8000-000000000000\", \"username\": \"bob\", \
            \"payload\": {\"text\": \"hi\"}}\n\n: heartbeat\n\nevent: closed\n\
            data: {\"reason\": \"not a member\", \"lastSeq\": 7}\n\n"}}}});
    /// GET /notifications/events' 200.
    NotificationStream = json!({"200": {
        "description": "The stream",
        "headers": {"X-Accel-Buffering": unbuffered()},
        "content": {"text/event-stream": {"schema": {"type": "string"}, "example": "retry: 2000\n\n\
            id: 3\nevent: notification\ndata: {\"id\": 3, \"createdAt\": \
            \"2026-12-02T06:05:43.807080Z\", \"type\": \"message\", \"from\": \"alice\", \"to\": \
            \"bob\", \"data\": {}}\n\n: heartbeat\n\n"}}}});
    /// GET /ws' 101.
    Upgraded = json!({"101": {
        "description": "Switching Protocols: the WebSocket is open (see the README for its frames)",
        "headers": {
            "Sec-WebSocket-Protocol": {
                "description": "`hatchat.v1`, when the client offered it (never the token).",
                "schema": {"type": "string", "enum": ["hatchat.v1"]}},
            "Upgrade": {"schema": {"type": "string", "enum": ["websocket"]}}}}});
    /// GET /metrics' 200.
    MetricsText = json!({"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}});
}

/// `{id}` of the /users routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserId {
    /// A user's id (uuid).
    #[param(format = "uuid")]
    pub id: String,
}

/// `{id}` of the /channels routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ChannelId {
    /// A channel's id.
    pub id: String,
}

/// `{id}/messages/{seq}`: one message of a channel.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MessageSeq {
    /// A channel's id.
    pub id: String,
    /// The message's seq in the channel (a user's message, not an event or a system message).
    #[param(minimum = 1)]
    pub seq: i64,
}

/// `?afterSeq=` of GET /channels/{id}/events.
#[derive(IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct AfterSeq {
    /// Start after this seq (0 or more; default 0) when there is no `Last-Event-ID`.
    #[param(minimum = 0, default = 0)]
    pub after_seq: Option<i64>,
}

/// `?after=` of GET /notifications/events.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct After {
    /// Start after this notification id (0 or more; default 0) when there is no `Last-Event-ID`.
    #[param(minimum = 0, default = 0)]
    pub after: Option<i64>,
}

/// `{token}` of the chat routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ChatToken {
    /// A signed token (URL-safe base64, or percent-encoded standard base64), or the server secret.
    pub token: String,
}

/// `{token}/rooms/{roomId}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RoomPath {
    /// A signed token (URL-safe base64, or percent-encoded standard base64), or the server secret.
    pub token: String,
    /// A room id, percent-encoded (`triominos%2Fv1%2Falice%2Fbob`); plain slashes work too.
    #[param(rename = "roomId")]
    pub room_id: String,
}

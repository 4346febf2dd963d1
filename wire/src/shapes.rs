//! The JSON the extension answers (and the gateway's error body), as Rust types: what a route's
//! answer looks like, written once for both sides. With the `openapi` feature (the gateway's) each
//! derives `utoipa::ToSchema`, and the gateway's API description (GET /openapi.json) takes its
//! answer schemas from here; its HTTP suites check real answers against them, so a field the
//! extension renames or starts leaving out fails there. Field names are the JSON's (camelCase).
//!
//! A field the extension always writes but may write as null is `Option` marked `required`; a
//! field it leaves out is `Option` marked `nullable = false`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// Every failure. A 500 carries only `error` ("internal") and `requestId`; the gateway's log has the
/// detail under that id.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = Error))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorBody {
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub error: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, format = "uuid"))]
    pub request_id: Option<String>,
}

// `ErrorBody::error`: one per HTTP status the gateway answers with.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    Unavailable,
    Internal,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub id: String,
    pub username: String,
    pub public_key: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UserRef {
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub id: String,
    pub username: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub owner_id: String,
    pub invite_model: String,
    pub created_at: String,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub max_messages: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub ttl_seconds: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub expires_at: Option<String>,
    pub notify_members: bool,
}

/// A channel with the caller's read state (`GET /channels`, `GET /channels/{id}`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChannelWithReadState {
    #[serde(flatten)]
    pub channel: Channel,
    /// The channel's newest seq (0 before any).
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub last_seq: i64,
    /// How far the caller has read (0 at first; moved by `POST /channels/{id}/read` and by the
    /// caller's own posts; never backwards). Null for the server secret, which is no member.
    #[cfg_attr(feature = "openapi", schema(required, minimum = 0))]
    pub read_seq: Option<i64>,
    /// Messages after `readSeq` that are not the caller's, not system messages, not events and not
    /// deleted. Null for the server secret.
    #[cfg_attr(feature = "openapi", schema(required, minimum = 0))]
    pub unread: Option<i64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChannelDetail {
    #[serde(flatten)]
    pub channel: ChannelWithReadState,
    pub members: Vec<UserRef>,
    /// Each member's read position, but for those who turned read receipts off (`PUT
    /// /users/{id}/read-receipts`); the caller always sees their own.
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub read_receipts: Vec<ReadReceipt>,
}

// One member's read position in `ChannelDetail::read_receipts`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt {
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub user_id: String,
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub read_seq: i64,
}

/// The caller's read state in a channel, after `POST /channels/{id}/read`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReadState {
    pub channel_id: String,
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub last_seq: i64,
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub read_seq: i64,
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub unread: i64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipts {
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub user_id: String,
    /// Whether other members see this user's read position.
    pub read_receipts: bool,
}

/// A member with a live stream on the channel, on any gateway (`GET /channels/{id}/presence`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Present {
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub user_id: String,
    pub username: String,
    /// Since when, without a break longer than a reconnect.
    #[cfg_attr(feature = "openapi", schema(format = "date-time"))]
    pub since: String,
}

/// `POST /channels/{id}/typing`'s answer: the other members' streams show the caller typing
/// until `until`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Typed {
    pub channel_id: String,
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub user_id: String,
    #[cfg_attr(feature = "openapi", schema(format = "date-time"))]
    pub until: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PresenceHidden {
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub user_id: String,
    /// Whether others are kept from seeing this user present.
    pub presence_hidden: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    pub channel_id: String,
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub user_id: String,
    pub joined: bool,
}

/// A send's answer, and an event's (edit, delete, reaction). A muted sender is answered in the same
/// shape with `seq` and `createdAt` null: nothing was stored or delivered.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    pub channel_id: String,
    #[cfg_attr(feature = "openapi", schema(required, minimum = 1))]
    pub seq: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub created_at: Option<String>,
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub from_user_id: String,
}

/// A row of a channel, as `GET /messages` and every stream deliver it. An event (an edit, a delete
/// or a reaction appended about an earlier message) also has `event` and `target`, outside its
/// payload: a payload `{"event": "edit", ...}` is just a payload. A send made with a `clientId` has
/// it. In a folded window (`fold=true`) there are no event rows, and each message has its current
/// `payload`, `edited`, `deleted` and `reactions`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub seq: i64,
    pub created_at: String,
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub from_user_id: String,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub username: Option<String>,
    /// The JSON the sender sent. An edit event's is the new payload, a delete event's null, a
    /// reaction event's `{reaction, action: "add" | "remove"}`. Folded: the latest edit's payload,
    /// null once deleted. A deleted message's payload and its edits' are erased (null) in every
    /// window.
    pub payload: Value,
    /// Present on event rows only (never in folded windows).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub event: Option<EventKind>,
    /// The seq an event is about (with `event`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, minimum = 1))]
    pub target: Option<i64>,
    /// The sender's client id, when the send had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, min_length = 1, max_length = 64))]
    pub client_id: Option<String>,
    /// Folded windows only: the message was edited.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub edited: Option<bool>,
    /// Folded windows only: the message was deleted (payload null).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub deleted: Option<bool>,
    /// Folded windows only: how many users gave each reaction (`{"👍": 2}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = reaction_counts))]
    pub reactions: Option<BTreeMap<String, i64>>,
}

// `Message::event`: what an event row does to its `target`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Edit,
    Delete,
    Reaction,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: i64,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub to: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub data: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub push: Value,
}

/// The `data` of an SSE `reset` event (its `id` is `oldestSeq - 1`), and of a WebSocket `reset`
/// frame (with `channelId`): the position is older than the oldest message the channel still holds
/// (retention); delivery goes on from `oldestSeq`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StreamReset {
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub oldest_seq: i64,
}

/// The `data` of the last SSE event, `closed` (no `id`), and of a WebSocket `closed` frame (with
/// `channelId`). `lastSeq` is the position to resume after: the last seq delivered on a channel
/// stream, the last notification id on the notification stream.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StreamClosed {
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub reason: CloseReason,
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub last_seq: i64,
}

// `StreamClosed::reason`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub enum CloseReason {
    #[serde(rename = "not a member")]
    NotAMember,
    #[serde(rename = "channel deleted")]
    ChannelDeleted,
    #[serde(rename = "token expired")]
    TokenExpired,
    #[serde(rename = "slow consumer")]
    SlowConsumer,
    #[serde(rename = "gateway shutting down")]
    GatewayShuttingDown,
    #[serde(rename = "database unavailable")]
    DatabaseUnavailable,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Room {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub users: Vec<String>,
    pub messages: Vec<Value>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RoomMessage {
    pub room_id: String,
    pub from: String,
    #[serde(rename = "type", default, skip_serializing_if = "Value::is_null")]
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub kind: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub timestamp: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub message: Value,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Moderation {
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub user_id: String,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub banned_until: Option<String>,
    pub muted: bool,
    pub chat_disabled: bool,
}

/// The answer of a deletion: always `{"deleted": true}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Deleted {
    #[cfg_attr(feature = "openapi", schema(schema_with = always_true))]
    pub deleted: bool,
}

/// The answer of `POST /channels/{id}/leave`: always `{"left": true}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Left {
    #[cfg_attr(feature = "openapi", schema(schema_with = always_true))]
    pub left: bool,
}

/// `true`, and nothing else: an answer that only says it happened.
#[cfg(feature = "openapi")]
fn always_true() -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type};
    ObjectBuilder::new().schema_type(Type::Boolean).enum_values(Some([true])).build()
}

/// `Message::reactions`: a count of 1 or more per reaction.
#[cfg(feature = "openapi")]
fn reaction_counts() -> utoipa::openapi::Object {
    use utoipa::openapi::{schema::AdditionalProperties, ObjectBuilder, Type};
    let count = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::RefOr(count.build().into())))
        .description(Some("Folded windows only: how many users gave each reaction (`{\"👍\": 2}`)."))
        .build()
}

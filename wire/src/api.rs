//! Every call the gateway makes to the extension: its SQL text, written once here, and the type
//! of its answer where the gateway reads the answer (the rest it passes to the client as the
//! extension wrote it; their shapes are in the API description). Each call selects one text
//! column: a function's jsonb cast to text, so payloads pass through unparsed.
//!
//! Parameters are bound in the order the function takes them; ids arrive as text and are cast in
//! SQL, so a malformed id is the extension's 22P02, not the gateway's.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Declares each call as a constant, and `ALL`, every call, for the test that prepares each
/// against a live database (so a renamed function or a changed signature fails there, not in a
/// request).
macro_rules! calls {
    ($($(#[$doc:meta])* $name:ident = $sql:expr;)*) => {
        $($(#[$doc])* pub const $name: &str = $sql;)*
        pub const ALL: &[&str] = &[$($name),*];
    };
}

/// The messages `GET_MESSAGES` answers when it is given no limit (get_messages' SQL default).
pub const DEFAULT_MESSAGE_LIMIT: i32 = 20;

calls! {
    // Users.
    REGISTER_USER = "SELECT hatchat.register_user($1::text::uuid, $2, $3, $4)::text";
    GET_USER = "SELECT hatchat.get_user($1::text::uuid)::text";
    UPDATE_USER = "SELECT hatchat.update_user($1, $2::text::uuid, $3)::text";
    DELETE_USER = "SELECT hatchat.delete_user($1, $2::text::uuid)";
    /// The id (text, not JSON) of the user a token speaks for.
    AUTHENTICATE = "SELECT hatchat.authenticate($1)::text";

    // Channels.
    CREATE_CHANNEL = "SELECT hatchat.create_channel($1, $2, $3, $4::text::jsonb)::text";
    LIST_CHANNELS = "SELECT hatchat.list_channels($1)::text";
    GET_CHANNEL = "SELECT hatchat.get_channel($1, $2)::text";
    UPDATE_CHANNEL = "SELECT hatchat.update_channel($1, $2, $3)::text";
    DELETE_CHANNEL = "SELECT hatchat.delete_channel($1, $2)";
    INVITE = "SELECT hatchat.invite($1, $2, $3::text::uuid)::text";
    LEAVE_CHANNEL = "SELECT hatchat.leave_channel($1, $2)";
    MARK_READ = "SELECT hatchat.mark_read($1, $2, $3)::text";
    SET_READ_RECEIPTS = "SELECT hatchat.set_read_receipts($1, $2, $3::text::uuid)::text";

    // Messages.
    SEND_MESSAGE_TEXT = "SELECT hatchat.send_message_text($1, $2, $3, $4)::text";
    /// A batch of `batch::Item`s; answers one `batch::Answer` per item, in order.
    SEND_MESSAGES = "SELECT hatchat.send_messages($1::text::jsonb)::text";
    GET_MESSAGES = "SELECT hatchat.get_messages($1, $2, $3, $4, $5, $6, $7)::text";
    /// Opens a `StreamItem` array in one call: answers, per item in order, a `StreamOpen` or an
    /// `ItemError` (what `hatchat.open_stream` refuses that opening alone with); for the gateway's
    /// role only.
    OPEN_STREAMS = "SELECT hatchat.open_streams($1)::text";
    EDIT_MESSAGE = "SELECT hatchat.edit_message($1, $2, $3, $4::text::jsonb, $5)::text";
    DELETE_MESSAGE = "SELECT hatchat.delete_message($1, $2, $3, $4)::text";
    REACT = "SELECT hatchat.react($1, $2, $3, $4, $5)::text";
    UNREACT = "SELECT hatchat.unreact($1, $2, $3, $4, $5)::text";
    /// Answers a `ChannelWindow`; for the gateway's role only.
    CHANNEL_WINDOW = "SELECT hatchat.channel_window($1, $2, $3, $4::text[]::uuid[])::text";
    /// Answers a `SinceStart` for token $1 and channel $2: whom the token speaks for (checked
    /// first, as `get_messages` checks it), then the channel's last seq (no message read).
    SINCE_START = "SELECT json_build_object('caller', hatchat.stream_caller($1), 'lastSeq', \
        hatchat.channel_window($2, 9223372036854775807, 1, '{}'::uuid[]) -> 'lastSeq')::text";
    /// Whether the gateway's login may read windows, and its name (a startup check).
    MAY_READ_WINDOWS = "SELECT has_function_privilege(\
        'hatchat.channel_window(text, bigint, integer, uuid[])', 'EXECUTE'), current_user::text";

    // Presence and typing.
    TYPING = "SELECT hatchat.typing($1, $2)::text";
    CHANNEL_PRESENCE = "SELECT hatchat.channel_presence($1, $2)::text";
    SET_PRESENCE_HIDDEN = "SELECT hatchat.set_presence_hidden($1, $2, $3::text::uuid)::text";
    /// A gateway's presence changes and lease: answers a `PresenceSync`; for the gateway's role.
    PRESENCE_SYNC = "SELECT hatchat.presence_sync($1::text::uuid, $2::text[], $3::text[]::uuid[], \
        $4::text[], $5::text[]::uuid[], $6, $7)::text";
    /// Answers an `Ephemera`; for the gateway's role only.
    CHANNEL_EPHEMERA = "SELECT hatchat.channel_ephemera($1, $2::text[]::uuid[])::text";

    // Rooms (the multi-room chat API).
    CREATE_ROOM = "SELECT hatchat.create_room($1, $2, $3)::text";
    GET_ROOM = "SELECT hatchat.get_room($1, $2)::text";
    POST_ROOM_MESSAGE = "SELECT hatchat.post_room_message($1, $2, $3::text::jsonb)::text";
    POST_SYSTEM_MESSAGE = "SELECT hatchat.post_system_message($1, $2::text::jsonb)::text";

    // Notifications: each answer an array of notifications, each with its `Id`.
    GET_NOTIFICATIONS = "SELECT hatchat.get_notifications($1, $2, $3)::text";
    NOTIFICATIONS_TO_FORWARD = "SELECT hatchat.notifications_to_forward($1, $2::text[]::uuid[])::text";
    MARK_FORWARDED = "SELECT hatchat.mark_forwarded($1::text::uuid, $2)";
    MARK_UNDELIVERABLE = "SELECT hatchat.mark_undeliverable($1::text::uuid, $2, $3)";
    FORWARDING_STATUS = "SELECT hatchat.forwarding_status()::text";

    // Moderation.
    SET_CHAT_DISABLED = "SELECT hatchat.set_chat_disabled($1, $2, $3::text::uuid)::text";
    LIST_BLOCKED = "SELECT hatchat.list_blocked($1, $2::text::uuid)::text";
    BLOCK_USER = "SELECT hatchat.block_user($1, $2::text::uuid, $3::text::uuid)::text";
    UNBLOCK_USER = "SELECT hatchat.unblock_user($1, $2::text::uuid, $3::text::uuid)::text";
    BAN_USER = "SELECT hatchat.ban_user($1, $2::text::uuid, $3::text::timestamptz)::text";
    UNBAN_USER = "SELECT hatchat.unban_user($1, $2::text::uuid)::text";
    MUTE_USER = "SELECT hatchat.mute_user($1, $2::text::uuid, $3)::text";

    // Placement on a Citus cluster (group commit batches sends by node).
    /// Whether `channel_nodes` answers (true on a distributed database).
    HAS_CHANNEL_NODES = "SELECT hatchat.channel_nodes('{}'::text[]) IS NOT NULL";
    /// The node that holds a channel's rows.
    CHANNEL_NODE = "SELECT (hatchat.channel_nodes(ARRAY[$1::text]))[1]";

    // Trusted issuers' keys (the gateway's role may call these two).
    /// `[{iss, jwksUrl}]`: where each issuer's keys are fetched from.
    ISSUER_KEY_SOURCES = "SELECT hatchat.issuer_key_sources()::text";
    SET_ISSUER_KEYS = "SELECT hatchat.set_issuer_keys($1, $2::text::jsonb)::text";

    // Upkeep.
    PURGE_EXPIRED = "SELECT hatchat.purge_expired()::text";
    /// The database's wake-up secret, 32 hex digits (`wake::Secret::from_hex`).
    WAKE_SECRET = "SELECT hatchat.wake_secret()";
}

/// `stream_caller`'s answer: whom a token speaks for, and until when (null: the server secret).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamCaller {
    pub user_id: String,
    pub expires_at: Option<String>,
}

/// An `OPEN_STREAMS` item's answer (and `hatchat.open_stream`'s): whether the stream has messages
/// to catch up on (absent, so false, for an item without a channel), and whom its token speaks
/// for.
#[derive(Debug, Deserialize)]
pub struct StreamOpen {
    #[serde(default)]
    pub backlog: bool,
    pub caller: StreamCaller,
}

/// One stream to open in `OPEN_STREAMS`: a token, a channel, the position the stream starts after.
/// Without a channel, a connection that only asks whom its token speaks for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamItem<'a> {
    #[serde(borrow)]
    pub token: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    pub channel_id: Option<std::borrow::Cow<'a, str>>,
    pub after_seq: Option<i64>,
}

/// `channel_window`'s answer, its messages borrowed from the answer's text (each is copied once,
/// into the page a feed hands out). `live` is false when the channel is missing or expired.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelWindow<'a> {
    pub live: bool,
    /// As get_messages returns them, each with its `Seq`.
    #[serde(borrow)]
    pub messages: Vec<&'a RawValue>,
    /// Those of the users asked about who may read the channel now.
    pub members: Vec<String>,
    /// The oldest message still held (null: none).
    pub oldest_seq: Option<i64>,
    pub last_seq: Option<i64>,
}

/// The position of a message.
#[derive(Debug, Deserialize)]
pub struct Seq {
    pub seq: i64,
}

/// When a message was appended (ISO 8601 UTC, microseconds; rises with seq in a channel).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stamp {
    pub created_at: String,
}

/// `SINCE_START`'s answer: whom the token speaks for, and the channel's last seq (null: missing
/// or expired).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinceStart {
    pub caller: StreamCaller,
    pub last_seq: Option<i64>,
}

/// `PRESENCE_SYNC`'s answer: whether the gateway held its lease (false: it must send everything it
/// holds, `whole`).
#[derive(Debug, Deserialize)]
pub struct PresenceSync {
    pub held: bool,
}

/// `CHANNEL_EPHEMERA`'s answer: a channel's recent joins, leaves and typing, and for the readers
/// asked about, who is a member and whom they blocked.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ephemera {
    pub events: Vec<Ephemeron>,
    /// Usernames of the events' users, by id.
    pub names: std::collections::HashMap<String, String>,
    /// For each user of an event, the readers who blocked them.
    pub blocked_by: std::collections::HashMap<String, Vec<String>>,
    pub members: Vec<String>,
}

/// A join, a leave or a typing, as streams send it (`event: presence` or `event: typing`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ephemeron {
    #[serde(skip_serializing)]
    pub id: i64,
    /// `join`, `leave` or `typing`.
    pub kind: String,
    pub user_id: String,
    #[serde(default)]
    pub username: Option<String>,
    pub at: String,
    /// Typing only: when the indicator ends unless renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// The position of a notification.
#[derive(Debug, Deserialize)]
pub struct Id {
    pub id: i64,
}

// ---- Group commit: the items and answers of SEND_MESSAGES ------------------------------------
// Group commit: the items the gateway hands `hatchat.send_messages`, and the answers it gets
// back, one per item in item order.

/// One send of a batch. The payload travels as the client's JSON text (`payloadText`), so the
/// extension converts each on its own and one payload PostgreSQL cannot store fails only its own
/// item. SQL callers may give `payload` (a JSON value) instead.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item<'a> {
    pub token: Option<&'a str>,
    pub channel_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_text: Option<&'a str>,
    /// The client's id for this send: a retry with the same id answers the first send's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
}

/// An item that failed: exactly the error it gets when sent alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    pub sqlstate: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A failed item's answer is `{"error": {...}}`; any other answer is the sent message's
/// (`{channelId, seq, createdAt, fromUserId}`, as `send_message` returns it).
#[derive(Debug, Serialize, Deserialize)]
pub struct Failed {
    pub error: ItemError,
}

impl ItemError {
    /// The answer text of a failed item.
    pub fn to_answer(&self) -> String {
        serde_json::to_string(&Failed { error: self.clone() }).expect("an error serializes")
    }

    /// The error of an answer, if it is one.
    pub fn from_answer(answer: &str) -> Option<ItemError> {
        // Only an object whose first key is "error" can be one: a sent message starts otherwise.
        if !answer.trim_start().starts_with("{\"error\"") {
            return None;
        }
        serde_json::from_str::<Failed>(answer).ok().map(|failed| failed.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip_and_messages_are_not_errors() {
        let error = ItemError { sqlstate: "22P05".into(), message: "bad".into(), detail: None };
        assert_eq!(ItemError::from_answer(&error.to_answer()), Some(error));
        let sent = r#"{"seq": 2, "channelId": "general", "createdAt": "x", "fromUserId": "y"}"#;
        assert_eq!(ItemError::from_answer(sent), None);
    }

    #[test]
    fn items_say_payload_text() {
        let item =
            Item { token: Some("t"), channel_id: Some("c"), payload_text: Some("[1]"), client_id: None };
        assert_eq!(
            serde_json::to_string(&item).unwrap(),
            r#"{"token":"t","channelId":"c","payloadText":"[1]"}"#
        );
        let retried = Item { client_id: Some("k1"), ..item };
        assert_eq!(
            serde_json::to_string(&retried).unwrap(),
            r#"{"token":"t","channelId":"c","payloadText":"[1]","clientId":"k1"}"#
        );
    }
}

//! Every call the gateway makes to the extension: its SQL text, written once here, and the type
//! of its answer where the gateway reads the answer (the rest it passes to the client as the
//! extension wrote it; their shapes are in the API description). Each call selects one text
//! column: a function's jsonb cast to text, so payloads pass through unparsed.
//!
//! Parameters are bound in the order the function takes them; ids arrive as text and are cast in
//! SQL, so a malformed id is the extension's 22P02, not the gateway's.

use serde::Deserialize;
use serde_json::value::RawValue;

// Users.
pub const REGISTER_USER: &str = "SELECT hatchat.register_user($1::text::uuid, $2, $3, $4)::text";
pub const GET_USER: &str = "SELECT hatchat.get_user($1::text::uuid)::text";
pub const UPDATE_USER: &str = "SELECT hatchat.update_user($1, $2::text::uuid, $3)::text";
pub const DELETE_USER: &str = "SELECT hatchat.delete_user($1, $2::text::uuid)";
/// The id (text, not JSON) of the user a token speaks for.
pub const AUTHENTICATE: &str = "SELECT hatchat.authenticate($1)::text";
/// Answers a `StreamCaller`.
pub const STREAM_CALLER: &str = "SELECT hatchat.stream_caller($1)::text";

// Channels.
pub const CREATE_CHANNEL: &str = "SELECT hatchat.create_channel($1, $2, $3, $4::text::jsonb)::text";
pub const LIST_CHANNELS: &str = "SELECT hatchat.list_channels($1)::text";
pub const GET_CHANNEL: &str = "SELECT hatchat.get_channel($1, $2)::text";
pub const UPDATE_CHANNEL: &str = "SELECT hatchat.update_channel($1, $2, $3)::text";
pub const DELETE_CHANNEL: &str = "SELECT hatchat.delete_channel($1, $2)";
pub const INVITE: &str = "SELECT hatchat.invite($1, $2, $3::text::uuid)::text";
pub const LEAVE_CHANNEL: &str = "SELECT hatchat.leave_channel($1, $2)";
pub const MARK_READ: &str = "SELECT hatchat.mark_read($1, $2, $3)::text";
pub const SET_READ_RECEIPTS: &str = "SELECT hatchat.set_read_receipts($1, $2, $3::text::uuid)::text";

// Messages.
pub const SEND_MESSAGE_TEXT: &str = "SELECT hatchat.send_message_text($1, $2, $3, $4)::text";
/// A batch of `batch::Item`s; answers one `batch::Answer` per item, in order.
pub const SEND_MESSAGES: &str = "SELECT hatchat.send_messages($1::text::jsonb)::text";
pub const GET_MESSAGES: &str = "SELECT hatchat.get_messages($1, $2, $3, $4, $5, $6, $7)::text";
/// `get_messages` for one message after `$3`: what opening a stream there checks (the token, the
/// channel, the position), refusing what a read refuses.
pub const CHECK_CHANNEL_READ: &str = "SELECT hatchat.get_messages($1, $2, NULL, NULL, 1, $3)::text";
pub const EDIT_MESSAGE: &str = "SELECT hatchat.edit_message($1, $2, $3, $4::text::jsonb)::text";
pub const DELETE_MESSAGE: &str = "SELECT hatchat.delete_message($1, $2, $3)::text";
pub const REACT: &str = "SELECT hatchat.react($1, $2, $3, $4)::text";
pub const UNREACT: &str = "SELECT hatchat.unreact($1, $2, $3, $4)::text";
/// Answers a `ChannelWindow`; for the gateway's role only.
pub const CHANNEL_WINDOW: &str = "SELECT hatchat.channel_window($1, $2, $3, $4::text[]::uuid[])::text";
/// Whether the gateway's login may read windows, and its name (a startup check).
pub const MAY_READ_WINDOWS: &str = "SELECT has_function_privilege(\
    'hatchat.channel_window(text, bigint, integer, uuid[])', 'EXECUTE'), current_user::text";

// Rooms (the multi-room chat API).
pub const CREATE_ROOM: &str = "SELECT hatchat.create_room($1, $2, $3)::text";
pub const GET_ROOM: &str = "SELECT hatchat.get_room($1, $2)::text";
pub const POST_ROOM_MESSAGE: &str = "SELECT hatchat.post_room_message($1, $2, $3::text::jsonb)::text";
pub const POST_SYSTEM_MESSAGE: &str = "SELECT hatchat.post_system_message($1, $2::text::jsonb)::text";

// Notifications: each answer an array of notifications, each with its `Id`.
pub const GET_NOTIFICATIONS: &str = "SELECT hatchat.get_notifications($1, $2, $3)::text";
pub const NOTIFICATIONS_TO_FORWARD: &str =
    "SELECT hatchat.notifications_to_forward($1, $2::text[]::uuid[])::text";
pub const MARK_FORWARDED: &str = "SELECT hatchat.mark_forwarded($1::text::uuid, $2)";
pub const MARK_UNDELIVERABLE: &str = "SELECT hatchat.mark_undeliverable($1::text::uuid, $2, $3)";
pub const FORWARDING_STATUS: &str = "SELECT hatchat.forwarding_status()::text";

// Moderation.
pub const SET_CHAT_DISABLED: &str = "SELECT hatchat.set_chat_disabled($1, $2, $3::text::uuid)::text";
pub const LIST_BLOCKED: &str = "SELECT hatchat.list_blocked($1, $2::text::uuid)::text";
pub const BLOCK_USER: &str = "SELECT hatchat.block_user($1, $2::text::uuid, $3::text::uuid)::text";
pub const UNBLOCK_USER: &str = "SELECT hatchat.unblock_user($1, $2::text::uuid, $3::text::uuid)::text";
pub const BAN_USER: &str = "SELECT hatchat.ban_user($1, $2::text::uuid, $3::text::timestamptz)::text";
pub const UNBAN_USER: &str = "SELECT hatchat.unban_user($1, $2::text::uuid)::text";
pub const MUTE_USER: &str = "SELECT hatchat.mute_user($1, $2::text::uuid, $3)::text";

// Placement on a Citus cluster (group commit batches sends by node).
/// Whether `channel_nodes` answers (true on a distributed database).
pub const HAS_CHANNEL_NODES: &str = "SELECT hatchat.channel_nodes('{}'::text[]) IS NOT NULL";
/// The node that holds a channel's rows.
pub const CHANNEL_NODE: &str = "SELECT (hatchat.channel_nodes(ARRAY[$1::text]))[1]";

// Upkeep.
pub const PURGE_EXPIRED: &str = "SELECT hatchat.purge_expired()::text";
/// The database's wake-up secret, 32 hex digits (`wake::Secret::from_hex`).
pub const WAKE_SECRET: &str = "SELECT hatchat.wake_secret()";

/// `stream_caller`'s answer: whom a token speaks for, and until when (null: the server secret).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamCaller {
    pub user_id: String,
    pub expires_at: Option<String>,
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

/// The position of a notification.
#[derive(Debug, Deserialize)]
pub struct Id {
    pub id: i64,
}

/// Every call above, for the test that prepares each against a live database (so a renamed
/// function or a changed signature fails there, not in a request).
pub const ALL: &[&str] = &[
    REGISTER_USER,
    GET_USER,
    UPDATE_USER,
    DELETE_USER,
    AUTHENTICATE,
    STREAM_CALLER,
    CREATE_CHANNEL,
    LIST_CHANNELS,
    GET_CHANNEL,
    UPDATE_CHANNEL,
    DELETE_CHANNEL,
    INVITE,
    LEAVE_CHANNEL,
    MARK_READ,
    SET_READ_RECEIPTS,
    SEND_MESSAGE_TEXT,
    SEND_MESSAGES,
    GET_MESSAGES,
    CHECK_CHANNEL_READ,
    EDIT_MESSAGE,
    DELETE_MESSAGE,
    REACT,
    UNREACT,
    CHANNEL_WINDOW,
    MAY_READ_WINDOWS,
    CREATE_ROOM,
    GET_ROOM,
    POST_ROOM_MESSAGE,
    POST_SYSTEM_MESSAGE,
    GET_NOTIFICATIONS,
    NOTIFICATIONS_TO_FORWARD,
    MARK_FORWARDED,
    MARK_UNDELIVERABLE,
    FORWARDING_STATUS,
    SET_CHAT_DISABLED,
    LIST_BLOCKED,
    BLOCK_USER,
    UNBLOCK_USER,
    BAN_USER,
    UNBAN_USER,
    MUTE_USER,
    HAS_CHANNEL_NODES,
    CHANNEL_NODE,
    PURGE_EXPIRED,
    WAKE_SECRET,
];

//! The extension's settings (GUCs). Limits that guard security or storage can only be changed by a
//! superuser (or a role granted `SET` on them), so a client cannot lift them for its own session.

use jiff::SignedDuration;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

pub static MAX_TOKEN_LIFETIME: GucSetting<i32> = GucSetting::<i32>::new(24 * 60 * 60);
pub static MAX_PAYLOAD_BYTES: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024);
pub static ROOM_MAX_MESSAGES: GucSetting<i32> = GucSetting::<i32>::new(100);
pub static ROOM_TTL: GucSetting<i32> = GucSetting::<i32>::new(60 * 24 * 60 * 60);
pub static MAX_JSON_DEPTH: GucSetting<i32> =
    GucSetting::<i32>::new(hatchat_wire::json::DEFAULT_MAX_DEPTH as i32);
pub static MAX_NOTIFICATIONS: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// Who may register a user through register_user (and POST /users).
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Registration {
    /// Anyone: the reference client registers itself.
    #[name = c"open"]
    Open,
    /// Only a call with the server secret, or by a role granted hatchat_admin: an app's backend.
    #[name = c"secret"]
    Secret,
    /// Nobody.
    #[name = c"closed"]
    Closed,
}

pub static REGISTRATION: GucSetting<Registration> = GucSetting::<Registration>::new(Registration::Open);
pub static MAX_REACTIONS_PER_USER: GucSetting<i32> = GucSetting::<i32>::new(20);
pub static MAX_REACTIONS_PER_MESSAGE: GucSetting<i32> = GucSetting::<i32>::new(100);
pub static RELEASE_LOCKS_BEFORE_FLUSH: GucSetting<bool> = GucSetting::<bool>::new(true);

pub fn register() {
    GucRegistry::define_int_guc(
        c"hatchat.max_token_lifetime",
        c"Longest time ahead a token's exp may lie.",
        c"Tokens whose exp is further ahead are refused, which bounds how long a leaked token \
          can be replayed.",
        &MAX_TOKEN_LIFETIME,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"hatchat.max_payload_bytes",
        c"Largest message payload, in bytes of JSON text.",
        c"A larger payload is refused with SQLSTATE 54000.",
        &MAX_PAYLOAD_BYTES,
        2,
        256 * 1024 * 1024,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"hatchat.room_max_messages",
        c"Messages a new room keeps (the newest).",
        c"Older messages are deleted as new ones arrive. Applies to rooms created afterwards.",
        &ROOM_MAX_MESSAGES,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hatchat.room_ttl",
        c"How long a new room lives after its last post or refresh.",
        c"An expired room is gone at once (404) and purged by hatchat.purge_expired().",
        &ROOM_TTL,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"hatchat.max_json_depth",
        c"Deepest nesting of arrays and objects in any JSON a function takes.",
        c"Deeper JSON is refused with SQLSTATE 22023. The gateway reads it at startup and refuses \
          deeper request bodies before they reach SQL.",
        &MAX_JSON_DEPTH,
        1,
        1000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hatchat.max_notifications",
        c"Notifications kept per user (the newest).",
        c"Older ones are deleted as new ones arrive, so no user's stream grows without bound.",
        &MAX_NOTIFICATIONS,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"hatchat.registration",
        c"Who may register users: open (anyone), secret (the server secret or an admin role), closed.",
        c"Refused registrations answer SQLSTATE 42501 (HTTP 403). Set it for the database (ALTER \
          DATABASE ... SET) or the server; clients cannot change it for their own session.",
        &REGISTRATION,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hatchat.max_reactions_per_user",
        c"Distinct reactions one user may have on one message.",
        c"One more is refused with SQLSTATE 23505 (HTTP 409). With max_reactions_per_message it \
          bounds a folded message: at most that many reactions of 64 characters each.",
        &MAX_REACTIONS_PER_USER,
        1,
        10_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hatchat.max_reactions_per_message",
        c"Distinct reactions one message may have, from all users together.",
        c"A new one past it is refused with SQLSTATE 23505 (HTTP 409); adding a reaction the \
          message already has is not a new one.",
        &MAX_REACTIONS_PER_MESSAGE,
        1,
        10_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"hatchat.release_locks_before_flush",
        c"Whether a sending transaction releases its locks before its commit is flushed.",
        c"The next sender of a channel then goes on while the commit is flushed; the COMMIT still \
          returns only once it is durable, and reads flush before showing what they saw (see \
          src/commit.rs). Needs hatchat in shared_preload_libraries.",
        &RELEASE_LOCKS_BEFORE_FLUSH,
        GucContext::Suset,
        GucFlags::default(),
    );
    // SAFETY: called once from _PG_init, after our variables are defined; makes a misspelt
    // `hatchat.*` setting an error instead of a silently ignored placeholder.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"hatchat".as_ptr()) };
}

pub fn max_token_lifetime() -> SignedDuration {
    SignedDuration::from_secs(i64::from(MAX_TOKEN_LIFETIME.get()))
}

pub fn max_json_depth() -> usize {
    usize::try_from(MAX_JSON_DEPTH.get()).unwrap_or(hatchat_wire::json::DEFAULT_MAX_DEPTH)
}

pub fn max_payload_bytes() -> usize {
    usize::try_from(MAX_PAYLOAD_BYTES.get()).unwrap_or(usize::MAX)
}

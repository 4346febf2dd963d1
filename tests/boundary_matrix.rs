//! Trust boundary II, item 9: the boundary as a table. Every SQL function of schema `hatchat` that
//! writes is a row; each row runs in every kind of channel (plain, `notifyMembers`, room) for every
//! kind of caller (the channel's owner, a member, a stranger, a banned member, a muted member, a
//! member who disabled their chat, a deleted member's id signed with someone else's key, the
//! server secret), and each cell states the answer: written, answered but nothing stored (a muted
//! user's posts), answered with the channel left as it was, or refused with a SQLSTATE (and then
//! nothing changed either).
//!
//! Every cell builds its own users and channel, so no cell depends on another. Every call is made
//! as a plain login role (`app_connection`): the superuser the suites connect as is an admin to
//! hatchat, and would pass every admin check without a token. One test runs all the cells and
//! reports every wrong one at once; another reads the schema's functions from `pg_proc` and fails
//! for any that is neither a row here nor a read listed with its reason, so a new function fails
//! until it gets its row.

mod common;

use common::*;
use postgres::types::ToSql;
use postgres::Client;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use uuid::Uuid;

const SECRET: &str = "boundary-matrix-secret-5c0e91d7a3";

/// An issuer's keys for the issuer rows: one Ed25519 key (any 32 bytes parse as one).
const MATRIX_JWKS: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "m", "x": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}]}"#;

/// Cells run on this many connections at once (RSA signing and the calls are the cost).
const WORKERS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `create_channel(token, id, 'member')`
    Plain,
    /// `create_channel(token, id, 'member', '{"notifyMembers": true}')`
    Notify,
    /// `create_room(token, type, users)`, posted to with `post_room_message`
    Room,
}

const KINDS: [Kind; 3] = [Kind::Plain, Kind::Notify, Kind::Room];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Created the channel (in a room: opened it; a room is the system's, so this is a member).
    Owner,
    /// A member, added by the owner.
    Member,
    /// Registered, not a member.
    Stranger,
    /// A member, then banned for an hour (`ban_user(NULL, id, now() + interval '1 hour')`).
    Banned,
    /// A member, then muted (`mute_user(NULL, id, true)`).
    Muted,
    /// A member who then disabled their own chat (`set_chat_disabled(token, true)`).
    Disabled,
    /// A member who deleted their account; their old id, a token signed with someone else's key
    /// (after that key's holder tried to register the id for themselves).
    Deleted,
    /// The server secret, as the token.
    Secret,
}

const CALLERS: [Who; 8] = [
    Who::Owner,
    Who::Member,
    Who::Stranger,
    Who::Banned,
    Who::Muted,
    Who::Disabled,
    Who::Deleted,
    Who::Secret,
];

/// What a cell must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Answered, and the channel changed (a message or event, a member, a read position, ...).
    W,
    /// Answered as if stored, and nothing was (a muted user's posts): the channel is as it was and
    /// a `seq` in the answer is null.
    Q,
    /// Answered, and the channel is as it was (what the call wrote, if anything, is elsewhere).
    S,
    /// Refused with this SQLSTATE, and the channel is as it was.
    Refused(&'static str),
}
use Expect::{Refused, Q, S, W};

/// 28000: no valid token (or, for the room functions, not one of the room's users).
const NOAUTH: Expect = Refused("28000");
/// 42501: authenticated, not allowed.
const DENY: Expect = Refused("42501");
/// P0002: no such channel or room.
const GONE: Expect = Refused("P0002");
/// 23505: taken (an id, a room that only the room functions write).
const TAKEN: Expect = Refused("23505");
/// 22023: an invalid argument.
const BAD: Expect = Refused("22023");

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            W => f.write_str("an answer that changes the channel"),
            Q => f.write_str("an answer that stores nothing (muted)"),
            S => f.write_str("an answer that leaves the channel as it was"),
            Refused(code) => f.write_str(code),
        }
    }
}

/// Answers per caller, in the order of CALLERS: owner, member, stranger, banned, muted, chat
/// disabled, deleted, secret.
type Callers = [Expect; 8];

/// The same answers in every column: the function takes no channel (or none of these).
fn any_channel(callers: Callers) -> [Callers; 3] {
    [callers; 3]
}

/// Plain and notifying channels alike, rooms apart.
fn channels_and_rooms(channels: Callers, rooms: Callers) -> [Callers; 3] {
    [channels, channels, rooms]
}

/// A refusal as a client sees it.
#[derive(Debug)]
struct Refusal {
    sqlstate: String,
    message: String,
}

type Answer = Result<Value, Refusal>;

fn refusal(error: postgres::Error) -> Refusal {
    match error.as_db_error() {
        Some(db) => Refusal { sqlstate: db.code().code().to_string(), message: db.message().to_string() },
        None => Refusal { sqlstate: "(no SQLSTATE)".into(), message: error.to_string() },
    }
}

/// A call whose answer is jsonb.
fn json_call(db: &mut Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Answer {
    db.query_one(sql, params)
        .map(|row| row.get::<_, Option<Value>>(0).unwrap_or(Value::Null))
        .map_err(refusal)
}

/// A call whose answer does not matter here (void, a count).
fn plain_call(db: &mut Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Answer {
    db.execute(sql, params).map(|_| Value::Null).map_err(refusal)
}

/// A `send_messages` item's answer as the same call alone would give it.
fn item_answer(item: &Value) -> Answer {
    match item.get("error") {
        Some(error) => Err(Refusal {
            sqlstate: error["sqlstate"].as_str().unwrap_or("(none)").to_string(),
            message: error["message"].as_str().unwrap_or_default().to_string(),
        }),
        None => Ok(item.clone()),
    }
}

fn show(answer: &Answer) -> String {
    match answer {
        Ok(value) => {
            let text = value.to_string();
            let cut: String = text.chars().take(200).collect();
            format!("Ok {cut}{}", if cut.len() < text.len() { "…" } else { "" })
        }
        Err(refusal) => format!("{} ({})", refusal.sqlstate, refusal.message),
    }
}

/// What a cell acts on: its users, its channel, its messages, and what the call presents.
struct Fixture {
    kind: Kind,
    owner: User,
    /// Another member; author of `theirs`.
    other: User,
    /// The user the caller is (or was); None for the secret.
    user: Option<User>,
    /// What the call presents as its token.
    token: String,
    /// The channel's or the room's id.
    channel: String,
    /// The room's type and users (empty for channels).
    room_type: String,
    room_users: Vec<String>,
    /// The caller's own message (the owner's and the members').
    mine: Option<i64>,
    /// The other member's message, the last of the channel.
    theirs: i64,
}

impl Fixture {
    /// The caller's id: the nil uuid for the secret (what it acts as).
    fn caller_id(&self) -> Uuid {
        self.user.as_ref().map_or(Uuid::nil(), |user| user.id)
    }

    /// The message an edit or a delete aims at: the caller's own if they have one.
    fn target(&self) -> i64 {
        self.mine.unwrap_or(self.theirs)
    }

    fn caller_username(&self) -> Option<String> {
        self.user.as_ref().map(|user| user.username.clone())
    }
}

/// What a row needs done, as the caller, before the caller's state changes (ban, mute, chat
/// disabled, deletion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prep {
    Nothing,
    /// The caller reacts 👍 to `theirs` (in channels they are a member of).
    ReactToTheirs,
    /// The caller blocks `other`.
    BlockOther,
    /// The backend the call runs on verifies the call's token first (`authenticate`), so a send
    /// takes the one-statement path for a recognized token. The deleted caller presents their own
    /// old token here, verified before the deletion: what the backend remembers must not outlive
    /// the account.
    KnownToApp,
}

fn setup(db: &mut Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Value {
    match db.query_one(sql, params) {
        Ok(row) => row.get::<_, Option<Value>>(0).unwrap_or(Value::Null),
        Err(error) => panic!("setup: {sql}: {error}"),
    }
}

fn last_seq(db: &mut Client, channel: &str) -> i64 {
    let seq: Option<i64> = db
        .query_one("SELECT max(seq) FROM hatchat.messages WHERE channel_id = $1", &[&channel])
        .unwrap()
        .get(0);
    seq.expect("the channel has messages")
}

/// A message of `token`'s user, as the kind of channel takes it; its seq.
fn post(db: &mut Client, kind: Kind, channel: &str, token: &str, text: &str) -> i64 {
    match kind {
        Kind::Room => setup(
            db,
            "SELECT hatchat.post_room_message($1, $2, $3)",
            &[&token, &channel, &json!({"timestamp": 1, "type": "t", "message": text})],
        ),
        Kind::Plain | Kind::Notify => {
            setup(db, "SELECT hatchat.send_message($1, $2, $3)", &[&token, &channel, &json!({"text": text})])
        }
    };
    last_seq(db, channel)
}

fn bearer(user: &User) -> String {
    // 59 s: never the same text as a setup token (60 s) made in the same millisecond.
    format!("Bearer {}", user.token_expiring_in(59))
}

/// A cell's fixture: fresh users and a fresh channel (or room) holding the caller's message and
/// then another member's, the caller in the state `who` names.
fn build(admin: &mut Client, app: &mut Client, kind: Kind, who: Who, prep: Prep) -> Fixture {
    let owner = register(admin, "alice");
    let other = register(admin, "bob");
    let user = match who {
        Who::Owner => Some(owner.clone()),
        Who::Member | Who::Stranger | Who::Banned | Who::Muted | Who::Disabled => {
            Some(register(admin, "dave"))
        }
        Who::Deleted => Some(register(admin, "carol")),
        Who::Secret => None,
    };
    let joins = matches!(who, Who::Member | Who::Banned | Who::Muted | Who::Disabled | Who::Deleted);
    let owner_token = owner.token();
    let (channel, room_type, room_users) = match kind {
        Kind::Plain | Kind::Notify => {
            let id = channel_id("matrix");
            let options = json!({"notifyMembers": kind == Kind::Notify});
            setup(
                admin,
                "SELECT hatchat.create_channel($1, $2, 'member', $3)",
                &[&owner_token, &id, &options],
            );
            let mut guests = vec![other.id];
            guests.extend(user.iter().filter(|_| joins).map(|user| user.id));
            for guest in guests {
                setup(admin, "SELECT hatchat.invite($1, $2, $3)", &[&owner_token, &id, &guest]);
            }
            (id, String::new(), Vec::new())
        }
        Kind::Room => {
            let room_type = format!("matrix-{}", short_id());
            let mut users = vec![owner.username.clone(), other.username.clone()];
            users.extend(user.iter().filter(|_| joins).map(|user| user.username.clone()));
            let room =
                setup(admin, "SELECT hatchat.create_room($1, $2, $3)", &[&owner_token, &room_type, &users]);
            (room["id"].as_str().expect("a room id").to_string(), room_type, users)
        }
    };
    let setup_token = match (&user, who) {
        (_, Who::Owner) => Some(owner_token.clone()),
        (Some(user), _) => Some(user.token()),
        (None, _) => None,
    };
    let member = joins || who == Who::Owner;
    let mine = match &setup_token {
        Some(token) if member => Some(post(admin, kind, &channel, token, "mine")),
        _ => None,
    };
    let theirs = post(admin, kind, &channel, &other.token(), "theirs");
    let token = match (who, &user) {
        (Who::Secret, _) => SECRET.to_string(),
        (Who::Deleted, Some(user)) if prep != Prep::KnownToApp => {
            bearer(&User { key_name: "bob".into(), ..user.clone() })
        }
        (_, Some(user)) => bearer(user),
        (_, None) => unreachable!("only the secret has no user"),
    };
    match (prep, &setup_token) {
        (Prep::ReactToTheirs, Some(own)) if member && kind != Kind::Room => {
            setup(admin, "SELECT hatchat.react($1, $2, $3, '👍')", &[own, &channel, &theirs]);
        }
        (Prep::BlockOther, Some(own)) => {
            setup(admin, "SELECT hatchat.block_user($1, $2)", &[own, &other.id]);
        }
        (Prep::KnownToApp, _) => {
            let _ = app.query_one("SELECT hatchat.authenticate($1)", &[&token]);
        }
        _ => {}
    }
    let id = user.as_ref().map(|user| user.id);
    match who {
        Who::Banned => {
            admin.execute("SELECT hatchat.ban_user(NULL, $1, now() + interval '1 hour')", &[&id]).unwrap();
        }
        Who::Muted => {
            admin.execute("SELECT hatchat.mute_user(NULL, $1, true)", &[&id]).unwrap();
        }
        Who::Disabled => {
            admin.execute("SELECT hatchat.set_chat_disabled($1, true)", &[&setup_token]).unwrap();
        }
        Who::Deleted => {
            admin.execute("SELECT hatchat.delete_user($1, $2)", &[&setup_token, &id]).unwrap();
            // Whoever holds bob's key tries to take the id over; the cells show what that got.
            let _ = admin.query_one(
                "SELECT hatchat.register_user($1, $2, $3)",
                &[&id, &fixture("bob.pub.pem"), &format!("mallory-{}", short_id())],
            );
        }
        _ => {}
    }
    Fixture { kind, owner, other, user, token, channel, room_type, room_users, mine, theirs }
}

/// Everything of one channel a write could change: its row, members and read positions, messages
/// (with their state), reactions, and the notifications about it. Read as the superuser.
fn digest(db: &mut Client, channel: &str) -> String {
    db.query_one(
        "SELECT concat_ws(' | ', \
             coalesce((SELECT c.invite_model || '/' || coalesce(c.type, '') FROM hatchat.channels c WHERE c.id = $1), '-'), \
             coalesce((SELECT string_agg(m.user_id::text || ':' || m.read_seq::text, ',' ORDER BY m.user_id) \
                         FROM hatchat.members m WHERE m.channel_id = $1), '-'), \
             coalesce((SELECT string_agg(m.seq::text || ':' || m.from_user_id::text || ':' || coalesce(m.kind, '') \
                                         || ':' || md5(m.payload::text) || ':' || m.deleted::text, ',' ORDER BY m.seq) \
                         FROM hatchat.messages m WHERE m.channel_id = $1), '-'), \
             coalesce((SELECT string_agg(r.seq::text || ':' || r.user_id::text || ':' || r.reaction, ',' \
                                         ORDER BY r.seq, r.user_id, r.reaction) \
                         FROM hatchat.reactions r WHERE r.channel_id = $1), '-'), \
             (SELECT count(*)::text || ':' || coalesce(md5(string_agg(n.body::text, ',' ORDER BY n.user_id, n.id)), '') \
                FROM hatchat.notifications n WHERE n.channel_id = $1))",
        &[&channel],
    )
    .unwrap()
    .get(0)
}

type Call = fn(&mut Client, &mut Client, &Fixture) -> Answer;
type Verify = fn(&mut Client, &Fixture, &Value) -> Option<String>;

/// One function's row: how to call it for a cell, and what each cell answers.
struct Row {
    /// How failures name the row.
    label: &'static str,
    /// The function of schema hatchat this row covers.
    function: &'static str,
    /// Why the cells answer what they do.
    note: &'static str,
    /// Per kind (plain, notify, room), per caller.
    expect: [Callers; 3],
    prep: Prep,
    /// Called with the app connection (for the call) and the superuser's (for what the call needs).
    call: Call,
    /// More to check of an answered call (superuser connection).
    verify: Option<Verify>,
}

impl Row {
    fn new(
        label: &'static str,
        function: &'static str,
        note: &'static str,
        expect: [Callers; 3],
        call: Call,
    ) -> Self {
        Row { label, function, note, expect, prep: Prep::Nothing, call, verify: None }
    }

    fn prep(self, prep: Prep) -> Self {
        Row { prep, ..self }
    }

    fn verify(self, verify: Verify) -> Self {
        Row { verify: Some(verify), ..self }
    }
}

fn payload() -> Value {
    json!({"text": "matrix"})
}

/// A stored send's sender is who signed (the system user for the secret).
fn sent_by_caller(_: &mut Client, fx: &Fixture, answer: &Value) -> Option<String> {
    let from = &answer["fromUserId"];
    (answer["seq"].is_i64() && *from != json!(fx.caller_id()))
        .then(|| format!("stored as sent by {from}, not by the caller {}", fx.caller_id()))
}

/// Typing is written for the caller's channel, as typing, or as withheld for a muted caller.
fn typed_as_shown(admin: &mut Client, fx: &Fixture, answer: &Value) -> Option<String> {
    let muted: bool =
        admin.query_one("SELECT muted FROM hatchat.users WHERE id = $1", &[&fx.caller_id()]).unwrap().get(0);
    let kinds: Vec<String> = admin
        .query(
            "SELECT kind FROM hatchat.ephemera WHERE channel_id = $1 AND user_id = $2",
            &[&fx.channel, &fx.caller_id()],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected = [if muted { "withheld" } else { "typing" }];
    let about = (answer["channelId"].clone(), answer["userId"].clone());
    (kinds != expected || about != (json!(fx.channel), json!(fx.caller_id())))
        .then(|| format!("answered {answer}, written as {kinds:?}, expected {expected:?}"))
}

/// A deleted account's id stays taken.
fn tombstone(admin: &mut Client, fx: &Fixture, _: &Value) -> Option<String> {
    let again = admin.query_one(
        "SELECT hatchat.register_user($1, $2, $3)",
        &[&fx.caller_id(), &fixture("bob.pub.pem"), &format!("heir-{}", short_id())],
    );
    match again.map_err(refusal) {
        Err(no) if no.sqlstate == "23505" => None,
        other => Some(format!("the deleted id registered again: {}", show(&other.map(|row| row.get(0))))),
    }
}

/// A created channel is owned by its creator (the system user for the secret), with the options asked.
fn made_as_asked(_: &mut Client, fx: &Fixture, answer: &Value) -> Option<String> {
    let expected = (json!(fx.caller_id()), json!(fx.kind == Kind::Notify));
    let got = (answer["ownerId"].clone(), answer["notifyMembers"].clone());
    (got != expected).then(|| format!("created as {answer}"))
}

/// A room shows room posts only: `{timestamp, from, type, message}`, none erased.
fn room_shows_posts_only(admin: &mut Client, fx: &Fixture) -> Option<String> {
    let room = json_call(admin, "SELECT hatchat.get_room($1, $2)", &[&SECRET, &fx.channel]);
    let room = match room {
        Ok(room) => room,
        Err(no) => return Some(format!("get_room by the secret: {}", show(&Err(no)))),
    };
    let messages = room["messages"].as_array().cloned().unwrap_or_default();
    let strays: Vec<&Value> = messages
        .iter()
        .filter(|m| {
            !(m["from"].is_string()
                && m["type"].is_string()
                && m["message"].is_string()
                && m["timestamp"].is_number())
        })
        .collect();
    (!strays.is_empty()).then(|| format!("get_room shows what is not a room post: {strays:?}"))
}

fn new_room_users(fx: &Fixture) -> Vec<String> {
    let mut users = vec![fx.owner.username.clone(), fx.other.username.clone()];
    users.extend(fx.caller_username().filter(|name| *name != fx.owner.username));
    users
}

/// Every function of schema hatchat that writes, with its cells.
fn rows() -> Vec<Row> {
    // Every array's columns: owner, member, stranger, banned, muted, chat disabled, deleted, secret.
    let sends = channels_and_rooms(
        [W, W, DENY, DENY, Q, DENY, NOAUTH, W],
        [TAKEN, TAKEN, DENY, DENY, TAKEN, DENY, NOAUTH, TAKEN],
    );
    let self_service = any_channel([S, S, S, DENY, S, S, NOAUTH, DENY]);
    let admin_only = any_channel([DENY, DENY, DENY, DENY, DENY, DENY, NOAUTH, S]);
    let role_only = any_channel([DENY; 8]);
    let owner_only = channels_and_rooms(
        [W, DENY, DENY, DENY, DENY, DENY, NOAUTH, DENY],
        [DENY, DENY, DENY, DENY, DENY, DENY, NOAUTH, DENY],
    );
    let reactions = channels_and_rooms(
        [W, W, DENY, DENY, Q, DENY, NOAUTH, DENY],
        [TAKEN, TAKEN, DENY, DENY, TAKEN, DENY, NOAUTH, DENY],
    );
    vec![
        Row::new(
            "send_message",
            "send_message",
            "members and the secret post; a muted member is answered (seq null), nothing stored; a ban \
             refuses; a room takes only the room functions' writes (409), a stranger learns only 403",
            sends,
            |db, _, fx| {
                json_call(
                    db,
                    "SELECT hatchat.send_message($1, $2, $3)",
                    &[&fx.token, &fx.channel, &payload()],
                )
            },
        )
        .verify(sent_by_caller),
        Row::new(
            "send_message, token known to the backend",
            "send_message",
            "as send_message, by the one-statement path of a token this backend verified before the \
             caller was banned, muted or deleted (the deleted caller presents their own old token)",
            sends,
            |db, _, fx| {
                json_call(
                    db,
                    "SELECT hatchat.send_message($1, $2, $3)",
                    &[&fx.token, &fx.channel, &payload()],
                )
            },
        )
        .prep(Prep::KnownToApp)
        .verify(sent_by_caller),
        Row::new(
            "send_message with a client id",
            "send_message",
            "as send_message, by the path of idempotent retries",
            sends,
            |db, _, fx| {
                json_call(
                    db,
                    "SELECT hatchat.send_message($1, $2, $3, 'matrix-1')",
                    &[&fx.token, &fx.channel, &payload()],
                )
            },
        )
        .verify(sent_by_caller),
        Row::new("send_message_text", "send_message_text", "as send_message", sends, |db, _, fx| {
            json_call(
                db,
                "SELECT hatchat.send_message_text($1, $2, $3)",
                &[&fx.token, &fx.channel, &payload().to_string()],
            )
        })
        .verify(sent_by_caller),
        Row::new(
            "send_messages item",
            "send_messages",
            "a batch of one: the item answers what send_message answers alone",
            sends,
            |db, _, fx| {
                let items = json!([{"token": fx.token, "channelId": fx.channel, "payload": payload()}]);
                let answer = json_call(db, "SELECT hatchat.send_messages($1)", &[&items])?;
                item_answer(&answer[0])
            },
        )
        .verify(sent_by_caller),
        Row::new(
            "edit_message",
            "edit_message",
            "the author edits their own message (muted: answered, nothing stored); the secret is no \
             author; no edit reaches a room (409)",
            channels_and_rooms(
                [W, W, DENY, DENY, Q, DENY, NOAUTH, DENY],
                [TAKEN, TAKEN, DENY, DENY, TAKEN, DENY, NOAUTH, TAKEN],
            ),
            |db, _, fx| {
                json_call(
                    db,
                    "SELECT hatchat.edit_message($1, $2, $3, $4)",
                    &[&fx.token, &fx.channel, &fx.target(), &json!({"text": "edited"})],
                )
            },
        ),
        Row::new(
            "delete_message",
            "delete_message",
            "the author deletes their own message, the secret anyone's; erasure is never withheld (a \
             muted author, a room), a ban refuses every write",
            channels_and_rooms([W, W, DENY, DENY, W, W, NOAUTH, W], [W, W, DENY, DENY, W, W, NOAUTH, W]),
            |db, _, fx| {
                json_call(
                    db,
                    "SELECT hatchat.delete_message($1, $2, $3)",
                    &[&fx.token, &fx.channel, &fx.target()],
                )
            },
        ),
        Row::new(
            "edit_message, another's message",
            "edit_message",
            "only the author edits: nobody else, the owner and the secret included (a room refuses \
             first)",
            channels_and_rooms(
                [DENY, DENY, DENY, DENY, DENY, DENY, NOAUTH, DENY],
                [TAKEN, TAKEN, DENY, DENY, TAKEN, DENY, NOAUTH, TAKEN],
            ),
            |db, _, fx| {
                json_call(
                    db,
                    "SELECT hatchat.edit_message($1, $2, $3, $4)",
                    &[&fx.token, &fx.channel, &fx.theirs, &json!({"text": "not yours"})],
                )
            },
        ),
        Row::new(
            "delete_message, another's message",
            "delete_message",
            "besides the author, the channel's owner and the secret delete; a room has no owner (its \
             opener is a member like the others)",
            channels_and_rooms(
                [W, DENY, DENY, DENY, DENY, DENY, NOAUTH, W],
                [DENY, DENY, DENY, DENY, DENY, DENY, NOAUTH, W],
            ),
            |db, _, fx| {
                json_call(
                    db,
                    "SELECT hatchat.delete_message($1, $2, $3)",
                    &[&fx.token, &fx.channel, &fx.theirs],
                )
            },
        ),
        Row::new(
            "react",
            "react",
            "members react to another's message (muted: answered, nothing stored); the secret is no \
             user and reacts nowhere (403, in rooms too); no reaction reaches a room (409)",
            reactions,
            |db, _, fx| {
                json_call(db, "SELECT hatchat.react($1, $2, $3, '👍')", &[&fx.token, &fx.channel, &fx.theirs])
            },
        ),
        Row::new(
            "unreact",
            "unreact",
            "as react, the caller's reaction made before their state changed",
            reactions,
            |db, _, fx| {
                json_call(
                    db,
                    "SELECT hatchat.unreact($1, $2, $3, '👍')",
                    &[&fx.token, &fx.channel, &fx.theirs],
                )
            },
        )
        .prep(Prep::ReactToTheirs),
        Row::new(
            "mark_read",
            "mark_read",
            "a member's own read position, in channels and rooms alike (a muted member too); a ban \
             refuses it; the secret has none",
            channels_and_rooms(
                [W, W, DENY, DENY, W, W, NOAUTH, DENY],
                [W, W, DENY, DENY, W, W, NOAUTH, DENY],
            ),
            |db, _, fx| {
                json_call(db, "SELECT hatchat.mark_read($1, $2, $3)", &[&fx.token, &fx.channel, &fx.theirs])
            },
        ),
        Row::new(
            "set_read_receipts",
            "set_read_receipts",
            "no channel: the same in every column; the user's own setting, refused while banned",
            self_service,
            |db, _, fx| json_call(db, "SELECT hatchat.set_read_receipts($1, false)", &[&fx.token]),
        ),
        Row::new(
            "invite",
            "invite",
            "invite model 'member': members (a muted one too) and the secret add a registered user; a \
             room's member list is fixed, for the secret too",
            channels_and_rooms(
                [W, W, DENY, DENY, W, W, NOAUTH, W],
                [DENY, DENY, DENY, DENY, DENY, DENY, NOAUTH, DENY],
            ),
            |db, admin, fx| {
                let outsider = register(admin, "carol");
                json_call(db, "SELECT hatchat.invite($1, $2, $3)", &[&fx.token, &fx.channel, &outsider.id])
            },
        ),
        Row::new(
            "leave_channel",
            "leave_channel",
            "members leave, the owner cannot; a room's member list is fixed; the secret is no member",
            channels_and_rooms(
                [DENY, W, DENY, DENY, W, W, NOAUTH, DENY],
                [DENY, DENY, DENY, DENY, DENY, DENY, NOAUTH, DENY],
            ),
            |db, _, fx| plain_call(db, "SELECT hatchat.leave_channel($1, $2)", &[&fx.token, &fx.channel]),
        ),
        Row::new(
            "update_channel",
            "update_channel",
            "the owner only (the secret owns nothing; a room's owner is the system)",
            owner_only,
            |db, _, fx| {
                json_call(db, "SELECT hatchat.update_channel($1, $2, 'self')", &[&fx.token, &fx.channel])
            },
        ),
        Row::new(
            "delete_channel",
            "delete_channel",
            "the owner only (the secret owns nothing; a room's owner is the system)",
            owner_only,
            |db, _, fx| plain_call(db, "SELECT hatchat.delete_channel($1, $2)", &[&fx.token, &fx.channel]),
        ),
        Row::new(
            "create_channel",
            "create_channel",
            "plain and notify columns: a new channel of that kind, anyone's but a banned user's (the \
             secret's is the system's); room column: the room's id, taken (409)",
            [
                [S, S, S, DENY, S, S, NOAUTH, S],
                [S, S, S, DENY, S, S, NOAUTH, S],
                [TAKEN, TAKEN, TAKEN, DENY, TAKEN, TAKEN, NOAUTH, TAKEN],
            ],
            |db, _, fx| {
                let id = if fx.kind == Kind::Room { fx.channel.clone() } else { channel_id("made") };
                let options = json!({"notifyMembers": fx.kind == Kind::Notify});
                json_call(
                    db,
                    "SELECT hatchat.create_channel($1, $2, 'member', $3)",
                    &[&fx.token, &id, &options],
                )
            },
        )
        .verify(made_as_asked),
        Row::new(
            "create_room",
            "create_room",
            "plain and notify columns: a new room of the owner, the other member and the caller (the \
             channel plays no part); room column: the room opened again with its users, which a \
             stranger to it may not (401: 28000)",
            [
                [S, S, S, DENY, S, S, NOAUTH, S],
                [S, S, S, DENY, S, S, NOAUTH, S],
                [S, S, NOAUTH, DENY, S, S, NOAUTH, S],
            ],
            |db, _, fx| {
                let (room_type, users) = match fx.kind {
                    Kind::Room => (fx.room_type.clone(), fx.room_users.clone()),
                    Kind::Plain | Kind::Notify => (format!("fresh-{}", short_id()), new_room_users(fx)),
                };
                json_call(db, "SELECT hatchat.create_room($1, $2, $3)", &[&fx.token, &room_type, &users])
            },
        ),
        Row::new(
            "post_room_message",
            "post_room_message",
            "rooms only (a channel is no room: 404); the room's users and the secret post, a muted \
             one is answered and nothing stored, a stranger is told 401 (28000) as ganomede-chat answers",
            channels_and_rooms(
                [GONE, GONE, GONE, GONE, GONE, GONE, NOAUTH, GONE],
                [W, W, NOAUTH, DENY, Q, DENY, NOAUTH, W],
            ),
            |db, _, fx| {
                let body = json!({"timestamp": 2, "type": "t", "message": "matrix"});
                json_call(
                    db,
                    "SELECT hatchat.post_room_message($1, $2, $3)",
                    &[&fx.token, &fx.channel, &body],
                )
            },
        ),
        Row::new(
            "post_system_message",
            "post_system_message",
            "the secret only; room column: into the room, by its type and users; plain and notify \
             columns: a new room of the owner",
            [
                [NOAUTH, NOAUTH, NOAUTH, NOAUTH, NOAUTH, NOAUTH, NOAUTH, S],
                [NOAUTH, NOAUTH, NOAUTH, NOAUTH, NOAUTH, NOAUTH, NOAUTH, S],
                [NOAUTH, NOAUTH, NOAUTH, NOAUTH, NOAUTH, NOAUTH, NOAUTH, W],
            ],
            |db, _, fx| {
                let (room_type, users) = match fx.kind {
                    Kind::Room => (fx.room_type.clone(), fx.room_users.clone()),
                    Kind::Plain | Kind::Notify => {
                        (format!("system-{}", short_id()), vec![fx.owner.username.clone()])
                    }
                };
                let body = json!({"type": room_type, "users": users, "timestamp": 3, "message": "matrix"});
                json_call(db, "SELECT hatchat.post_system_message($1, $2)", &[&fx.token, &body])
            },
        ),
        Row::new(
            "block_user",
            "block_user",
            "no channel: the same in every column; the user's own blocks, refused while banned",
            self_service,
            |db, _, fx| json_call(db, "SELECT hatchat.block_user($1, $2)", &[&fx.token, &fx.other.id]),
        ),
        Row::new(
            "unblock_user",
            "unblock_user",
            "no channel: the same in every column; as block_user, the block made before",
            self_service,
            |db, _, fx| json_call(db, "SELECT hatchat.unblock_user($1, $2)", &[&fx.token, &fx.other.id]),
        )
        .prep(Prep::BlockOther),
        Row::new(
            "set_chat_disabled",
            "set_chat_disabled",
            "no channel: the same in every column; the user's own setting, refused while banned",
            self_service,
            |db, _, fx| json_call(db, "SELECT hatchat.set_chat_disabled($1, true)", &[&fx.token]),
        ),
        Row::new(
            "update_user",
            "update_user",
            "no channel: the same in every column; a user renames only themselves, not while banned",
            self_service,
            |db, _, fx| {
                let name = format!("renamed-{}", short_id());
                json_call(db, "SELECT hatchat.update_user($1, $2, $3)", &[&fx.token, &fx.caller_id(), &name])
            },
        ),
        Row::new(
            "delete_user",
            "delete_user",
            "a user deletes only themselves, banned or not (their memberships go, an owner's channels \
             too); the id is then never registered again",
            channels_and_rooms([W, W, S, W, W, W, NOAUTH, DENY], [W, W, S, W, W, W, NOAUTH, DENY]),
            |db, _, fx| plain_call(db, "SELECT hatchat.delete_user($1, $2)", &[&fx.token, &fx.caller_id()]),
        )
        .verify(tombstone),
        Row::new(
            "register_user",
            "register_user",
            "no channel, no token: the same in every column; the caller's id registered again is \
             taken, a deleted one's too; the secret's (the nil uuid) is reserved",
            any_channel([TAKEN, TAKEN, TAKEN, TAKEN, TAKEN, TAKEN, TAKEN, BAD]),
            |db, _, fx| {
                let name = format!("again-{}", short_id());
                json_call(
                    db,
                    "SELECT hatchat.register_user($1, $2, $3)",
                    &[&fx.caller_id(), &fixture("bob.pub.pem"), &name],
                )
            },
        ),
        Row::new(
            "ban_user",
            "ban_user",
            "no channel: the same in every column; admins only, and a login role is one only with \
             the secret",
            admin_only,
            |db, _, fx| {
                json_call(
                    db,
                    "SELECT hatchat.ban_user($1, $2, now() + interval '1 hour')",
                    &[&fx.token, &fx.other.id],
                )
            },
        ),
        Row::new(
            "unban_user",
            "unban_user",
            "no channel: the same in every column; admins only",
            admin_only,
            |db, _, fx| json_call(db, "SELECT hatchat.unban_user($1, $2)", &[&fx.token, &fx.other.id]),
        ),
        Row::new(
            "mute_user",
            "mute_user",
            "no channel: the same in every column; admins only",
            admin_only,
            |db, _, fx| json_call(db, "SELECT hatchat.mute_user($1, $2, true)", &[&fx.token, &fx.other.id]),
        ),
        Row::new(
            "set_api_secret",
            "set_api_secret",
            "no channel, no token: for roles with hatchat_admin, whatever the caller offers as the \
             new secret (their own credential here)",
            role_only,
            |db, admin, fx| {
                let answer = plain_call(db, "SELECT hatchat.set_api_secret($1)", &[&fx.token]);
                if answer.is_ok() {
                    // Put the matrix's secret back for the other cells.
                    admin.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).unwrap();
                }
                answer
            },
        ),
        Row::new(
            "mark_forwarded",
            "mark_forwarded",
            "no channel, no token: for roles with hatchat_forwarder (the caller's own stream here)",
            role_only,
            |db, _, fx| plain_call(db, "SELECT hatchat.mark_forwarded($1, 1000)", &[&fx.caller_id()]),
        ),
        Row::new(
            "mark_undeliverable",
            "mark_undeliverable",
            "no channel, no token: for roles with hatchat_forwarder",
            role_only,
            |db, _, fx| {
                plain_call(db, "SELECT hatchat.mark_undeliverable($1, 1, 'matrix')", &[&fx.caller_id()])
            },
        ),
        Row::new(
            "notifications_to_forward",
            "notifications_to_forward",
            "no channel, no token: for roles with hatchat_forwarder (it also refreshes stale inboxes)",
            role_only,
            |db, _, _| plain_call(db, "SELECT hatchat.notifications_to_forward()", &[]),
        ),
        Row::new(
            "purge_expired",
            "purge_expired",
            "no channel, no token: open to every role, as it deletes only what has expired (and \
             behaves as missing already); a live channel stays",
            any_channel([S; 8]),
            |db, _, _| plain_call(db, "SELECT hatchat.purge_expired()", &[]),
        ),
        Row::new(
            "add_issuer",
            "add_issuer",
            "no channel: the same in every column; admins only",
            admin_only,
            |db, _, fx| {
                let sql = "SELECT hatchat.add_issuer($1, $2, $3::text::jsonb, 'matrix')";
                json_call(db, sql, &[&fx.token, &format!("https://{}.example", Uuid::new_v4()), &MATRIX_JWKS])
            },
        ),
        Row::new(
            "remove_issuer",
            "remove_issuer",
            "no channel: the same in every column; admins only (an issuer the admin just added)",
            admin_only,
            |db, admin, fx| {
                let iss = format!("https://{}.example", Uuid::new_v4());
                let add = "SELECT hatchat.add_issuer(NULL, $1, $2::text::jsonb, 'matrix')";
                admin.execute(add, &[&iss, &MATRIX_JWKS]).unwrap();
                json_call(db, "SELECT hatchat.remove_issuer($1, $2)", &[&fx.token, &iss])
            },
        ),
        Row::new(
            "set_issuer_keys",
            "set_issuer_keys",
            "no channel, no token: for roles with hatchat_gateway or hatchat_admin",
            role_only,
            |db, _, _| {
                let sql = "SELECT hatchat.set_issuer_keys('https://none.example', $1::text::jsonb)";
                plain_call(db, sql, &[&MATRIX_JWKS])
            },
        ),
        Row::new(
            "typing",
            "typing",
            "members who may post (a muted one too: answered, written as withheld, shown to nobody); \
             no message, so the channel is as it was; the secret is nobody, a stranger learns 403 (in \
             rooms too)",
            channels_and_rooms(
                [S, S, DENY, DENY, S, DENY, NOAUTH, DENY],
                [S, S, DENY, DENY, S, DENY, NOAUTH, DENY],
            ),
            |db, _, fx| json_call(db, "SELECT hatchat.typing($1, $2)", &[&fx.token, &fx.channel]),
        )
        .verify(typed_as_shown),
        Row::new(
            "set_presence_hidden",
            "set_presence_hidden",
            "no channel: the same in every column; the user's own setting, refused while banned",
            self_service,
            |db, _, fx| json_call(db, "SELECT hatchat.set_presence_hidden($1, true)", &[&fx.token]),
        ),
        Row::new(
            "set_presence_hidden, another's id",
            "set_presence_hidden",
            "no channel: the same in every column; nobody sets another user's, the secret included",
            any_channel([DENY, DENY, DENY, DENY, DENY, DENY, NOAUTH, DENY]),
            |db, _, fx| {
                json_call(db, "SELECT hatchat.set_presence_hidden($1, true, $2)", &[&fx.token, &fx.other.id])
            },
        ),
        Row::new(
            "presence_sync",
            "presence_sync",
            "no token: for roles with hatchat_gateway (the caller made present on the channel here)",
            role_only,
            |db, _, fx| {
                let sql = "SELECT hatchat.presence_sync(gen_random_uuid(), ARRAY[$1::text], ARRAY[$2::uuid], '{}', '{}', false, 30)";
                plain_call(db, sql, &[&fx.channel, &fx.caller_id()])
            },
        ),
        Row::new(
            "distribute",
            "distribute",
            "no channel, no token: superusers only (EXECUTE revoked from PUBLIC)",
            role_only,
            |db, _, _| plain_call(db, "SELECT hatchat.distribute()", &[]),
        ),
        Row::new(
            "drop_shards",
            "drop_shards",
            "no channel, no token: superusers only (EXECUTE revoked from PUBLIC)",
            role_only,
            |db, _, _| plain_call(db, "SELECT hatchat.drop_shards()", &[]),
        ),
    ]
}

/// The functions of schema hatchat that are no row of the matrix, each with its reason: they read,
/// or shape JSON for the functions that do.
const READS: [(&str, &str); 31] = [
    ("get_messages", "reads a channel's messages (its members and the secret)"),
    ("get_channel", "reads a channel (its members and the secret)"),
    ("list_channels", "reads the caller's own channels"),
    ("get_room", "reads a room (its users and the secret); every room cell checks what it shows"),
    ("get_user", "reads a user's public profile (open)"),
    ("list_blocked", "reads the caller's own blocks"),
    ("get_notifications", "reads the caller's own notifications"),
    ("undeliverable_notifications", "reads set-aside notifications (hatchat_forwarder, admins)"),
    ("forwarding_status", "counts notifications (hatchat_forwarder, admins)"),
    ("channel_window", "reads a channel for many readers (EXECUTE for hatchat_gateway only)"),
    (
        "channel_ephemera",
        "reads a channel's joins, leaves and typing for many readers (hatchat_gateway only)",
    ),
    ("channel_presence", "reads who is present on a channel (its members and the secret)"),
    ("channel_nodes", "says which Citus node holds each channel (hatchat_gateway only)"),
    ("stream_caller", "says whose a token is and when it expires"),
    ("open_stream", "checks a stream's opening as get_messages reads (hatchat_gateway only)"),
    ("open_streams", "checks streams' openings as get_messages reads (hatchat_gateway only)"),
    ("authenticate", "says whose a token is"),
    ("announcer_mode", "says how this backend announces changes"),
    ("wake_secret", "reads the wake-up secret (EXECUTE for hatchat_gateway and admins only)"),
    ("list_issuers", "reads the trusted issuers (admins)"),
    ("issuer_key_sources", "reads where issuers' keys are fetched from (hatchat_gateway and admins)"),
    ("iso_time", "helper: formats a timestamp"),
    ("user_json", "helper: shapes a user"),
    ("channel_json", "helper: shapes a channel"),
    ("moderation_json", "helper: shapes a user's moderation state"),
    ("sent_json", "helper: shapes a send's answer"),
    ("message_json", "helper: shapes a message"),
    ("read_state_json", "helper: shapes a read position"),
    ("is_live", "helper: whether an expiry has passed"),
    ("add_interval", "helper: adds an interval in UTC"),
    ("refreshed_expiry", "helper: a channel's expiry after a post"),
];

/// Runs one cell; what is wrong with it, if anything.
fn run_cell(admin: &mut Client, app: &mut Client, row: &Row, kind: Kind, who: Who) -> Option<String> {
    let fx = build(admin, app, kind, who, row.prep);
    let expected = row.expect[kind as usize][who as usize];
    let before = digest(admin, &fx.channel);
    let answer = (row.call)(app, admin, &fx);
    let after = digest(admin, &fx.channel);
    let changed = before != after;
    let mut problems = Vec::new();
    problems.extend(match (expected, &answer) {
        (Refused(code), Err(no)) if no.sqlstate == code => {
            changed.then(|| format!("refused ({code}), yet the channel changed"))
        }
        (Refused(_), _) | (_, Err(_)) => Some(format!("expected {expected}, got {}", show(&answer))),
        (W, Ok(_)) => {
            (!changed).then(|| format!("answered, but the channel is as it was: {}", show(&answer)))
        }
        (Q, Ok(value)) => (changed || value.get("seq").is_some_and(|seq| !seq.is_null()))
            .then(|| format!("a muted caller's call was stored: {}", show(&answer))),
        (S, Ok(_)) => changed.then(|| format!("the channel changed: {}", show(&answer))),
    });
    if let (Ok(value), Some(verify)) = (&answer, row.verify) {
        problems.extend(verify(admin, &fx, value));
    }
    if kind == Kind::Room {
        problems.extend(room_shows_posts_only(admin, &fx));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// A cell by its indexes: row, kind of channel, caller.
type Cell = (usize, usize, usize);

fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    match (panic.downcast_ref::<String>(), panic.downcast_ref::<&str>()) {
        (Some(text), _) => text.clone(),
        (_, Some(text)) => text.to_string(),
        _ => "(no message)".to_string(),
    }
}

#[test]
fn every_write_answers_every_caller_in_every_kind_of_channel() {
    let started = Instant::now();
    let mut admin = connect();
    admin.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).unwrap();
    // Creates the login role once, before the workers connect as it.
    drop(app_connection());
    let rows = rows();
    let cells: Vec<Cell> = (0..rows.len())
        .flat_map(|r| (0..KINDS.len()).flat_map(move |k| (0..CALLERS.len()).map(move |c| (r, k, c))))
        .collect();
    let next = AtomicUsize::new(0);
    let wrong: Mutex<Vec<(Cell, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                let (mut admin, mut app) = (connect(), app_connection());
                while let Some(&(r, k, c)) = cells.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let (row, kind, who) = (&rows[r], KINDS[k], CALLERS[c]);
                    let outcome =
                        catch_unwind(AssertUnwindSafe(|| run_cell(&mut admin, &mut app, row, kind, who)));
                    let problem = outcome.unwrap_or_else(|panic| {
                        (admin, app) = (connect(), app_connection());
                        Some(format!("the cell panicked: {}", panic_text(panic)))
                    });
                    if let Some(problem) = problem {
                        let cell = format!("{} × {kind:?} × {who:?}: {problem}", row.label);
                        wrong.lock().unwrap().push(((r, k, c), cell));
                    }
                }
            });
        }
    });
    let mut wrong = wrong.into_inner().unwrap();
    wrong.sort();
    eprintln!(
        "{} rows × {} kinds of channel × {} callers = {} cells in {:.1?}",
        rows.len(),
        KINDS.len(),
        CALLERS.len(),
        cells.len(),
        started.elapsed()
    );
    let list: Vec<String> = wrong.into_iter().map(|(_, cell)| cell).collect();
    assert!(list.is_empty(), "{} of {} cells answered wrong:\n{}", list.len(), cells.len(), list.join("\n"));
}

#[test]
fn every_function_of_the_schema_has_a_row_or_a_reason() {
    let mut db = connect();
    let in_schema: BTreeSet<String> = db
        .query(
            "SELECT DISTINCT p.proname::text FROM pg_proc p WHERE p.pronamespace = 'hatchat'::regnamespace",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let rows = rows();
    let written: BTreeSet<&str> = rows.iter().map(|row| row.function).collect();
    let read: BTreeSet<&str> = READS.iter().map(|(name, _)| *name).collect();
    let mut problems = Vec::new();
    for function in &in_schema {
        if !written.contains(function.as_str()) && !read.contains(function.as_str()) {
            problems.push(format!(
                "hatchat.{function} is neither a row of the writes matrix nor a listed read: give it a \
                 row in rows() (or, if it writes nothing, a reason in READS)"
            ));
        }
    }
    for function in written.union(&read) {
        if !in_schema.contains(*function) {
            problems.push(format!("the matrix names hatchat.{function}, which schema hatchat does not have"));
        }
    }
    for function in written.intersection(&read) {
        problems.push(format!("hatchat.{function} is both a row and a listed read"));
    }
    for row in &rows {
        assert!(!row.note.is_empty(), "row {} says why its cells answer what they do", row.label);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

//! Trusted issuers through SQL: an app's own login signs its users in (src/auth/issuers.rs). Each
//! refused token is refused on its own (28000) and changes nothing; a good one speaks for the user
//! of (iss, sub), made on first use, wherever a token is taken.

mod common;
use common::issuer::{unix_now, Issuer, IssuerKey};
use common::*;
use postgres::Client;
use serde_json::{json, Value};
use uuid::Uuid;

/// Trusts `issuer` (as a superuser: an admin role needs no token).
fn trust(db: &mut Client, issuer: &Issuer) -> Value {
    let jwks = issuer.jwks().to_string();
    db.query_one(
        "SELECT hatchat.add_issuer(NULL, $1, $2::text::jsonb, $3)",
        &[&issuer.iss, &jwks, &issuer.audience],
    )
    .unwrap()
    .get(0)
}

fn who(db: &mut Client, token: &str) -> Result<Uuid, postgres::Error> {
    db.query_one("SELECT hatchat.authenticate($1)", &[&token]).map(|row| row.get(0))
}

fn username(db: &mut Client, id: &Uuid) -> Option<String> {
    db.query_opt("SELECT username FROM hatchat.users WHERE id = $1", &[id]).unwrap().map(|row| row.get(0))
}

fn issuer_users(db: &mut Client, issuer: &Issuer) -> i64 {
    db.query_one("SELECT count(*) FROM hatchat.users WHERE issuer = $1", &[&issuer.iss]).unwrap().get(0)
}

#[test]
fn a_good_token_signs_its_user_in_on_first_use_and_works_everywhere() {
    let mut db = connect();
    for key in [IssuerKey::es256(), IssuerKey::eddsa()] {
        let app = Issuer::new(&format!("app-{}", short_id()), key);
        let added = trust(&mut db, &app);
        assert_eq!(added["iss"], app.iss);
        assert_eq!(added["keyIds"], json!(["k1"]));
        let name = format!("ann-{}", short_id());
        let token = app.token("user-1", &name);
        let id = who(&mut db, &token).unwrap();
        assert_eq!(id.get_version_num(), 5, "a name-based id");
        assert_eq!(username(&mut db, &id), Some(name.clone()));
        assert_eq!(who(&mut db, &token).unwrap(), id, "the same user the second time");

        // The token works in every function: a channel, a send, a read, a stream's caller.
        let channel = channel_id("iss");
        db.query_one("SELECT hatchat.create_channel($1, $2)", &[&token, &channel]).unwrap();
        db.query_one("SELECT hatchat.send_message($1, $2, '{\"text\": \"hi\"}')", &[&token, &channel])
            .unwrap();
        let read: Value =
            db.query_one("SELECT hatchat.get_messages($1, $2)", &[&token, &channel]).unwrap().get(0);
        let last = read.as_array().unwrap().last().unwrap().clone();
        assert_eq!((last["payload"].clone(), last["username"].clone()), (json!({"text": "hi"}), json!(name)));
        let caller: Value = db.query_one("SELECT hatchat.stream_caller($1)", &[&token]).unwrap().get(0);
        assert_eq!(caller["userId"], id.to_string());
        assert!(caller["expiresAt"].is_string());
    }
}

#[test]
fn each_bad_token_is_refused_on_its_own_and_changes_nothing() {
    let mut db = connect();
    let app = Issuer::new(&format!("strict-{}", short_id()), IssuerKey::es256());
    trust(&mut db, &app);
    let now = unix_now();
    let name = format!("bo-{}", short_id());
    let claims = |extra: Value| {
        let mut c = json!({"sub": "bo", "preferred_username": name});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let stranger = Issuer::new("stranger", IssuerKey::es256());
    let mut forged = Issuer::new("x", IssuerKey::es256());
    forged.iss = app.iss.clone();
    let tampered = {
        let good = app.token("bo", &name);
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        parts[1] = common::issuer::b64(
            json!({"iss": app.iss, "aud": app.audience, "sub": "admin", "exp": now + 300, "preferred_username": "x"})
                .to_string()
                .as_bytes(),
        );
        parts.join(".")
    };
    let cases = [
        ("expired", app.token_with(json!({}), claims(json!({"exp": now - 5})))),
        ("from the future", app.token_with(json!({}), claims(json!({"nbf": now + 600})))),
        ("issued in the future", app.token_with(json!({}), claims(json!({"iat": now + 600})))),
        ("beyond max_token_lifetime", app.token_with(json!({}), claims(json!({"exp": now + 90_000})))),
        ("wrong iss", stranger.token("bo", &name)),
        ("wrong aud", app.token_with(json!({}), claims(json!({"aud": "another-app"})))),
        ("unknown kid", app.token_with(json!({"kid": "k9"}), claims(json!({})))),
        ("alg none", app.token_with(json!({"alg": "none"}), claims(json!({})))),
        ("HS256 header", app.token_with(json!({"alg": "HS256"}), claims(json!({})))),
        ("RS256 header over an EC key", app.token_with(json!({"alg": "RS256"}), claims(json!({})))),
        ("another key under the same kid", forged.token("bo", &name)),
        ("a tampered claim", tampered),
        ("no sub", app.token_with(json!({}), json!({"sub": null, "preferred_username": name}))),
    ];
    for (what, token) in cases {
        assert_eq!(sqlstate(who(&mut db, &token)), "28000", "{what}");
    }
    assert_eq!(issuer_users(&mut db, &app), 0, "no user was made");
    assert_eq!(who(&mut db, &app.token("bo", &name)).map(|_| ()).ok(), Some(()), "the good one still works");
}

#[test]
fn an_unknown_key_says_which_issuer_to_refresh_and_new_keys_work_at_once() {
    let mut db = connect();
    let mut app = Issuer::new(&format!("rotating-{}", short_id()), IssuerKey::es256());
    trust(&mut db, &app);
    let name = format!("cy-{}", short_id());
    let old = app.token("cy", &name);
    let id = who(&mut db, &old).unwrap();

    // The app rotates: a new key under a new kid. Until hatchat has it, its tokens are unknown.
    app.key = IssuerKey::eddsa();
    app.kid = "k2".into();
    let new = app.token("cy", &name);
    let (_, detail) = error_text(who(&mut db, &new));
    let detail = detail.expect("a detail");
    assert_eq!(hatchat_wire::issuers::unknown_key_issuer(&detail), Some(app.iss.as_str()), "{detail}");

    // The gateway (or an admin) writes the new keys: the new token works, the removed key stops.
    let jwks = app.jwks().to_string();
    let set: Value = db
        .query_one("SELECT hatchat.set_issuer_keys($1, $2::text::jsonb)", &[&app.iss, &jwks])
        .unwrap()
        .get(0);
    assert_eq!(set["keyIds"], json!(["k2"]));
    assert_eq!(who(&mut db, &new).unwrap(), id, "the same user, under the new key");
    assert_eq!(sqlstate(who(&mut db, &old)), "28000", "a key removed a moment ago");
}

#[test]
fn the_same_sub_at_two_issuers_is_two_users() {
    let mut db = connect();
    let a = Issuer::new(&format!("a-{}", short_id()), IssuerKey::es256());
    let b = Issuer::new(&format!("b-{}", short_id()), IssuerKey::eddsa());
    trust(&mut db, &a);
    trust(&mut db, &b);
    let name = format!("dee-{}", short_id());
    let at_a = who(&mut db, &a.token("42", &name)).unwrap();
    let at_b = who(&mut db, &b.token("42", &name)).unwrap();
    assert_ne!(at_a, at_b);
    // The name was taken by the first: the second gets it with its id's first six hex digits.
    let suffix = &at_b.simple().to_string()[..6];
    assert_eq!(username(&mut db, &at_b), Some(format!("{name}-{suffix}")));
}

#[test]
fn names_follow_the_claim_when_free_and_reserved_ones_get_a_suffix() {
    let mut db = connect();
    let app = Issuer::new(&format!("names-{}", short_id()), IssuerKey::es256());
    trust(&mut db, &app);
    let sub = format!("sub-{}", short_id());
    let id = who(&mut db, &app.token(&sub, "system")).unwrap();
    let suffix = &id.simple().to_string()[..6];
    assert_eq!(username(&mut db, &id), Some(format!("system-{suffix}")), "reserved: suffixed");
    let renamed = format!("eve-{}", short_id());
    who(&mut db, &app.token(&sub, &renamed)).unwrap();
    assert_eq!(username(&mut db, &id), Some(renamed.clone()), "a changed claim renames");
    let taken = register(&mut db, "alice").username;
    who(&mut db, &app.token(&sub, &taken)).unwrap();
    assert_eq!(username(&mut db, &id), Some(renamed), "a taken name is not taken from its holder");
}

#[test]
fn self_registration_cannot_take_an_issuer_users_id_and_deleted_stays_deleted() {
    let mut db = connect();
    let app = Issuer::new(&format!("held-{}", short_id()), IssuerKey::es256());
    trust(&mut db, &app);
    // Anyone can compute the id of (iss, sub): registering it is refused while registration is open.
    let sub = format!("frank-{}", short_id());
    let id = who(&mut db, &app.token(&sub, &sub)).unwrap();
    let squat = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"someone else's");
    let pem = fixture("alice.pub.pem");
    let refused = db.query_one("SELECT hatchat.register_user($1, $2, $3)", &[&squat, &pem, &"squatter"]);
    assert_eq!(sqlstate(refused), "22023");

    // The user deletes their account: their token no longer signs anyone in, nor makes them again.
    let token = app.token(&sub, &sub);
    db.query_one("SELECT hatchat.delete_user($1, $2)", &[&token, &id]).unwrap();
    assert_eq!(sqlstate(who(&mut db, &token)), "28000");
    assert_eq!(username(&mut db, &id), None);
}

#[test]
fn removing_an_issuer_stops_its_tokens_and_keeps_its_users() {
    let mut db = connect();
    let app = Issuer::new(&format!("gone-{}", short_id()), IssuerKey::eddsa());
    trust(&mut db, &app);
    let name = format!("gus-{}", short_id());
    let id = who(&mut db, &app.token("gus", &name)).unwrap();
    let listed: Value = db.query_one("SELECT hatchat.list_issuers(NULL)", &[]).unwrap().get(0);
    assert!(listed.as_array().unwrap().iter().any(|i| i["iss"] == app.iss));
    db.query_one("SELECT hatchat.remove_issuer(NULL, $1)", &[&app.iss]).unwrap();
    assert_eq!(sqlstate(who(&mut db, &app.token("gus", &name))), "28000");
    assert_eq!(username(&mut db, &id), Some(name), "the user stays");
    let again = db.query_one("SELECT hatchat.remove_issuer(NULL, $1)", &[&app.iss]);
    assert_eq!(sqlstate(again), "P0002");
}

#[test]
fn only_admins_manage_issuers_and_bad_keys_are_refused() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let app = Issuer::new(&format!("admin-{}", short_id()), IssuerKey::es256());
    let jwks = app.jwks().to_string();
    let mut app_db = app_connection();
    let by_user = app_db.query_one(
        "SELECT hatchat.add_issuer($1, $2, $3::text::jsonb, 'x')",
        &[&alice.token(), &app.iss, &jwks],
    );
    assert_eq!(sqlstate(by_user), "42501");
    let by_nobody = app_db.query_one("SELECT hatchat.list_issuers(NULL)", &[]);
    assert_eq!(sqlstate(by_nobody), "28000");
    let set = app_db.query_one("SELECT hatchat.set_issuer_keys($1, $2::text::jsonb)", &[&app.iss, &jwks]);
    assert_eq!(sqlstate(set), "42501", "only the gateway's and admins' roles");
    for bad in [json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}), json!({"no": "keys"}), json!([])] {
        let bad = bad.to_string();
        let refused =
            db.query_one("SELECT hatchat.add_issuer(NULL, $1, $2::text::jsonb, 'x')", &[&app.iss, &bad]);
        assert_eq!(sqlstate(refused), "22023", "{bad}");
    }
    trust(&mut db, &app);
    assert_eq!(
        sqlstate(
            db.query_one("SELECT hatchat.add_issuer(NULL, $1, $2::text::jsonb, 'x')", &[&app.iss, &jwks])
        ),
        "23505"
    );
}

#[test]
fn an_issuer_removed_and_added_again_with_new_keys_never_takes_its_old_ones() {
    // One connection throughout: the backend has the old keys parsed when the issuer goes.
    let mut db = connect();
    let mut app = Issuer::new(&format!("again-{}", short_id()), IssuerKey::es256());
    trust(&mut db, &app);
    let name = format!("hal-{}", short_id());
    let old = app.token("hal", &name);
    let id = who(&mut db, &old).unwrap();
    db.query_one("SELECT hatchat.remove_issuer(NULL, $1)", &[&app.iss]).unwrap();
    app.key = IssuerKey::es256();
    trust(&mut db, &app);
    assert_eq!(sqlstate(who(&mut db, &old)), "28000", "the leaked old key");
    assert_eq!(who(&mut db, &app.token("hal", &name)).unwrap(), id, "the new key, the same user");

    // A change of keys rolled back leaves nothing behind in the backend that saw it.
    let mut tx = db.transaction().unwrap();
    let third = IssuerKey::eddsa();
    let jwks = json!({"keys": [third.jwk("k1")]}).to_string();
    tx.query_one("SELECT hatchat.set_issuer_keys($1, $2::text::jsonb)", &[&app.iss, &jwks]).unwrap();
    let rolled =
        Issuer { iss: app.iss.clone(), audience: app.audience.clone(), kid: "k1".into(), key: third };
    tx.query_one("SELECT hatchat.authenticate($1)", &[&rolled.token("hal", &name)]).unwrap();
    tx.rollback().unwrap();
    assert_eq!(sqlstate(who(&mut db, &rolled.token("hal", &name))), "28000", "a key rolled back");
    assert_eq!(who(&mut db, &app.token("hal", &name)).unwrap(), id);
}

#[test]
fn issuer_users_sign_in_under_every_registration_policy() {
    let mut admin = connect();
    let app = Issuer::new(&format!("policy-{}", short_id()), IssuerKey::eddsa());
    trust(&mut admin, &app);
    for policy in ["closed", "secret"] {
        let mut db = session_under(policy);
        let pem = fixture("alice.pub.pem");
        let refused =
            db.query_one("SELECT hatchat.register_user($1, $2, 'nobody')", &[&Uuid::new_v4(), &pem]);
        assert_eq!(sqlstate(refused), "42501", "{policy}: self-registration is refused");
        let name = format!("{policy}-{}", short_id());
        let id = who(&mut db, &app.token(&name, &name)).unwrap();
        assert_eq!(username(&mut admin, &id), Some(name), "{policy}: the issuer's user is made");
    }
}

#[test]
fn squatting_both_names_does_not_keep_an_apps_user_out() {
    let mut db = connect();
    let app = Issuer::new(&format!("squat-{}", short_id()), IssuerKey::es256());
    trust(&mut db, &app);
    let name = format!("ivy-{}", short_id());
    let sub = "ivy";
    // Anyone can compute the id, so the fixed suffix too: register both names first.
    let id = issuer_user_id(&app.iss, sub);
    let fixed = format!("{name}-{}", &id.simple().to_string()[..6]);
    for squatted in [&name, &fixed] {
        let pem = fixture("bob.pub.pem");
        db.query_one("SELECT hatchat.register_user($1, $2, $3)", &[&Uuid::new_v4(), &pem, squatted]).unwrap();
    }
    let signed_in = who(&mut db, &app.token(sub, &name)).unwrap();
    assert_eq!(signed_in, id);
    let got = username(&mut db, &id).unwrap();
    assert!(got.starts_with(&format!("{name}-")) && got != fixed, "a random suffix: {got}");
}

#[test]
fn keys_come_over_https_and_unusable_keys_beside_usable_ones_are_skipped() {
    let mut db = connect();
    let app = Issuer::new(&format!("urls-{}", short_id()), IssuerKey::es256());
    let mut jwks = app.jwks();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "RSA", "use": "enc", "kid": "e1", "n": "AQAB", "e": "AQAB"}));
    let jwks = jwks.to_string();
    let add = "SELECT hatchat.add_issuer(NULL, $1, $2::text::jsonb, 'hatchat', 'preferred_username', $3)";
    for url in
        ["http://keys.example/jwks.json", "ftp://keys.example/jwks", "http://127.0.0.1.evil.example/jwks"]
    {
        assert_eq!(sqlstate(db.query_one(add, &[&app.iss, &jwks, &url])), "22023", "{url}");
    }
    let added: Value = db.query_one(add, &[&app.iss, &jwks, &"http://127.0.0.1:9/jwks.json"]).unwrap().get(0);
    assert_eq!(added["jwksUrl"], "http://127.0.0.1:9/jwks.json");
    who(&mut db, &app.token("jo", &format!("jo-{}", short_id()))).unwrap();
}

/// hatchat's id for (iss, sub), as the database answers it.
fn issuer_user_id(iss: &str, sub: &str) -> Uuid {
    let length = (iss.len() as u64).to_be_bytes();
    let namespace = Uuid::from_u128(0x6861_7463_6861_7400_8000_6973_7375_6572);
    Uuid::new_v5(&namespace, &[&length[..], iss.as_bytes(), sub.as_bytes()].concat())
}

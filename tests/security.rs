//! Secure by construction: an ordinary database role can use the whole API but cannot reach the
//! tables behind it, and the functions ignore the caller's search_path.

mod common;
use common::*;
use serde_json::json;

#[test]
fn an_ordinary_role_uses_the_api_but_cannot_touch_the_tables() {
    let mut app = app_connection();
    let alice = register(&mut app, "alice");
    let channel = create_channel(&mut app, &alice, "owner");
    send(&mut app, &alice, &channel, json!({"text": "through the front door"})).unwrap();
    assert_eq!(messages(&mut app, &alice, &channel).len(), 2);

    for sql in [
        "SELECT * FROM hatchat.messages",
        "INSERT INTO hatchat.members VALUES ('x', '00000000-0000-0000-0000-000000000000')",
        "UPDATE hatchat.users SET public_key = 'mine'",
        "DELETE FROM hatchat.channels",
    ] {
        assert_eq!(sqlstate(app.batch_execute(sql)), "42501", "{sql}");
    }
}

#[test]
fn the_callers_search_path_changes_nothing() {
    let mut db = connect();
    db.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS evil;
         CREATE OR REPLACE FUNCTION evil.lower(text) RETURNS text LANGUAGE sql AS $$ SELECT 'pwned' $$;
         SET search_path = evil, public;",
    )
    .unwrap();
    let alice = register(&mut db, "alice");
    let renamed: serde_json::Value = db
        .query_one("SELECT hatchat.update_user($1, $2, $3)", &[&alice.token(), &alice.id, &alice.username])
        .unwrap()
        .get(0);
    assert_eq!(renamed["username"], json!(alice.username));
    db.batch_execute("SET search_path = ''").unwrap();
    let channel = create_channel(&mut db, &alice, "self");
    assert_eq!(messages(&mut db, &alice, &channel).len(), 1);
}

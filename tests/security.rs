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

/// Least privilege: every SECURITY DEFINER function runs as hatchat_owner, a NOLOGIN role (but on
/// Citus) without members that owns hatchat's tables and nothing outside the schema, not as the installing
/// superuser.
#[test]
fn the_api_functions_run_as_a_role_that_owns_only_hatchats_tables() {
    let mut db = connect();
    let owners: Vec<(String, String)> = db
        .query(
            "SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner)::text FROM pg_proc p \
              WHERE p.pronamespace = 'hatchat'::regnamespace AND p.prosecdef",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(owners.len() > 30, "the API functions: {owners:?}");
    for (function, owner) in &owners {
        assert_eq!(owner, "hatchat_owner", "{function}");
    }
    let role = db
        .query_one(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, \
                    EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid) \
               FROM pg_roles r WHERE rolname = 'hatchat_owner'",
            &[],
        )
        .unwrap();
    // On a Citus cluster the nodes connect to each other as the functions' owner: there, and only
    // there, hatchat.distribute() gives it LOGIN (pg_hba.conf admits it from the nodes only).
    for column in (if on_citus(&mut db) { 1 } else { 0 })..6 {
        assert!(!role.get::<_, bool>(column), "hatchat_owner has attribute {column}");
    }
    let tables: Vec<String> = db
        .query(
            "SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = 'hatchat'::regnamespace \
                AND c.relkind = 'r' AND pg_get_userbyid(c.relowner) <> 'hatchat_owner'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(tables.is_empty(), "tables not owned by hatchat_owner: {tables:?}");
    let elsewhere: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_class c WHERE c.relowner = 'hatchat_owner'::regrole \
                AND c.relnamespace NOT IN ('hatchat'::regnamespace, 'pg_toast'::regnamespace)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(elsewhere, 0);
    // What the functions run as may not read the catalog of passwords or write outside hatchat.
    let mut tx = db.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE hatchat_owner").unwrap();
    assert_eq!(sqlstate(tx.batch_execute("SELECT * FROM pg_authid")), "42501");
    tx.rollback().unwrap();
    let mut tx = db.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE hatchat_owner").unwrap();
    assert_eq!(sqlstate(tx.batch_execute("CREATE TABLE public.hatchat_owner_was_here (x int)")), "42501");
    tx.rollback().unwrap();
}

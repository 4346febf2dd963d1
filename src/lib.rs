//! hatchat: a message broker inside PostgreSQL. `CREATE EXTENSION hatchat` gives the whole broker
//! as SQL functions in schema `hatchat`; every rule (who may do what, token checks, validation,
//! ordering) is decided here, so any client language gets the same guarantees.
//!
//! This file is the index: one module per concept, the settings, and the schema.

use pgrx::prelude::*;

mod access;
mod announce;
mod auth;
mod channels;
mod commit;
mod db;
mod error;
mod limits;
mod messages;
mod moderation;
mod names;
mod notifications;
mod placement;
mod presence;
mod reads;
mod rooms;
mod settings;
mod time;
mod users;
mod window;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/citus.sql", name = "citus", requires = ["schema"]);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::register();
    announce::init();
    commit::init();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}

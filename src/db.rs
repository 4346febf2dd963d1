//! Running hatchat's own SQL from Rust. Statements are prepared once per backend and executed with
//! parameters — user input is never formatted into SQL — and name every object with its schema,
//! so neither a caller's `search_path` nor a planted function can change what they do.

use crate::error::Result;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiTupleTable};
use pgrx::PgOid;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    /// Saved plans by SQL text. Postgres re-plans them itself after DDL (plancache invalidation),
    /// so a dropped and re-created extension in the same backend keeps working.
    static PLANS: RefCell<HashMap<&'static str, Rc<OwnedPreparedStatement>>> =
        RefCell::new(HashMap::new());
}

/// Runs `sql` with `args` and hands the rows to `read`, inside one SPI connection.
pub fn query<R>(
    sql: &'static str,
    args: &[DatumWithOid<'_>],
    read: impl FnOnce(SpiTupleTable<'_>) -> Result<R>,
) -> Result<R> {
    Spi::connect_mut(|client| {
        let plan = match PLANS.with_borrow(|plans| plans.get(sql).cloned()) {
            Some(plan) => plan,
            None => {
                let types: Vec<PgOid> = args.iter().map(|arg| PgOid::from(arg.oid())).collect();
                let plan = Rc::new(client.prepare_mut(sql, &types)?.keep());
                PLANS.with_borrow_mut(|plans| plans.insert(sql, Rc::clone(&plan)));
                plan
            }
        };
        // The Rc keeps the plan alive even if a nested call replaces the map entry meanwhile.
        // `select` rather than `update`: pgrx's `update` assigns a transaction id up front, so a
        // pure read would write a commit record and wake the WAL writer. Plans are prepared in
        // mutable mode, so every statement still gets a fresh snapshot and command counter, and
        // a write gets its transaction id when it writes.
        let rows = client.select(&*plan, None, args)?;
        read(rows)
    })
}

/// The first column of the first row; `None` when there is no row or the value is NULL.
pub fn first<T: FromDatum + IntoDatum>(sql: &'static str, args: &[DatumWithOid<'_>]) -> Result<Option<T>> {
    query(sql, args, |rows| if rows.is_empty() { Ok(None) } else { Ok(rows.first().get::<T>(1)?) })
}

/// Our ids are `uuid::Uuid`; Postgres speaks `pgrx::Uuid`. Same sixteen bytes.
pub fn pg_uuid(id: uuid::Uuid) -> pgrx::Uuid {
    pgrx::Uuid::from_bytes(*id.as_bytes())
}

pub fn rust_uuid(id: pgrx::Uuid) -> uuid::Uuid {
    uuid::Uuid::from_bytes(*id.as_bytes())
}

/// The current time, as `clock_timestamp()` reads it (`GetCurrentTimestamp`), to pass to a
/// statement that may not call it: Citus refuses volatile functions in an UPDATE of a distributed
/// table. Read here rather than by a `SELECT clock_timestamp()`, which cost a statement per send.
pub fn clock() -> Result<pgrx::datum::TimestampWithTimeZone> {
    // SAFETY: reads the system clock; no arguments, no shared state.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    pgrx::datum::TimestampWithTimeZone::try_from(now)
        .map_err(|e| crate::error::HatchatError::Internal(format!("the clock is out of range: {e}")))
}

/// Runs a statement for its effect and says how many rows it touched (or returned).
pub fn execute(sql: &'static str, args: &[DatumWithOid<'_>]) -> Result<usize> {
    query(sql, args, |rows| Ok(rows.len()))
}

//! Running hatchat's own SQL from Rust. Statements are prepared once per backend and executed with
//! parameters — user input is never formatted into SQL — and name every object with its schema,
//! so neither a caller's `search_path` nor a planted function can change what they do.

use crate::error::{HatchatError, Result};
use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiTupleTable};
use pgrx::PgOid;
use pgrx::{FromDatum, IntoDatum, PgMemoryContexts};
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

/// The first row, read by `read`; `None` when there is no row.
pub fn row<R>(
    sql: &'static str,
    args: &[DatumWithOid<'_>],
    read: impl FnOnce(SpiTupleTable<'_>) -> Result<R>,
) -> Result<Option<R>> {
    query(sql, args, |rows| if rows.is_empty() { Ok(None) } else { read(rows.first()).map(Some) })
}

/// The first column of the first row; `None` when there is no row or the value is NULL.
pub fn first<T: FromDatum + IntoDatum>(sql: &'static str, args: &[DatumWithOid<'_>]) -> Result<Option<T>> {
    Ok(row(sql, args, |row| Ok(row.get::<T>(1)?))?.flatten())
}

/// The first column of the one row `sql` always returns (an aggregate, a SELECT without FROM).
pub fn one<T: FromDatum + IntoDatum>(sql: &'static str, args: &[DatumWithOid<'_>]) -> Result<T> {
    first(sql, args)?.ok_or_else(|| HatchatError::Internal(format!("no value from {sql}")))
}

/// The first column's values, NULLs left out, in row order.
pub fn column<T: FromDatum + IntoDatum>(sql: &'static str, args: &[DatumWithOid<'_>]) -> Result<Vec<T>> {
    query(sql, args, |rows| {
        Ok(rows.filter_map(|row| row.get::<T>(1).transpose()).collect::<Result<_, _>>()?)
    })
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
        .map_err(|e| HatchatError::Internal(format!("the clock is out of range: {e}")))
}

/// Runs a statement for its effect and says how many rows it touched (or returned).
pub fn execute(sql: &'static str, args: &[DatumWithOid<'_>]) -> Result<usize> {
    query(sql, args, |rows| Ok(rows.len()))
}

// ---- Jsonb -----------------------------------------------------------------------------------
// `Jsonb`: a `jsonb` value carried through Rust untouched.
//
// pgrx's own `JsonB` converts to `serde_json::Value` and back, which rounds numbers wider than an
// f64 (`12345678901234567890123`), panics on ones out of its range (`1e400`, valid jsonb) and costs
// a parse and a print per value. Message payloads are the users' data and must come back exactly
// as sent, so they (and the JSON results built by SQL) cross the Rust side as the datum itself.

/// A `jsonb` datum. As an argument it points into the caller's memory; read from SPI it is copied
/// into the memory context that outlives the SPI connection (pgrx asks for that context).
#[derive(Debug, Clone, Copy)]
pub struct Jsonb(pg_sys::Datum);

impl Jsonb {
    /// Parses JSON text that hatchat itself produced (the text must be valid JSON).
    pub fn from_text(text: &str) -> Result<Self> {
        let text = std::ffi::CString::new(text)
            .map_err(|_| HatchatError::Internal("JSON text with a NUL byte".into()))?;
        // SAFETY: jsonb_in reads a C string and returns a palloc'd jsonb in the current context.
        let datum =
            unsafe { pgrx::direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(text.as_ptr().into())]) };
        datum.map(Jsonb).ok_or_else(|| HatchatError::Internal("jsonb_in returned NULL".into()))
    }

    /// The value as JSON text (for small values hatchat reads itself, like options).
    pub fn to_text(self) -> String {
        // SAFETY: the datum is a valid jsonb for the lifetime of this value; jsonb_out returns a
        // palloc'd C string in the current memory context, freed below.
        unsafe {
            let text = pgrx::direct_function_call_as_datum(pg_sys::jsonb_out, &[Some(self.0)])
                .expect("jsonb_out returns a string");
            let owned = std::ffi::CStr::from_ptr(text.cast_mut_ptr()).to_string_lossy().into_owned();
            pg_sys::pfree(text.cast_mut_ptr());
            owned
        }
    }
}

impl FromDatum for Jsonb {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        (!is_null).then_some(Jsonb(datum))
    }

    unsafe fn from_datum_in_memory_context(
        mut memory_context: PgMemoryContexts,
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            return None;
        }
        // SAFETY: `datum` is a valid jsonb varlena; the copy lives in `memory_context`.
        memory_context.switch_to(|_| unsafe {
            let copy = pg_sys::pg_detoast_datum_copy(datum.cast_mut_ptr());
            Some(Jsonb(pg_sys::Datum::from(copy)))
        })
    }
}

impl IntoDatum for Jsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

unsafe impl<'fcx> ArgAbi<'fcx> for Jsonb {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

unsafe impl BoxRet for Jsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}

unsafe impl SqlTranslatable for Jsonb {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(Jsonb);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

//! `Jsonb`: a `jsonb` value carried through Rust untouched.
//!
//! pgrx's own `JsonB` converts to `serde_json::Value` and back, which rounds numbers wider than an
//! f64 (`12345678901234567890123`), panics on ones out of its range (`1e400`, valid jsonb) and costs
//! a parse and a print per value. Message payloads are the users' data and must come back exactly
//! as sent, so they (and the JSON results built by SQL) cross the Rust side as the datum itself.

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::{FromDatum, IntoDatum, PgMemoryContexts};

/// A `jsonb` datum. As an argument it points into the caller's memory; read from SPI it is copied
/// into the memory context that outlives the SPI connection (pgrx asks for that context).
#[derive(Debug, Clone, Copy)]
pub struct Jsonb(pg_sys::Datum);

impl Jsonb {
    /// Parses JSON text that hatchat itself produced (the text must be valid JSON).
    pub fn from_text(text: &str) -> crate::error::Result<Self> {
        let text = std::ffi::CString::new(text)
            .map_err(|_| crate::error::HatchatError::Internal("JSON text with a NUL byte".into()))?;
        // SAFETY: jsonb_in reads a C string and returns a palloc'd jsonb in the current context.
        let datum =
            unsafe { pgrx::direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(text.as_ptr().into())]) };
        datum.map(Jsonb).ok_or_else(|| crate::error::HatchatError::Internal("jsonb_in returned NULL".into()))
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

//! What the hatchat extension and its gateway agree on, written once and compiled into both: the
//! two are separate processes, and a rule or a shape copied by hand between them drifts. Plain
//! Rust, no PostgreSQL: unit-tested in milliseconds.

pub mod json;
pub mod wake;

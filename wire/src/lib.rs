//! What the hatchat extension and its gateway agree on, written once and compiled into both: the
//! two are separate processes, and a rule or a shape copied by hand between them drifts. Plain
//! Rust, no PostgreSQL: unit-tested in milliseconds.

pub mod api;
pub mod issuers;
pub mod json;
pub mod shapes;
pub mod sqlstate;
pub mod wake;

/// The service name of the multi-room chat API: the default path prefix of its routes
/// (`/chat/v1/auth/{token}/…`) and the `from` of the notifications its posts create.
pub const CHAT_SERVICE: &str = "chat/v1";

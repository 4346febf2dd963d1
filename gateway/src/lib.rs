//! hatchat-gateway: the HTTP doorway to the hatchat extension. Each route is one SQL call; GET
//! /messages long-polls on NOTIFY through one LISTEN connection per process. No business rules
//! live here.

pub mod backoff;
pub mod config;
pub mod db;
pub mod door;
pub mod error;
pub mod extract;
pub mod group_commit;
pub mod issuers;
pub mod key_requests;
pub mod live;
pub mod memory;
pub mod metrics;
pub mod openapi;
pub mod placement;
pub mod routes;

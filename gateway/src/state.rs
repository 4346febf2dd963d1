//! The gateway's state, shared by every route, and the one way a route calls SQL.

use crate::db::{self, JsonText, Params};
use crate::error::ApiError;
use crate::extract::MaxJsonDepth;
use crate::group_commit::GroupCommit;
use crate::live::Live;
use axum::extract::FromRef;
use deadpool_postgres::Pool;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub group_commit: Arc<GroupCommit>,
    /// `hatchat.max_json_depth`, as the database said at startup.
    pub max_json_depth: usize,
    /// Where every long-poll and stream waits.
    pub live: Live,
}

/// What a route answers: JSON text, or an error.
pub type Answer = Result<JsonText, ApiError>;

impl AppState {
    /// Calls `sql` (one function's jsonb, cast to text) and answers its JSON text.
    pub async fn call(&self, sql: &str, params: &Params<'_>) -> Answer {
        db::call_json(&self.pool, sql, params).await.map(JsonText)
    }

    /// Calls `sql` (a function returning void) and answers `done`, a fixed JSON text.
    pub async fn call_void(&self, sql: &str, params: &Params<'_>, done: &str) -> Answer {
        db::execute(&self.pool, sql, params).await?;
        Ok(JsonText(done.to_string()))
    }
}

impl FromRef<AppState> for MaxJsonDepth {
    fn from_ref(state: &AppState) -> Self {
        MaxJsonDepth(state.max_json_depth)
    }
}

//! The gateway's state and router. `main` serves it; tests build the same router.

use crate::db::{self, JsonText, Params};
use crate::error::ApiError;
use crate::extract::MaxJsonDepth;
use crate::group_commit::GroupCommit;
use crate::listen::Hub;
use crate::long_poll::PollQuota;
use crate::routes;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::StatusCode;
use axum::Router;
use deadpool_postgres::Pool;
use std::sync::Arc;
use std::time::Duration;
use tower_http::trace::TraceLayer;

#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub hub: Arc<Hub>,
    pub group_commit: Arc<GroupCommit>,
    /// The longest a long-poll waits.
    pub max_wait: Duration,
    /// Long-polls waiting per user.
    pub polls: Arc<PollQuota>,
    /// `hatchat.max_json_depth`, as the database said at startup.
    pub max_json_depth: usize,
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

pub fn app(state: AppState, max_body_bytes: usize, chat_prefix: &str) -> Router {
    let api = routes::router(chat_prefix)
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        });
    // Also under /api: clients written for the original deployment (which proxied /api to the
    // broker) work unchanged.
    Router::new()
        .nest("/api", api.clone())
        .merge(routes::web())
        .merge(api)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

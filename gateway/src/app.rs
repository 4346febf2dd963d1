//! The router: every route under its paths, the fallbacks, the body limit. `main` serves it;
//! tests build the same router.

use crate::error::ApiError;
use crate::metrics;
use crate::routes;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use tower_http::trace::TraceLayer;

pub fn app(state: AppState, max_body_bytes: usize, chat_prefix: &str) -> Router {
    metrics::install();
    let api = Router::from(routes::router(chat_prefix))
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
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

//! GET /notifications?after=&limit=&wait=: the caller's notification stream, long-polled like
//! messages (woken by announcements naming the user's key, counted against the user's long-polls).

use crate::db;
use crate::error::ApiError;
use crate::extract::{wait_param, Answer, AppState, Call, QueryParams};
use crate::live::LongPoll;
use crate::openapi::{BadRequest, Db, TooManyRequests, Unauthorized};
use hatchat_wire::api;
use hatchat_wire::shapes::{ErrorBody, Notification};
use serde::Deserialize;
use tokio::time::Instant;
use utoipa::IntoParams;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// notifications after this id
    after: Option<i64>,
    /// most to answer
    limit: Option<i32>,
    /// seconds to wait at most when there are none
    wait: Option<f64>,
}

impl Page {
    async fn read(&self, app: &AppState, token: &Option<String>) -> Result<String, ApiError> {
        db::call_json(&app.pool, api::GET_NOTIFICATIONS, &[token, &self.after, &self.limit]).await
    }
}

/// The caller's notifications; long-polls (`wait`)
///
/// Calls `hatchat.get_notifications`.
#[utoipa::path(get, path = "/notifications", tag = "notifications", params(Page),
    responses((status = 200, description = "OK", body = Vec<Notification>), BadRequest, Unauthorized,
        (status = 403, description = "The server secret, which has no notifications (42501)", body = ErrorBody),
        TooManyRequests, Db))]
pub async fn poll(Call(app, token): Call, QueryParams(page): QueryParams<Page>) -> Answer {
    let deadline = Instant::now() + wait_param(page.wait, app.live.max_wait)?;
    // Whose stream: the subscription needs the user before the first query.
    let user = app.live.user_of(&token).await?;
    let poll = LongPoll { topic: app.live.hub.user(&user), deadline, token: &token, user: Some(user) };
    app.live.long_poll(poll, || true, || page.read(&app, &token)).await
}

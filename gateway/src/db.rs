//! The pool of request connections, and the one way routes call SQL: a statement prepared once per
//! connection, whose jsonb result comes back as text and goes out as the response body unparsed
//! (so payload numbers wider than an f64 survive, and nothing is parsed twice).

use crate::error::ApiError;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use hatchat_wire::api;
use std::future::Future;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

pub type Params<'a> = [&'a (dyn ToSql + Sync)];

pub fn postgres_config(url: &str, application_name: &str) -> Result<tokio_postgres::Config, String> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(|e| format!("DATABASE_URL: {e}"))?;
    config.application_name(application_name);
    config.connect_timeout(Duration::from_secs(10));
    config.keepalives_idle(Duration::from_secs(30));
    Ok(config)
}

/// Request connections; with `request_role`, they run as that role (see `prepare_database`).
pub fn pool(
    url: &str,
    application_name: &str,
    size: usize,
    request_role: Option<&str>,
) -> Result<Pool, String> {
    let mut config = postgres_config(url, application_name)?;
    if let Some(role) = request_role {
        // Added to the server settings the URL may already carry.
        let existing = config.get_options().unwrap_or_default().to_string();
        config.options(format!("{existing} -c role={role}").trim());
    }
    let manager =
        Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| e.to_string())
}

/// How long a request's call may take (`--request-timeout-secs`), set once at startup.
static REQUEST_TIMEOUT: OnceLock<Duration> = OnceLock::new();

pub fn set_request_timeout(limit: Duration) {
    let _ = REQUEST_TIMEOUT.set(limit);
}

/// Runs `sql` (which selects one text column: a function's jsonb cast to text) and returns it.
pub async fn call_json(pool: &Pool, sql: &str, params: &Params<'_>) -> Result<String, ApiError> {
    let client = pool.get().await?;
    let row = within_limit(&client, async {
        let statement = client.prepare_cached(sql).await?;
        client.query_one(&statement, params).await
    })
    .await?;
    Ok(row.get(0))
}

/// One call for a batch of items (`send_messages`, `open_streams`), whose answer is a JSON array
/// of one answer per item: each item's answer, in order, as `read` makes it of the item's text,
/// or the error that item carries. A call that fails is every item's error, and an answer that
/// does not line up with the items is a bug, answered to each.
pub async fn call_batch<I: serde::Serialize, T>(
    pool: &Pool,
    sql: &str,
    items: &[I],
    read: impl Fn(&str) -> Result<T, ApiError>,
) -> Vec<Result<T, ApiError>> {
    let text = serde_json::to_string(items).expect("items serialize");
    let every = |error: ApiError| items.iter().map(|_| Err(error.clone())).collect();
    let answers = match call_json(pool, sql, &[&text]).await {
        Ok(answers) => answers,
        Err(error) => return every(error),
    };
    match serde_json::from_str::<Vec<&serde_json::value::RawValue>>(&answers) {
        Ok(answers) if answers.len() == items.len() => {
            answers.into_iter().map(|answer| ApiError::from_item(answer).and_then(&read)).collect()
        }
        _ => every(ApiError::internal("the batch's answers do not line up with its items")),
    }
}

/// Runs a call on `client` for at most the request timeout. Past it the call is canceled and the
/// request answers 503: a COMMIT still waiting for a standby that is gone (a failover under way)
/// must not hold its client for ever. A canceled commit may still have committed, so the answer
/// says to retry with the same client id, which answers the first send's answer.
async fn within_limit<T>(
    client: &deadpool_postgres::Object,
    call: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, ApiError> {
    let limit = REQUEST_TIMEOUT.get().copied().unwrap_or(Duration::from_secs(10));
    match tokio::time::timeout(limit, call).await {
        Ok(answer) => Ok(answer?),
        Err(_) => {
            let cancel = client.cancel_token();
            tokio::spawn(async move { cancel.cancel_query(NoTls).await });
            Err(ApiError::timed_out(limit))
        }
    }
}

/// Runs `sql` (as `call_json`) and reads its answer as `T`, one of the wire contract's types: an
/// answer of another shape is the extension and the gateway disagreeing, a 500.
pub async fn call_typed<T: serde::de::DeserializeOwned>(
    pool: &Pool,
    sql: &str,
    params: &Params<'_>,
) -> Result<T, ApiError> {
    let text = call_json(pool, sql, params).await?;
    serde_json::from_str(&text).map_err(|e| ApiError::internal(format!("unexpected answer to {sql}: {e}")))
}

/// Runs `sql` for its effect (a function returning void).
pub async fn execute(pool: &Pool, sql: &str, params: &Params<'_>) -> Result<(), ApiError> {
    let client = pool.get().await?;
    within_limit(&client, async {
        let statement = client.prepare_cached(sql).await?;
        client.execute(&statement, params).await
    })
    .await?;
    Ok(())
}

/// JSON text, from SQL or fixed: the response body as it is, parsed by nobody on the way.
pub struct JsonText(pub String);

impl IntoResponse for JsonText {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

/// What startup learnt about the database.
pub struct Prepared {
    pub extension_version: String,
    /// The role requests must run as, when the login role is too powerful to use directly.
    pub request_role: Option<String>,
    /// `hatchat.max_json_depth`: request bodies nested deeper are refused before any SQL.
    pub max_json_depth: usize,
    /// The secret the database keys its wake-ups with (hatchat_wire::wake::Secret).
    pub wake_secret: hatchat_wire::wake::Secret,
}

/// Makes sure the database has the extension (for a database given with DATABASE_URL), and
/// decides which role requests run as: a superuser or hatchat_admin login would let every HTTP
/// client act as an admin, so then requests run as `request_role` (created if missing), and admin
/// calls over HTTP need the server secret.
pub async fn prepare_database(url: &str, request_role: &str) -> Result<Prepared, String> {
    if !request_role.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(format!("request role {request_role:?}: use lowercase letters, digits and _"));
    }
    let config = postgres_config(url, "hatchat-gateway-setup")?;
    let (client, connection) =
        config.connect(NoTls).await.map_err(|e| format!("cannot connect to the database: {e}"))?;
    tokio::spawn(connection);
    if let Err(error) = client.batch_execute("CREATE EXTENSION IF NOT EXISTS hatchat").await {
        tracing::warn!(%error, "CREATE EXTENSION IF NOT EXISTS hatchat failed; checking it is there");
    }
    let row = client
        .query_opt("SELECT extversion FROM pg_extension WHERE extname = 'hatchat'", &[])
        .await
        .map_err(|e| e.to_string())?;
    let extension_version: String = row.map(|r| r.get(0)).ok_or_else(|| {
        "the hatchat extension is not installed in this database and could not be created: \
         install it (scripts/run.sh does) and run CREATE EXTENSION hatchat as a privileged role"
            .to_string()
    })?;
    let powers = client
        .query_one(
            "SELECT r.rolsuper, pg_has_role(current_user, 'hatchat_admin', 'USAGE') FROM pg_roles r \
              WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let (superuser, admin): (bool, bool) = (powers.get(0), powers.get(1));
    let max_json_depth = read_max_json_depth(&client).await?;
    let wake_secret = read_wake_secret(&client).await?;
    if !superuser && !admin {
        return Ok(Prepared { extension_version, request_role: None, max_json_depth, wake_secret });
    }
    if superuser {
        client
            .batch_execute(&format!(
                // Gateways starting together on a fresh database race to create the role: the
                // losers wait for the winner's commit and get unique_violation, which means done.
                "DO $$ BEGIN \
                     IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{request_role}') THEN \
                         CREATE ROLE {request_role} NOLOGIN; \
                     END IF; \
                 EXCEPTION WHEN unique_violation OR duplicate_object THEN NULL; \
                 END $$"
            ))
            .await
            .map_err(|e| format!("cannot create the request role {request_role}: {e}"))?;
    }
    // Check the role can be taken and has no admin rights of its own.
    client
        .batch_execute(&format!("SET ROLE {request_role}"))
        .await
        .map_err(|e| format!("the login role has admin rights and cannot SET ROLE {request_role}: {e}"))?;
    let still_admin: bool = client
        .query_one("SELECT pg_has_role(current_user, 'hatchat_admin', 'USAGE')", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    if still_admin {
        return Err(format!(
            "the request role {request_role} has hatchat_admin: HTTP clients would act as admins"
        ));
    }
    tracing::info!(role = request_role, "requests run as a role without admin rights");
    Ok(Prepared {
        extension_version,
        request_role: Some(request_role.to_string()),
        max_json_depth,
        wake_secret,
    })
}

/// The database's wake-up secret, which only the gateway role (and admins) may read: without it
/// the gateway cannot tell which waiters a wake-up is for.
async fn read_wake_secret(client: &tokio_postgres::Client) -> Result<hatchat_wire::wake::Secret, String> {
    let row = client.query_one(api::WAKE_SECRET, &[]).await.map_err(|e| {
        format!("cannot read hatchat.wake_secret() ({e}): the gateway's login role needs hatchat_gateway")
    })?;
    row.get::<_, Option<String>>(0)
        .as_deref()
        .and_then(hatchat_wire::wake::Secret::from_hex)
        .ok_or_else(|| "hatchat.wake_secret() answered no secret: reinstall the extension".to_string())
}

/// `hatchat.max_json_depth` as this database sets it. Until the extension's library is loaded in a
/// session the setting is only defined if someone set it (then it holds their value); otherwise it
/// has its default, which the wire crate shares.
async fn read_max_json_depth(client: &tokio_postgres::Client) -> Result<usize, String> {
    let row = client
        .query_one("SELECT current_setting('hatchat.max_json_depth', true)", &[])
        .await
        .map_err(|e| e.to_string())?;
    match row.get::<_, Option<String>>(0) {
        None => Ok(hatchat_wire::json::DEFAULT_MAX_DEPTH),
        Some(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|depth| (1..=1000).contains(depth))
            .ok_or_else(|| format!("hatchat.max_json_depth is {text:?}: set it to 1..1000")),
    }
}

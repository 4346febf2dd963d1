//! Keeps trusted issuers' keys fresh (hatchat.add_issuer): fetches each issuer's JWKS URL on a
//! schedule, and when a token names a key the database does not know (at most once a minute per
//! issuer), and writes the keys through hatchat.set_issuer_keys, which the gateway's role may call
//! for this alone. The database verifies every token; this only carries keys to it.
//!
//! Errors ask for an issuer's keys through key_requests.rs, without knowing this task.

use crate::backoff::Backoff;
use crate::db;
use deadpool_postgres::Pool;
use hatchat_wire::api;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// The least time between two fetches of one issuer's keys for unknown keys.
const AT_MOST_EVERY: Duration = Duration::from_secs(60);
/// The longest a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest JWKS document taken.
const MAX_JWKS_BYTES: usize = 256 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Source {
    iss: String,
    jwks_url: String,
}

/// Fetches every issuer's keys every `every`, and an issuer's when one of its keys is unknown.
pub fn spawn_refresher(pool: Pool, every: Duration) {
    let Some(mut unknown) = crate::key_requests::take() else { return };
    tokio::spawn(async move {
        // No redirects: the operator named the URL (https, or http on the loopback), and a redirect
        // could lead the fetch anywhere, in the clear.
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let mut last: HashMap<String, Instant> = HashMap::new();
        let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            let only = tokio::select! {
                _ = ticks.tick() => None,
                Some(iss) = unknown.recv() => Some(iss),
            };
            if let Some(iss) = &only {
                if last.get(iss).is_some_and(|at| at.elapsed() < AT_MOST_EVERY) {
                    continue;
                }
                last.insert(iss.clone(), Instant::now());
            }
            match refresh(&pool, &http, only.as_deref()).await {
                Ok(()) => backoff.reset(),
                Err(error) => {
                    tracing::warn!(%error, "could not refresh trusted issuers' keys");
                    tokio::time::sleep(backoff.next_wait()).await;
                }
            }
        }
    });
}

/// Fetches the keys of every issuer with a JWKS URL (or only of `only`) and writes each.
async fn refresh(pool: &Pool, http: &reqwest::Client, only: Option<&str>) -> Result<(), String> {
    let sources: Vec<Source> =
        db::call_typed(pool, api::ISSUER_KEY_SOURCES, &[]).await.map_err(|e| e.message)?;
    for source in sources.iter().filter(|s| only.is_none_or(|iss| iss == s.iss)) {
        match fetch(http, &source.jwks_url).await {
            Ok(jwks) => {
                if let Err(error) = db::call_json(pool, api::SET_ISSUER_KEYS, &[&source.iss, &jwks]).await {
                    tracing::warn!(iss = source.iss, error = error.message, "the issuer's JWKS was refused");
                }
            }
            Err(error) => {
                tracing::warn!(iss = source.iss, url = source.jwks_url, %error, "cannot fetch JWKS")
            }
        }
    }
    Ok(())
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let mut response = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    // Read up to the bound, never the whole of what a host sends.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("a JWKS over {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|e| e.to_string())
}

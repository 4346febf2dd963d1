//! Reads the settings, connects, serves, and shuts down gracefully on SIGTERM/SIGINT: waiting
//! long-polls are answered at once and in-flight requests finish.

use clap::Parser;
use hatchat_gateway::config::{Config, LogFormat};
use hatchat_gateway::db;
use hatchat_gateway::door::Door;
use hatchat_gateway::extract::AppState;
use hatchat_gateway::group_commit::GroupCommit;
use hatchat_gateway::issuers::spawn_refresher;
use hatchat_gateway::live::bounds::{Budget, Quota};
use hatchat_gateway::live::forward::{spawn_forwarder, Target};
use hatchat_gateway::live::hub::spawn_listener;
use hatchat_gateway::live::nodes::spawn_node_listeners;
use hatchat_gateway::live::opener::{self, Opener};
use hatchat_gateway::live::presence::Presence;
use hatchat_gateway::live::{check_window_access, Feeds, Hub, Live};
use hatchat_gateway::placement::Placement;
use hatchat_gateway::routes::app;
use hatchat_wire::api;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    init_logging(config.log_format);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let prepared = db::prepare_database(&config.database_url, &config.request_role).await?;
    let role = prepared.request_role.as_deref();
    let pool = db::pool(&config.database_url, &config.application_name, config.pool_size, role)?;
    check_window_access(&pool).await?;
    db::set_request_timeout(config.request_timeout());
    let hub = Hub::new(prepared.wake_secret);
    let listener_name = format!("{}-listener", config.application_name);
    spawn_listener(Arc::clone(&hub), db::postgres_config(&config.database_url, &listener_name)?);
    spawn_node_listeners(Arc::clone(&hub), db::postgres_config(&config.database_url, &listener_name)?);
    if let Some(url) = &config.notify_url {
        let name = format!("{}-forwarder", config.application_name);
        let target = Target { url: url.clone(), give_up: Duration::from_secs(config.forward_give_up_secs) };
        spawn_forwarder(Arc::clone(&hub), db::postgres_config(&config.database_url, &name)?, target);
    }
    spawn_purger(pool.clone(), config.purge_interval_secs);
    spawn_refresher(pool.clone(), Duration::from_secs_f64(config.jwks_refresh_secs.clamp(1.0, 86_400.0)));
    let placement = Placement::detect(&pool).await;
    if placement.is_some() {
        tracing::info!("Citus cluster: group commit batches sends by the node of their channel");
    }
    let group_commit = GroupCommit::new(pool.clone(), config.send_slots, placement);
    let budget = Budget::new(config.stream_buffer_bytes, config.streams_max_bytes);
    let feeds = Feeds::new(pool.clone(), Arc::clone(&hub), Arc::clone(&budget));
    // Presence syncs have a connection of their own: they neither wait behind busy requests (a
    // lease must be renewed in time) nor take a request connection from a stream catching up.
    let presence_pool =
        db::pool(&config.database_url, &format!("{}-presence", config.application_name), 1, role)?;
    let presence = Presence::new(presence_pool, config.presence_lease());
    tokio::spawn(Arc::clone(&presence).run());
    let live = Live {
        pool: pool.clone(),
        hub: Arc::clone(&hub),
        feeds,
        quota: Quota::new(config.max_polls_per_user),
        budget,
        presence: Arc::clone(&presence),
        opener: Opener::new(opener_pools(&config, role)?),
        streams: config.stream_settings(),
        max_wait: config.max_wait(),
    };
    let state = AppState { pool, group_commit, max_json_depth: prepared.max_json_depth, live };
    let listener = listen(config.listen).map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    tracing::info!(
        address = %config.listen,
        extension = prepared.extension_version,
        max_json_depth = prepared.max_json_depth,
        "hatchat gateway serving"
    );
    let router = app(state, config.max_body_bytes, &config.chat_prefix);
    let (door, streams_ended) = Door::open(listener, router.clone()).map_err(|e| e.to_string())?;
    // Served as a made service: a Router served as it is rebuilds its whole route table for each
    // connection (axum's `Service<IncomingStream>`), some 60 kB that a stream holds while open.
    axum::serve(door, router.into_make_service())
        .with_graceful_shutdown(shutdown_signal(hub))
        .await
        .map_err(|e| e.to_string())?;
    streams_ended.closed().await;
    // Its users leave now rather than when the lease runs out.
    presence.depart().await;
    Ok(())
}

/// The stream openings' connections, one for each of the opener's slots (opener.rs).
fn opener_pools(config: &Config, request_role: Option<&str>) -> Result<Vec<deadpool_postgres::Pool>, String> {
    let name = format!("{}-opener", config.application_name);
    (0..opener::SLOTS).map(|_| db::pool(&config.database_url, &name, 1, request_role)).collect()
}

/// Deletes expired channels every `interval` seconds (0: never).
fn spawn_purger(pool: deadpool_postgres::Pool, interval: u64) {
    if interval == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(interval));
        loop {
            ticks.tick().await;
            match db::call_json(&pool, api::PURGE_EXPIRED, &[]).await {
                Ok(purged) if purged != "0" => tracing::info!(purged, "purged expired channels"),
                Ok(_) => {}
                Err(error) => tracing::warn!(message = error.message, "purging expired channels failed"),
            }
        }
    });
}

async fn shutdown_signal(hub: Arc<Hub>) {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = interrupt => {},
        _ = terminate.recv() => {},
    }
    tracing::info!(waiting = hub.waiting(), "shutting down: answering long-polls, finishing requests");
    hub.shut_down();
    // A request stuck on an unreachable database must not keep the process alive forever.
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        tracing::warn!("requests still running after 30 s; exiting");
        std::process::exit(1);
    });
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,tower_http=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Connections the kernel may hold for the gateway to accept (capped by `net.core.somaxconn`).
/// tokio's default, 1024, overflowed when thousands of clients reconnected at once: each dropped
/// handshake is retried by its client a second later, then three, and a storm's opening took 3 to
/// 8 s on the same work.
const LISTEN_BACKLOG: u32 = 65_535;

fn listen(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket =
        if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

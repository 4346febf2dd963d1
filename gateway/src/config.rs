//! Settings: flags, each with an environment fallback.

use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Parser)]
#[command(name = "hatchat-gateway", version, about = "HTTP gateway for the hatchat PostgreSQL extension")]
pub struct Config {
    /// PostgreSQL connection string of a database with (or allowed to create) the hatchat extension.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Address to serve HTTP on.
    #[arg(long, env = "HATCHAT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Database connections for requests. A waiting long-poll holds none.
    #[arg(long, env = "HATCHAT_POOL_SIZE", default_value_t = 16)]
    pub pool_size: usize,

    /// Send transactions run at once. Sends arriving while all are busy are committed together in
    /// the next free one (group commit). A send transaction waiting on a lock stops counting after
    /// 50 ms, so one slot is enough; more trade batching for parallel commits.
    #[arg(long, env = "HATCHAT_SEND_SLOTS", default_value_t = 1)]
    pub send_slots: usize,

    /// Longest time a GET /messages long-poll waits, in seconds (clients may ask for less with `wait`).
    #[arg(long, env = "HATCHAT_MAX_WAIT", default_value_t = 30.0)]
    pub max_wait_secs: f64,

    /// Long-polls (GET /messages, GET /notifications) one user may hold waiting at once on this
    /// gateway; more answer 429 with Retry-After.
    #[arg(long, env = "HATCHAT_MAX_POLLS_PER_USER", default_value_t = 16)]
    pub max_polls_per_user: usize,

    /// Seconds between heartbeats on an idle live stream: an SSE comment, a WebSocket ping. Keeps
    /// proxies from closing quiet streams, and finds clients that went away.
    #[arg(long, env = "HATCHAT_STREAM_HEARTBEAT", default_value_t = 20.0)]
    pub stream_heartbeat_secs: f64,

    /// Messages a live stream (SSE stream, WebSocket subscription) may have waiting for a client
    /// that does not read; beyond, the stream is closed ("slow consumer") and the client resumes
    /// from its last seq. Also the page size a stream catches up with.
    #[arg(long, env = "HATCHAT_STREAM_BUFFER", default_value_t = 1000)]
    pub stream_buffer: usize,

    /// Bytes a live stream (an SSE stream, a WebSocket subscription, a WebSocket socket's queue)
    /// may hold for a client that does not read; beyond, as beyond --stream-buffer. One message
    /// always fits. Also what a stream catching up reads at a time: 256 kB is a thousand chat
    /// messages of 250 bytes, or four of the largest payload hatchat takes by default.
    #[arg(long, env = "HATCHAT_STREAM_BUFFER_BYTES", default_value_t = 256 * 1024)]
    pub stream_buffer_bytes: usize,

    /// Bytes all live streams together may hold for their clients; beyond, the stream that would
    /// pass it closes as a slow consumer. Bounds the gateway's memory whatever the number of users.
    #[arg(long, env = "HATCHAT_STREAMS_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub streams_max_bytes: usize,

    /// Seconds between fetches of every trusted issuer's JWKS URL (hatchat.add_issuer). A token
    /// naming a key the database does not know also fetches its issuer's, at most once a minute.
    #[arg(long, env = "HATCHAT_JWKS_REFRESH", default_value_t = 300.0)]
    pub jwks_refresh_secs: f64,

    /// Largest request body, in bytes. Message payloads have their own limit in the database
    /// (hatchat.max_payload_bytes), checked there.
    #[arg(long, env = "HATCHAT_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// application_name of this gateway's database connections (its listener adds `-listener`), so
    /// an operator can tell gateways apart in pg_stat_activity.
    #[arg(long, env = "HATCHAT_APPLICATION_NAME", default_value = "hatchat-gateway")]
    pub application_name: String,

    /// Path prefix of the multi-room chat routes (`/{prefix}/auth/{token}/rooms`…).
    #[arg(long, env = "HATCHAT_CHAT_PREFIX", default_value = hatchat_wire::CHAT_SERVICE)]
    pub chat_prefix: String,

    /// When set, every notification is POSTed as JSON to this URL (at least once, in order per
    /// user, retried with backoff; progress is kept in the database).
    #[arg(long, env = "HATCHAT_NOTIFY_URL")]
    pub notify_url: Option<String>,

    /// Seconds a notification may keep failing to forward (5xx, timeouts, unreachable receiver)
    /// before it is set aside as undeliverable and the user's next ones go on. A 4xx other than
    /// 408 and 429 sets it aside at once.
    #[arg(long = "forward-give-up-secs", env = "HATCHAT_FORWARD_GIVE_UP", default_value_t = 3600)]
    pub forward_give_up_secs: u64,

    /// Seconds a request's database call may take (0.1..3600): past it the call is canceled and the
    /// request answers 503 with Retry-After (a COMMIT waiting for a standby that is gone, a failover
    /// under way). Long-polls and streams wait longer, but each of their calls is bounded too.
    #[arg(long, env = "HATCHAT_REQUEST_TIMEOUT", default_value_t = 10.0)]
    pub request_timeout_secs: f64,

    /// Seconds this gateway's presence lease lasts (3..3600): if the gateway stops renewing it (it
    /// is killed, or cut off), its users' presence ends within about this long. It renews every
    /// third of it, one call, also when nothing changed.
    #[arg(long, env = "HATCHAT_PRESENCE_LEASE", default_value_t = 15)]
    pub presence_lease_secs: u64,

    /// Seconds between calls of hatchat.purge_expired() (0 turns purging off).
    #[arg(long, env = "HATCHAT_PURGE_INTERVAL", default_value_t = 60)]
    pub purge_interval_secs: u64,

    /// The database role requests run as when the login role is a superuser or an admin: HTTP
    /// clients must never act with admin rights (admin calls then need the server secret).
    #[arg(long, env = "HATCHAT_REQUEST_ROLE", default_value = "hatchat_gateway")]
    pub request_role: String,

    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "HATCHAT_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    pub fn max_wait(&self) -> Duration {
        Duration::from_secs_f64(self.max_wait_secs.clamp(0.0, 3600.0))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout_secs.clamp(0.1, 3600.0))
    }

    pub fn presence_lease(&self) -> Duration {
        Duration::from_secs(self.presence_lease_secs.clamp(3, 3600))
    }

    pub fn stream_settings(&self) -> StreamSettings {
        StreamSettings {
            heartbeat: Duration::from_secs_f64(self.stream_heartbeat_secs.clamp(0.05, 3600.0)),
            buffer: self.stream_buffer.clamp(1, 100_000),
        }
    }
}

/// How live streams behave (see the flags above).
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub heartbeat: Duration,
    pub buffer: usize,
}

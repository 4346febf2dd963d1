//! The other nodes of a Citus cluster, and a listener on each. A plain-SQL send made directly on a
//! worker is announced by that worker's announcer (hatchat is preloaded on every node), so its
//! NOTIFY fires there, not on the node this gateway's URL names: the gateway LISTENs on every node.
//! Each node is reached with the URL's credentials, database and settings, at the host and port
//! the cluster's metadata (`pg_dist_node`) gives it. Without Citus there is nothing to do.

use super::hub::{keep_listening, Hub};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

/// How often the node list is read again (a worker added or removed later).
const REFRESH: Duration = Duration::from_secs(30);

/// Whether the database is part of a Citus cluster (the `citus` extension is created in it).
const IS_CITUS: &str = "SELECT to_regclass('pg_catalog.pg_dist_node') IS NOT NULL \
                               AND to_regclass('pg_catalog.pg_dist_local_group') IS NOT NULL";

/// The primary nodes of the cluster but the one we are connected to, as `host:port`.
const OTHER_NODES: &str = "\
    SELECT n.nodename, n.nodeport FROM pg_catalog.pg_dist_node n \
     WHERE n.isactive AND n.noderole = 'primary' \
       AND n.groupid <> (SELECT l.groupid FROM pg_catalog.pg_dist_local_group l) \
     ORDER BY n.nodeid";

/// Reads the other nodes of the cluster (none without Citus).
pub async fn other_nodes(
    config: &tokio_postgres::Config,
) -> Result<Vec<(String, u16)>, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let connection = tokio::spawn(connection);
    let nodes = async {
        if !client.query_one(IS_CITUS, &[]).await?.get::<_, bool>(0) {
            return Ok(Vec::new());
        }
        let rows = client.query(OTHER_NODES, &[]).await?;
        Ok(rows
            .iter()
            .filter_map(|row| Some((row.get::<_, String>(0), u16::try_from(row.get::<_, i32>(1)).ok()?)))
            .collect())
    }
    .await;
    drop(client);
    let _ = connection.await;
    nodes
}

/// `base` (the gateway's own connection settings) pointed at another host and port.
pub fn config_for(base: &tokio_postgres::Config, host: &str, port: u16) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config.host(host).port(port).ssl_mode(base.get_ssl_mode()).keepalives_idle(base.get_keepalives_idle());
    if let Some(user) = base.get_user() {
        config.user(user);
    }
    if let Some(password) = base.get_password() {
        config.password(password);
    }
    if let Some(dbname) = base.get_dbname() {
        config.dbname(dbname);
    }
    if let Some(options) = base.get_options() {
        config.options(options);
    }
    if let Some(name) = base.get_application_name() {
        config.application_name(name);
    }
    if let Some(timeout) = base.get_connect_timeout() {
        config.connect_timeout(*timeout);
    }
    config
}

/// Keeps a listener on every other node of the cluster `base` connects to: reads the node list at
/// start and every `REFRESH`, starts a listener (`listen::keep_listening`: backoff, everyone woken
/// after each reconnect) for each new node and stops those of nodes that left. On a single node it
/// reads the list once in a while and finds nothing.
pub fn spawn_node_listeners(hub: Arc<Hub>, base: tokio_postgres::Config) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut listening: HashMap<String, JoinHandle<()>> = HashMap::new();
        while !hub.is_shutting_down() {
            match other_nodes(&base).await {
                Ok(nodes) => follow(&hub, &base, &mut listening, &nodes),
                Err(error) => {
                    tracing::warn!(%error, "could not read the cluster's nodes; trying again later")
                }
            }
            hub.nodes_known();
            tokio::time::sleep(REFRESH).await;
        }
    })
}

/// Starts and stops listeners so that exactly `nodes` have one.
fn follow(
    hub: &Arc<Hub>,
    base: &tokio_postgres::Config,
    listening: &mut HashMap<String, JoinHandle<()>>,
    nodes: &[(String, u16)],
) {
    let names: Vec<String> = nodes.iter().map(|(host, port)| format!("{host}:{port}")).collect();
    listening.retain(|name, task| {
        let keep = names.contains(name);
        if !keep {
            tracing::info!(node = name, "node left the cluster; no longer listening there");
            task.abort();
            hub.forget_node(name);
        }
        keep
    });
    for ((host, port), name) in nodes.iter().zip(names) {
        if listening.contains_key(&name) {
            continue;
        }
        let (hub, config, connected) = (Arc::clone(hub), config_for(base, host, *port), hub.add_node(&name));
        listening.insert(name, tokio::spawn(async move { keep_listening(&hub, &config, &connected).await }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn another_node_is_reached_with_the_same_credentials_database_and_settings() {
        let base = tokio_postgres::Config::from_str(
            "postgres://gw:secret@coordinator:5432/chat?application_name=hatchat-listener&options=-c%20role%3Dx",
        )
        .unwrap();
        let node = config_for(&base, "worker-2", 6432);
        assert_eq!(node.get_hosts(), &[tokio_postgres::config::Host::Tcp("worker-2".into())]);
        assert_eq!(node.get_ports(), &[6432]);
        assert_eq!(node.get_user(), Some("gw"));
        assert_eq!(node.get_password(), Some(&b"secret"[..]));
        assert_eq!(node.get_dbname(), Some("chat"));
        assert_eq!(node.get_application_name(), Some("hatchat-listener"));
        assert_eq!(node.get_options(), Some("-c role=x"));
    }
}

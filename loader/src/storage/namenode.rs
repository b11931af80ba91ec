//! The `hdfs_native::Client` of one HDFS storage, and its replacement after a hung call.
//!
//! hdfs-native keeps one RPC connection per NameNode and reuses it for as long as its reader
//! task runs; the connection has no read timeout. When the network path to the NameNode is cut
//! (a link down, a firewall dropping packets) nothing closes that connection, so every later
//! call is written into it and waits forever. Our attempt timeout ends the wait, but the
//! client's next call would take the same dead connection. So an attempt that timed out
//! replaces the client with a freshly built one, whose first call opens a new connection: it
//! fails at once while the path is cut (no route, refused) and succeeds once it is back.

use hdfs_native::{Client, ClientBuilder, HdfsError};
use std::sync::{Arc, Mutex};

/// One client at a time, numbered so that several calls that timed out together replace it
/// once, not once each.
#[derive(Clone, Debug)]
pub(super) struct NamenodeClient {
    /// `hdfs://authority`, what the client is built for.
    base: Arc<str>,
    current: Arc<Mutex<(u64, Client)>>,
}

impl NamenodeClient {
    /// Builds the first client; nothing is contacted yet.
    pub(super) fn new(base: &str) -> Result<NamenodeClient, HdfsError> {
        Ok(NamenodeClient {
            current: Arc::new(Mutex::new((0, build(base)?))),
            base: base.into(),
        })
    }

    /// The client for the next attempt, with its generation (to pass to [`Self::replace`]).
    pub(super) fn get(&self) -> (u64, Client) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (current.0, current.1.clone())
    }

    /// After an attempt with client `generation` timed out: builds a new client unless another
    /// caller already has. The old client's connection is dropped with its last clone (its
    /// reader task ends when the socket finally closes).
    pub(super) fn replace(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.0 != generation {
            return;
        }
        match build(&self.base) {
            Ok(client) => {
                tracing::debug!(namenode = %self.base, "an HDFS call timed out; reconnecting with a new client");
                *current = (generation + 1, client);
            }
            // The same settings built a client before, so this is not expected; the old
            // client is kept and its calls keep timing out, which the caller reports.
            Err(e) => {
                tracing::warn!(namenode = %self.base, error = %e, "cannot rebuild the HDFS client after a timeout")
            }
        }
    }

    /// The current generation (for tests).
    #[cfg(test)]
    pub(super) fn generation(&self) -> u64 {
        self.get().0
    }
}

/// A client for `base` with our settings: a short failover round, and Kerberos when a keytab
/// login is set for the process.
fn build(base: &str) -> Result<Client, HdfsError> {
    use super::hdfs::kerberos_login;
    // hdfs-native reads HADOOP_CONF_DIR (core-site.xml, hdfs-site.xml) for name services,
    // HA NameNodes, Kerberos and delegation tokens. Its own failover loop defaults to 15
    // attempts with sleeps up to 15 s, which kept a poll against a stopped NameNode hanging
    // for minutes; a short failover round here, and our backoff around it, bound that.
    let mut config = vec![
        ("dfs.client.failover.max.attempts", "2"),
        ("dfs.client.failover.sleep.base.millis", "100"),
        ("dfs.client.failover.sleep.max.millis", "500"),
    ];
    // A keytab means Kerberos, even without the cluster's core-site.xml at hand (the data
    // transfer protection still comes from its hdfs-site.xml, in HADOOP_CONF_DIR).
    if kerberos_login().is_some() {
        config.push(("hadoop.security.authentication", "kerberos"));
    }
    let mut builder = ClientBuilder::new().with_url(base).with_config(config);
    if let Some(login) = kerberos_login() {
        builder = builder
            .with_kerberos_principal(login.principal.clone())
            .with_kerberos_keytab(login.keytab.display().to_string());
    }
    builder.build()
}

//! Fixtures for tests against the real Hadoop 3 cluster of `scripts/hadoop.sh` (ZooKeeper,
//! NameNode, DataNode, ResourceManager, NodeManagers on 127.0.0.2 and 127.0.0.4 = label CPU
//! and 127.0.0.3 = label GPU). `scripts/test.sh` starts one and exports its addresses as
//! `SPINDLE_HADOOP3_HDFS_URL` and `SPINDLE_YARN_RM`; without them a test fails, unless
//! `SPINDLE_SKIP_HADOOP3=1` says to skip it on purpose.
//!
//! Tests share the cluster. One that stops its daemons (the NameNode, a DataNode) first takes
//! [`Hadoop3::exclusive`], which waits until no other test holds the cluster and keeps new
//! ones out until it is done.

use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first NodeManager of partition `CPU`.
pub const CPU_NODE: &str = "127.0.0.2";
/// The second NodeManager of partition `CPU` (two replicas under anti-affinity need two).
pub const CPU_NODE_2: &str = "127.0.0.4";
/// The NodeManager of partition `GPU`.
pub const GPU_NODE: &str = "127.0.0.3";

/// Where the cluster is.
#[derive(Clone, Debug)]
pub struct Hadoop3 {
    /// `hdfs://127.0.0.1:PORT`.
    pub hdfs: String,
    /// `http://127.0.0.1:PORT`, the ResourceManager's web address.
    pub rm: String,
    /// The `user.name` calls are made as.
    pub user: String,
    /// This test's share of the cluster, released when the last clone goes.
    _use: Option<Arc<SharedUse>>,
}

/// Who uses the cluster: tests sharing it, and whether one has it to itself.
struct Users {
    sharing: usize,
    exclusive: bool,
    exclusive_waiting: usize,
}

static USERS: Mutex<Users> = Mutex::new(Users {
    sharing: 0,
    exclusive: false,
    exclusive_waiting: 0,
});
static USERS_CHANGED: Condvar = Condvar::new();

fn users() -> std::sync::MutexGuard<'static, Users> {
    USERS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A test's shared use of the cluster (see [`cluster`]).
#[derive(Debug)]
struct SharedUse;

impl SharedUse {
    /// Waits while a test has (or waits for) the cluster to itself: a waiting one goes
    /// first, so a stream of sharing tests cannot starve it.
    fn take() -> SharedUse {
        let mut u = users();
        while u.exclusive || u.exclusive_waiting > 0 {
            u = USERS_CHANGED
                .wait(u)
                .unwrap_or_else(PoisonError::into_inner);
        }
        u.sharing += 1;
        SharedUse
    }
}

impl Drop for SharedUse {
    fn drop(&mut self) {
        users().sharing -= 1;
        USERS_CHANGED.notify_all();
    }
}

/// The cluster to one test alone, until dropped (see [`Hadoop3::exclusive`]).
pub struct Exclusive(());

impl Drop for Exclusive {
    fn drop(&mut self) {
        users().exclusive = false;
        USERS_CHANGED.notify_all();
    }
}

impl Hadoop3 {
    /// Waits until no other test uses the cluster, then keeps the others out until the
    /// guard is dropped: for a test that stops or kills the cluster's daemons with
    /// [`Hadoop3::script`]. `None` (a recorded skip) when `SPINDLE_HADOOP3_DIR` does not name
    /// the cluster's state directory (the line `scripts/hadoop.sh start` prints), which the
    /// daemon verbs need. Only for a handle from [`cluster_to_disrupt`], which holds no
    /// shared use (it would wait for itself).
    pub fn exclusive(&self) -> Option<Exclusive> {
        assert!(
            self._use.is_none(),
            "Hadoop3::exclusive needs the handle of hadoop3::cluster_to_disrupt()"
        );
        if state_dir().is_none() {
            spindle_core::skip::record(
                "stopping the Hadoop 3 cluster's daemons needs its state directory in SPINDLE_HADOOP3_DIR (the SPINDLE_HADOOP3_DIR line `scripts/hadoop.sh start` prints)",
            );
            return None;
        }
        let mut u = users();
        u.exclusive_waiting += 1;
        while u.exclusive || u.sharing > 0 {
            u = USERS_CHANGED
                .wait(u)
                .unwrap_or_else(PoisonError::into_inner);
        }
        u.exclusive_waiting -= 1;
        u.exclusive = true;
        Some(Exclusive(()))
    }

    /// Runs `scripts/hadoop.sh ARGS` on this cluster (its state directory from
    /// `SPINDLE_HADOOP3_DIR`) and returns stdout; panics when it fails.
    pub fn script(&self, args: &[&str]) -> String {
        let dir = state_dir().expect("checked by Hadoop3::exclusive");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/hadoop.sh");
        let out = Command::new(&script)
            .args(args)
            .env("SPINDLE_HADOOP_DIR", dir)
            .output()
            .expect("running scripts/hadoop.sh");
        assert!(
            out.status.success(),
            "scripts/hadoop.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Hadoop3 {
    /// The port of daemon `name` as `scripts/hadoop.sh` chose it (`nn`, `dn`: the DataNode's
    /// data transfer port, ...), from `SPINDLE_HADOOP3_DIR/ports/NAME`; `None` without the state
    /// directory.
    pub fn daemon_port(&self, name: &str) -> Option<u16> {
        let file = std::path::Path::new(&state_dir()?).join("ports").join(name);
        let text = std::fs::read_to_string(&file).ok()?;
        Some(
            text.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{}: not a port ({e}): {text}", file.display())),
        )
    }
}

fn state_dir() -> Option<std::ffi::OsString> {
    std::env::var_os("SPINDLE_HADOOP3_DIR").filter(|d| !d.is_empty())
}

/// [`cluster`] for a test that will stop or kill its daemons: the handle does not share the
/// cluster, so the test may later take it alone with [`Hadoop3::exclusive`].
pub fn cluster_to_disrupt() -> Option<Hadoop3> {
    from_env()
}

/// The cluster from the environment, or `None` when Hadoop 3 tests are skipped on purpose.
/// Panics when it is simply missing: a test of the real cluster must never pass without it.
/// The handle (and its clones) shares the cluster with other tests; a test that wants it
/// alone waits until every handle is dropped.
pub fn cluster() -> Option<Hadoop3> {
    let mut cluster = from_env()?;
    cluster._use = Some(Arc::new(SharedUse::take()));
    Some(cluster)
}

fn from_env() -> Option<Hadoop3> {
    if std::env::var("SPINDLE_SKIP_HADOOP3").as_deref() == Ok("1") {
        spindle_core::skip::record("needs the Hadoop 3 cluster, and SPINDLE_SKIP_HADOOP3=1");
        return None;
    }
    let (Ok(hdfs), Ok(rm)) = (
        std::env::var("SPINDLE_HADOOP3_HDFS_URL"),
        std::env::var("SPINDLE_YARN_RM"),
    ) else {
        panic!(
            "this test needs the Hadoop 3 cluster: run it through scripts/test.sh (which starts one), or start one with `eval \"$(scripts/hadoop.sh start)\"` and export SPINDLE_HADOOP3_HDFS_URL=$SPINDLE_HDFS_URL and SPINDLE_YARN_RM; set SPINDLE_SKIP_HADOOP3=1 to skip these tests knowingly"
        );
    };
    // The same user scripts/hadoop.sh checks the Services API with.
    let user = ["SPINDLE_HADOOP_USER", "USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|u| !u.is_empty())
        .unwrap_or_else(|| "spindle".into());
    Some(Hadoop3 {
        hdfs,
        rm,
        user,
        _use: None,
    })
}

/// A service name no other test or run uses: `PREFIX-` and 6 digits of the clock.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{:06}", (nanos / 1000) % 1_000_000)
}

/// A port free on every address (both NodeManagers' and the wildcard), with the next one free
/// too (gRPC): the replicas of a test bind it on 127.0.0.2/3, seconds later, in a container.
///
/// The pair comes from below the kernel's ephemeral range (32768-60999 by default). A port from
/// `bind(0)` lies in that range, which the kernel also hands to outgoing connections: in the
/// seconds before the replica binds, a connection of a NodeManager or of HDFS could take it (a
/// CI run saw "Address already in use"). Below the range only another test could take it, so
/// each call moves on by one pair, from a start that differs between processes.
pub fn free_port_pair() -> u16 {
    const LOW: u32 = 20_000;
    const PAIRS: u32 = 6_000; // up to port 32,000
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % PAIRS;
    let free = |port: u32| std::net::TcpListener::bind(("0.0.0.0", port as u16)).is_ok();
    for _ in 0..PAIRS {
        let pair = (start + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) % PAIRS;
        let port = LOW + 2 * pair;
        if free(port) && free(port + 1) {
            return port as u16;
        }
    }
    panic!(
        "no two consecutive free ports found in {LOW}-{}",
        LOW + 2 * PAIRS
    );
}

/// Runs the real `spindle` binary with `args` (as the cluster's user where it takes one),
/// at most `limit`: (success, stdout, stderr).
pub fn spindle(args: &[&str], limit: Duration) -> (bool, String, String) {
    spindle_with_env(args, &[], limit)
}

/// [`spindle`] with extra environment variables.
pub fn spindle_with_env(
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> (bool, String, String) {
    let mut child = Command::new(crate::spindle_binary())
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting spindle");
    let deadline = std::time::Instant::now() + limit;
    loop {
        if child.try_wait().expect("waiting for spindle").is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("spindle output");
            panic!(
                "spindle {args:?} ran over {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("spindle output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `spindle repo publish REPO cifar10 FILE` of the zoo's cifar10 built with `seed` (a new
/// version, different weights): stdout on success, which names the version (`cifar10/N`).
pub fn publish_cifar10(repo: &str, seed: u64) -> String {
    let onnx = spindle_zoo::build(spindle_zoo::ZooModel::Cifar10, seed).onnx;
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), onnx).expect("writing the model");
    let path = file.path().to_str().expect("a UTF-8 temporary path");
    let (ok, out, err) = spindle(
        &["repo", "publish", repo, "cifar10", path],
        Duration::from_secs(60),
    );
    assert!(ok, "spindle repo publish {repo} cifar10: {out} {err}");
    out
}

/// A YARN service a test deployed: destroyed when dropped, so a failed assertion does not
/// leave it running on the shared cluster.
pub struct Service {
    /// The cluster.
    pub cluster: Hadoop3,
    /// Its name.
    pub name: String,
}

impl Service {
    /// Follows a service of this name from now on (before deploying it, so a deploy that
    /// fails half-way is cleaned up too).
    pub fn guard(cluster: &Hadoop3, name: &str) -> Service {
        Service {
            cluster: cluster.clone(),
            name: name.to_string(),
        }
    }

    /// `spindle yarn SUBCOMMAND NAME --rm RM --user U EXTRA...`.
    pub fn yarn(&self, subcommand: &str, extra: &[&str]) -> (bool, String, String) {
        let mut args = vec![
            "yarn",
            subcommand,
            &self.name,
            "--rm",
            &self.cluster.rm,
            "--user",
            &self.cluster.user,
        ];
        args.extend_from_slice(extra);
        spindle(&args, Duration::from_secs(60))
    }

    /// Polls `spindle yarn status` until `until(stdout)` holds, at most `limit`; the last
    /// status on timeout.
    pub fn wait_status(
        &self,
        limit: Duration,
        until: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = std::time::Instant::now() + limit;
        let mut last = String::new();
        while std::time::Instant::now() < deadline {
            let (ok, out, err) = self.yarn("status", &[]);
            last = if ok { out } else { err };
            if ok && until(&last) {
                return Ok(last);
            }
            std::thread::sleep(Duration::from_millis(1000));
        }
        Err(last)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let (ok, _, err) = self.yarn("destroy", &[]);
        if !ok && !err.contains("does not exist") {
            eprintln!(
                "destroying YARN service {} failed: {err}; remove it with `spindle yarn destroy {} --rm {} --user {}`",
                self.name, self.name, self.cluster.rm, self.cluster.user
            );
        }
    }
}

/// The Kerberos-secured cluster of `scripts/hadoop.sh start --kerberos` (KDC, NameNode,
/// DataNode, ResourceManager behind SPNEGO, one NodeManager), found through its state
/// directory in `SPINDLE_KRB_HADOOP_DIR`.
#[derive(Clone, Debug)]
pub struct SecuredHadoop3 {
    /// `hdfs://127.0.0.1:PORT`.
    pub hdfs: String,
    /// `http://127.0.0.1:PORT`, the ResourceManager's web address (SPNEGO).
    pub rm: String,
    /// The user's keytab.
    pub keytab: String,
    /// The user's principal, `USER@EXAMPLE.COM`.
    pub principal: String,
    /// The krb5.conf naming the cluster's KDC.
    pub krb5_config: String,
    /// The cluster's client configuration (core-site.xml, hdfs-site.xml).
    pub hadoop_conf_dir: String,
}

impl SecuredHadoop3 {
    /// The environment of a client of this cluster with no ticket of its own: the realm's
    /// krb5.conf, the cluster's configuration, and a ticket cache that does not exist (so
    /// nothing a person ran `kinit` for on this machine leaks into a test).
    pub fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("KRB5_CONFIG", self.krb5_config.as_str()),
            ("HADOOP_CONF_DIR", self.hadoop_conf_dir.as_str()),
            ("KRB5CCNAME", "FILE:/nonexistent/spindle-test-no-ticket"),
        ]
    }

    /// `--keytab K --principal P`.
    pub fn login_args(&self) -> [&str; 4] {
        ["--keytab", &self.keytab, "--principal", &self.principal]
    }
}

/// The secured cluster, or `None` (recorded as a skip) when `SPINDLE_KRB_HADOOP_DIR` names
/// none: start one with `SPINDLE_HADOOP_DIR=/tmp/krb-hadoop scripts/hadoop.sh start --kerberos`
/// and export `SPINDLE_KRB_HADOOP_DIR=/tmp/krb-hadoop`.
pub fn secured_cluster() -> Option<SecuredHadoop3> {
    let Some(dir) = std::env::var_os("SPINDLE_KRB_HADOOP_DIR") else {
        spindle_core::skip::record(
            "needs the Kerberos-secured Hadoop 3 cluster: `SPINDLE_HADOOP_DIR=DIR scripts/hadoop.sh start --kerberos`, then SPINDLE_KRB_HADOOP_DIR=DIR",
        );
        return None;
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/hadoop.sh");
    let out = Command::new(&script)
        .arg("env")
        .env("SPINDLE_HADOOP_DIR", &dir)
        .output()
        .expect("running scripts/hadoop.sh env");
    let text = String::from_utf8_lossy(&out.stdout);
    let var = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
            .unwrap_or_else(|| {
                panic!(
                    "SPINDLE_KRB_HADOOP_DIR={} is not a cluster started with --kerberos (`scripts/hadoop.sh env` printed no {name}): {text}{}",
                    std::path::Path::new(&dir).display(),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    Some(SecuredHadoop3 {
        hdfs: var("SPINDLE_HDFS_URL"),
        rm: var("SPINDLE_YARN_RM"),
        keytab: var("SPINDLE_KEYTAB"),
        principal: var("SPINDLE_PRINCIPAL"),
        krb5_config: var("KRB5_CONFIG"),
        hadoop_conf_dir: var("HADOOP_CONF_DIR"),
    })
}

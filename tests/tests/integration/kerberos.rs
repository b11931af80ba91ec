//! Spindle against the Kerberos-secured Hadoop 3 cluster of `scripts/hadoop.sh start
//! --kerberos` (a MiniKdc KDC, Kerberos RPC, block access tokens, SASL on the DataNode's data
//! port, the ResourceManager behind SPNEGO): the real `spindle` binary publishes and reads
//! models with `--keytab/--principal`, is refused quickly and clearly without credentials, and
//! `serve` loads from the secured HDFS. Every client runs with a ticket cache that does not
//! exist, so only the keytab (or its absence) decides. Skipped, visibly, unless
//! `SPINDLE_KRB_HADOOP_DIR` names the cluster's state directory.

use spindle_tests::ServeProcess;
use spindle_tests::hadoop3::{SecuredHadoop3, secured_cluster, spindle_with_env};
use spindle_tests::hdfs::unique_dir;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `spindle ARGS --keytab K --principal P` as a client of the secured cluster.
fn with_keytab(cluster: &SecuredHadoop3, args: &[&str]) -> (bool, String, String) {
    let mut all = args.to_vec();
    all.extend(cluster.login_args());
    spindle_with_env(&all, &cluster.env(), Duration::from_secs(120))
}

/// Publishes cifar10 under a fresh directory with the keytab; the repository's URL.
fn publish(cluster: &SecuredHadoop3, test: &str) -> String {
    let repo = format!("{}/models", unique_dir(&cluster.hdfs, test));
    let (ok, _, err) = with_keytab(cluster, &["zoo", "--out", &repo, "--models", "cifar10"]);
    assert!(ok, "spindle zoo --out {repo} with a keytab: {err}");
    repo
}

/// Downloads cifar10's served version from `repo` with the keytab into a fresh directory.
fn download(cluster: &SecuredHadoop3, repo: &str) -> tempfile::TempDir {
    let dest = tempfile::tempdir().unwrap();
    let out_dir = dest.path().display().to_string();
    let (ok, _, err) = with_keytab(
        cluster,
        &["repo", "get", repo, "cifar10", "--out", &out_dir],
    );
    assert!(ok, "spindle repo get {repo} cifar10: {err}");
    dest
}

#[test]
fn publishes_lists_and_downloads_with_a_keytab() {
    let Some(cluster) = secured_cluster() else {
        return;
    };
    let repo = publish(&cluster, "krb-publish");
    let (ok, out, err) = with_keytab(&cluster, &["repo", "ls", &repo]);
    assert!(ok, "spindle repo ls {repo}: {err}");
    assert!(
        out.contains("cifar10") && out.contains("served"),
        "repo ls shows the published version as served: {out}"
    );
    // The download reads the blocks from the DataNode (SASL on its data port, a block token).
    let dest = download(&cluster, &repo);
    let model = dest.path().join("cifar10/1/model.onnx");
    let len = std::fs::metadata(&model).map(|m| m.len()).unwrap_or(0);
    assert!(
        len > 1_000_000,
        "{} downloaded whole: {len} bytes",
        model.display()
    );
}

#[test]
fn without_credentials_every_call_fails_fast_naming_kerberos() {
    let Some(cluster) = secured_cluster() else {
        return;
    };
    let root = format!("{}/", cluster.hdfs);
    // No keytab, and a ticket cache that does not exist.
    let started = Instant::now();
    let (ok, _, err) = spindle_with_env(
        &["repo", "ls", &root],
        &cluster.env(),
        Duration::from_secs(60),
    );
    let took = started.elapsed();
    assert!(!ok, "repo ls without credentials must fail");
    assert!(
        err.contains("Kerberos") && err.contains("kinit") && err.contains("--keytab"),
        "the error names Kerberos and says what to do: {err}"
    );
    assert!(
        took < Duration::from_secs(10),
        "failed fast, not after retries: {took:?}"
    );
    assert!(
        !err.contains("attempts"),
        "an authentication failure is not retried: {err}"
    );

    // A keytab without the principal's key.
    let (ok, _, err) = spindle_with_env(
        &[
            "repo",
            "ls",
            &root,
            "--keytab",
            &cluster.keytab,
            "--principal",
            "nobody@EXAMPLE.COM",
        ],
        &cluster.env(),
        Duration::from_secs(60),
    );
    assert!(!ok, "a keytab without the principal's key must fail");
    assert!(
        err.contains("Kerberos") && err.contains("nobody@EXAMPLE.COM"),
        "the error names Kerberos and the principal: {err}"
    );

    // A keytab that is not there: a usage error before anything is contacted.
    let (ok, _, err) = spindle_with_env(
        &[
            "repo",
            "ls",
            &root,
            "--keytab",
            "/nonexistent.keytab",
            "--principal",
            &cluster.principal,
        ],
        &cluster.env(),
        Duration::from_secs(60),
    );
    assert!(
        !ok && err.contains("--keytab /nonexistent.keytab"),
        "names the bad --keytab: {err}"
    );
}

/// Starts `spindle serve` on a free port over `repo` (tract, HTTP only, polling every
/// `poll`), with `extra` arguments and `env`; its standard error goes to `stderr`.
fn spawn_serve(
    repo: &str,
    poll: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> ServeProcess {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let child = std::process::Command::new(spindle_tests::spindle_binary())
        .args(["serve", "--engine", "tract", "--no-grpc"])
        .args(["--poll-interval", poll, "--repo", repo])
        .args(["--http-addr", &addr.to_string()])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("starting spindle serve");
    ServeProcess {
        child,
        url: format!("http://{addr}"),
    }
}

#[tokio::test]
async fn serve_loads_from_the_secured_hdfs_with_a_keytab() {
    let Some(cluster) = secured_cluster() else {
        return;
    };
    let repo = publish(&cluster, "krb-serve");
    let mut server = spawn_serve(
        &repo,
        "0",
        &cluster.login_args(),
        &cluster.env(),
        std::process::Stdio::null(),
    );
    server
        .wait_ready(Duration::from_secs(90))
        .await
        .expect("serve with a keytab loads cifar10 from the secured HDFS");
    let ready = reqwest::get(format!("{}/v2/models/cifar10/ready", server.url))
        .await
        .expect("model readiness");
    assert_eq!(ready.status(), 200, "cifar10 is loaded and ready");
}

#[test]
fn yarn_calls_authenticate_with_spnego() {
    let Some(cluster) = secured_cluster() else {
        return;
    };
    let name = spindle_tests::hadoop3::unique_name("krb-none");
    // The Services API answers "does not exist" only to an authenticated caller: without
    // SPNEGO the RM's filter answers 401 before the API sees the call.
    let (ok, _, err) = with_keytab(&cluster, &["yarn", "status", &name, "--rm", &cluster.rm]);
    assert!(!ok, "status of a service that does not exist fails");
    assert!(
        err.contains("does not exist") && !err.contains("401"),
        "the call passed SPNEGO and reached the Services API: {err}"
    );

    let started = Instant::now();
    let (ok, _, err) = spindle_with_env(
        &["yarn", "status", &name, "--rm", &cluster.rm],
        &cluster.env(),
        Duration::from_secs(60),
    );
    assert!(!ok, "yarn status without credentials must fail");
    assert!(
        err.contains("Kerberos (SPNEGO)") && err.contains("kinit") && err.contains("--keytab"),
        "the error names SPNEGO and says what to do: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "failed fast");
}

/// The longest ticket the expiry test asks its KDC for. The KDC grants what a client asks for
/// up to its own maximum, so only the test's servers get tickets this short; the cluster's
/// daemons and the other tests keep theirs.
const SHORT_TICKET: Duration = Duration::from_secs(30);

/// A copy of the realm's krb5.conf under `dir` whose clients ask for [`SHORT_TICKET`]s.
fn short_ticket_krb5_conf(cluster: &SecuredHadoop3, dir: &Path) -> PathBuf {
    let conf = std::fs::read_to_string(&cluster.krb5_config).expect("the realm's krb5.conf");
    let lifetime = format!(
        "[libdefaults]\n    ticket_lifetime = {}s\n",
        SHORT_TICKET.as_secs()
    );
    assert!(
        conf.contains("[libdefaults]\n"),
        "krb5.conf has [libdefaults]: {conf}"
    );
    let path = dir.join("krb5.conf");
    std::fs::write(&path, conf.replacen("[libdefaults]\n", &lifetime, 1)).unwrap();
    path
}

/// A TCP relay to the NameNode whose connections the test can cut: an HDFS client keeps its
/// authenticated NameNode connection open for as long as it is used, so only a cut makes a
/// server connect, and authenticate, again (as a NameNode restart or a network fault would).
struct Relay {
    addr: SocketAddr,
    /// Both ends of every relayed connection, for [`Relay::cut`].
    open: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Relays 127.0.0.1:(a free port) to `target` (host:port).
    fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            open: Arc::default(),
            accepted: Arc::default(),
            stop: Arc::default(),
        };
        let (open, accepted, stop) = (
            relay.open.clone(),
            relay.accepted.clone(),
            relay.stop.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let (Ok(client), Ok(server)) = (client, TcpStream::connect(&target)) else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let mut open = open.lock().unwrap();
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
                open.extend([client, server]);
            }
        });
        relay
    }

    /// `hdfs://` URL of the relay with `url`'s path.
    fn url(&self, cluster: &SecuredHadoop3, url: &str) -> String {
        url.replacen(&cluster.hdfs, &format!("hdfs://{}", self.addr), 1)
    }

    /// Closes every connection relayed so far; new ones are still accepted.
    fn cut(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Connections accepted so far.
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// GET `url`'s status code (0 when nothing answered).
async fn status_of(url: &str) -> u16 {
    reqwest::get(url).await.map_or(0, |r| r.status().as_u16())
}

/// The status of one cifar10 inference POSTed to `url` (`.../infer`); 0 when nothing answered.
async fn infer_status(url: &str) -> u16 {
    let request = serde_json::json!({"inputs": [{
        "name": "images", "datatype": "FP32", "shape": [1, 24, 24, 3],
        "data": vec![0.5f32; 24 * 24 * 3],
    }]});
    let sent = reqwest::Client::new().post(url).json(&request).send().await;
    sent.map_or(0, |r| r.status().as_u16())
}

/// Waits until `url` answers 200, at most `limit`.
async fn wait_200(url: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if status_of(url).await == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// A long-running `serve` outlives its Kerberos ticket: with `--keytab`, GSSAPI (MIT, through
/// hdfs-native) gets a new ticket from the keytab when the next connection needs one, so after
/// the ticket has expired and the NameNode connection is cut, the server connects again, sees
/// the version published meanwhile, loads it and answers. A control server started from a
/// `kinit` ticket cache of the same lifetime cannot: its polls fail naming Kerberos while it
/// keeps serving what it has, which shows the ticket really expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_keytab_logs_in_again_after_its_ticket_expires() {
    let Some(cluster) = secured_cluster() else {
        return;
    };
    let repo = publish(&cluster, "krb-expiry");
    let scratch = download(&cluster, &repo);
    let out_dir = scratch.path().display().to_string();

    let relay = Relay::start(cluster.hdfs.trim_start_matches("hdfs://").to_string());
    let relayed = relay.url(&cluster, &repo);
    let krb5_conf = short_ticket_krb5_conf(&cluster, scratch.path());
    let krb5_conf = krb5_conf.to_str().unwrap();
    let mut env = cluster.env();
    env.retain(|(k, _)| *k != "KRB5_CONFIG");
    env.push(("KRB5_CONFIG", krb5_conf));
    let started = Instant::now();
    let mut keytab_server = spawn_serve(
        &relayed,
        "1s",
        &cluster.login_args(),
        &env,
        std::process::Stdio::null(),
    );

    // The control: kinit's ticket cache, no keytab. Needs MIT's kinit (Debian: krb5-user).
    let cache = format!("FILE:{}/kinit.ccache", scratch.path().display());
    let kinit = std::process::Command::new("kinit")
        .args(["-kt", &cluster.keytab, &cluster.principal])
        .env("KRB5_CONFIG", krb5_conf)
        .env("KRB5CCNAME", &cache)
        .output();
    let control_log = scratch.path().join("control.log");
    let mut control = match kinit {
        Ok(out) if out.status.success() => {
            let mut env = env.clone();
            env.retain(|(k, _)| *k != "KRB5CCNAME");
            env.push(("KRB5CCNAME", &cache));
            let log = std::fs::File::create(&control_log).unwrap();
            Some(spawn_serve(&relayed, "1s", &[], &env, log.into()))
        }
        Ok(out) => panic!(
            "kinit -kt {} {}: {}",
            cluster.keytab,
            cluster.principal,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            spindle_core::skip::record(&format!(
                "kerberos::serve_with_a_keytab_logs_in_again_after_its_ticket_expires: no kinit ({e}); the kinit-cache control server is skipped (install krb5-user)"
            ));
            None
        }
    };
    for server in std::iter::once(&mut keytab_server).chain(control.as_mut()) {
        server
            .wait_ready(Duration::from_secs(90))
            .await
            .expect("serve loads cifar10 from the secured HDFS through the relay");
    }

    // Both servers' tickets were issued after `started`, so they have expired by then.
    let expired = started + SHORT_TICKET + Duration::from_secs(3);
    tokio::time::sleep(expired.saturating_duration_since(Instant::now())).await;
    let before_cut = relay.accepted();
    relay.cut();
    let model = format!("{out_dir}/cifar10/1/model.onnx");
    let (ok, _, err) = with_keytab(&cluster, &["repo", "publish", &repo, "cifar10", &model]);
    assert!(ok, "spindle repo publish {repo} cifar10 (version 2): {err}");

    let v2 = |server: &ServeProcess| format!("{}/v2/models/cifar10/versions/2/ready", server.url);
    assert!(
        wait_200(&v2(&keytab_server), Duration::from_secs(30)).await,
        "the keytab server, {:?} after its ticket was issued, loaded version 2",
        started.elapsed()
    );
    assert!(
        relay.accepted() > before_cut,
        "the keytab server connected to the NameNode again after the cut"
    );
    assert_eq!(
        infer_status(&format!(
            "{}/v2/models/cifar10/versions/2/infer",
            keytab_server.url
        ))
        .await,
        200,
        "version 2 answers"
    );

    if let Some(control) = &control {
        // The control polls every second too; a few of its polls have failed by now.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let log = std::fs::read_to_string(&control_log).unwrap_or_default();
        assert_ne!(
            status_of(&v2(control)).await,
            200,
            "the kinit-cache server cannot have loaded version 2 with an expired ticket: {log}"
        );
        assert!(
            log.contains("repository poll failed") && log.contains("Kerberos"),
            "its polls fail naming Kerberos: {log}"
        );
        let v1 = format!("{}/v2/models/cifar10/versions/1/ready", control.url);
        assert_eq!(status_of(&v1).await, 200, "and it keeps serving version 1");
    }
}

/// A YARN service of the secured cluster, destroyed (with the keytab) when dropped.
struct SecuredService<'a> {
    cluster: &'a SecuredHadoop3,
    name: String,
}

impl SecuredService<'_> {
    /// `spindle yarn SUBCOMMAND NAME --rm RM` with the keytab.
    fn yarn(&self, subcommand: &str) -> (bool, String, String) {
        with_keytab(
            self.cluster,
            &["yarn", subcommand, &self.name, "--rm", &self.cluster.rm],
        )
    }
}

impl Drop for SecuredService<'_> {
    fn drop(&mut self) {
        let (ok, _, err) = self.yarn("destroy");
        if !ok && !err.contains("does not exist") {
            eprintln!("destroying YARN service {} failed: {err}", self.name);
        }
    }
}

/// The replicas' launch script on the cluster's NodeManager: the `launch_container.sh` whose
/// command serves `repo`.
fn launch_script(repo: &str) -> Option<String> {
    let logs = PathBuf::from(std::env::var_os("SPINDLE_KRB_HADOOP_DIR")?).join("nm1/logs");
    for app in std::fs::read_dir(logs).ok()?.flatten() {
        for container in std::fs::read_dir(app.path()).ok()?.flatten() {
            let script = std::fs::read_to_string(container.path().join("launch_container.sh"));
            if let Ok(script) = script
                && script.contains(&format!("--repo {repo} "))
            {
                return Some(script);
            }
        }
    }
    None
}

/// A replica deployed on the secured YARN: the service carries its own Kerberos identity (its
/// keytab uploaded to HDFS, as Hadoop's docs ask), the AM logs in with it (so `spindle yarn
/// status`, which reaches the AM, works), YARN localizes the keytab into the container, and the
/// replica's `spindle serve` logs in from it, reads the repository from the secured HDFS and
/// turns READY. A deployment without an identity is refused before anything is uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_on_the_secured_yarn_serves_from_the_secured_hdfs() {
    let Some(cluster) = secured_cluster() else {
        return;
    };
    let dir = unique_dir(&cluster.hdfs, "krb-yarn");
    let repo = format!("{dir}/models");
    let (ok, _, err) = with_keytab(&cluster, &["zoo", "--out", &repo, "--models", "cifar10"]);
    assert!(ok, "spindle zoo --out {repo} with a keytab: {err}");
    let service = SecuredService {
        cluster: &cluster,
        name: spindle_tests::hadoop3::unique_name("krb-yarn"),
    };
    let port = spindle_tests::hadoop3::free_port_pair();
    let port_arg = port.to_string();
    let staging = format!("{dir}/staging");
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "yarn",
            "deploy",
            "--rm",
            &cluster.rm,
            "--name",
            &service.name,
            "--repo",
            &repo,
            "--staging",
            &staging,
            "--replicas",
            "1",
            "--queue",
            "CPU_Q",
            "--node-partition",
            "CPU",
            "--cpus",
            "1",
            "--memory",
            "1024",
            "--port",
            &port_arg,
        ];
        args.extend_from_slice(extra);
        with_keytab(&cluster, &args)
    };

    let (ok, _, err) = deploy(&[]);
    assert!(!ok, "a deployment without a service identity is refused");
    assert!(
        err.contains("secured with Kerberos") && err.contains("--yarn-principal"),
        "names Kerberos and the flags: {err}"
    );

    // Hadoop's own client uploads the keytab (scripts/hadoop.sh fs: kinit from the user's
    // keytab, then FsShell), as a user would with `hdfs dfs -put`.
    let keytab = format!("{dir}/spindle.keytab");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/hadoop.sh");
    let put = std::process::Command::new(&script)
        .args(["fs", "-put", &cluster.keytab, &keytab])
        .env(
            "SPINDLE_HADOOP_DIR",
            std::env::var_os("SPINDLE_KRB_HADOOP_DIR").unwrap(),
        )
        .output()
        .expect("running scripts/hadoop.sh fs -put");
    assert!(
        put.status.success(),
        "hadoop.sh fs -put {} {keytab}: {}",
        cluster.keytab,
        String::from_utf8_lossy(&put.stderr)
    );

    // The service principal scripts/hadoop.sh puts in the user's keytab: NAME/HOST@REALM.
    let (user, realm) = cluster.principal.split_once('@').unwrap();
    let service_principal = format!("{user}/localhost@{realm}");
    let started = Instant::now();
    let (ok, _, err) = deploy(&[
        "--yarn-principal",
        &service_principal,
        "--yarn-keytab",
        &keytab,
    ]);
    assert!(ok, "deploy with --yarn-principal/--yarn-keytab: {err}");
    let node = spindle_tests::hadoop3::CPU_NODE;
    let ready_line = format!(" {node}:{port} ");
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(150) {
        let (ok, out, err) = service.yarn("status");
        last = if ok { out } else { err };
        if ok
            && last
                .lines()
                .any(|l| l.contains(" READY ") && l.contains(&ready_line))
        {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        last.lines()
            .any(|l| l.contains(" READY ") && l.contains(&ready_line)),
        "READY on {node}:{port} within {:?}: {last}",
        started.elapsed()
    );
    let script = launch_script(&repo).expect("the replica's launch_container.sh");
    assert!(
        script.contains(&format!(
            "--keytab spindle.keytab --principal {service_principal}"
        )),
        "the replica logs in from the localized keytab: {script}"
    );
    let url = format!("http://{node}:{port}");
    assert_eq!(
        status_of(&format!("{url}/v2/models/cifar10/ready")).await,
        200,
        "the replica loaded cifar10 from the secured HDFS"
    );
    assert_eq!(
        infer_status(&format!("{url}/v2/models/cifar10/infer")).await,
        200,
        "the replica answers"
    );
}

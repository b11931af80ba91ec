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
    let dest = tempfile::tempdir().unwrap();
    let out_dir = dest.path().display().to_string();
    let (ok, _, err) = with_keytab(
        &cluster,
        &["repo", "get", &repo, "cifar10", "--out", &out_dir],
    );
    assert!(ok, "spindle repo get {repo} cifar10: {err}");
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

#[tokio::test]
async fn serve_loads_from_the_secured_hdfs_with_a_keytab() {
    let Some(cluster) = secured_cluster() else {
        return;
    };
    let repo = publish(&cluster, "krb-serve");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let child = std::process::Command::new(spindle_tests::spindle_binary())
        .args([
            "serve",
            "--poll-interval",
            "0",
            "--engine",
            "tract",
            "--no-grpc",
        ])
        .args(["--repo", &repo, "--http-addr", &addr.to_string()])
        .args(cluster.login_args())
        .envs(cluster.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting spindle serve");
    let mut server = ServeProcess {
        child,
        url: format!("http://{addr}"),
    };
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

//! `spindle yarn` against the in-test ResourceManager (`yarn_rm`), only for answers the real
//! one (`yarn_cluster.rs`, scripts/hadoop.sh's Hadoop 3.4.2) cannot be made to give in these
//! tests: a 401 (the shared cluster runs simple authentication without ACLs, and its Kerberos
//! sibling answers a caller without a ticket before any user is known), and a login page
//! instead of JSON (what a gateway in front of a RM answers). Discovery, flexing, stop/start,
//! "no such service", a taken name, "Null user", an unreadable spec and refused submissions are
//! checked against the real ResourceManager. Real HDFS (Hadoop 2.7.3, the seed's generation)
//! for the deploy upload.

use clap::Parser;
use spindle_cli::{Cli, UsageError, run};
use spindle_deploy::yarn::rm::{ResourceManager, YarnError};
use spindle_deploy::yarn::spec::{SpecParams, build};
use spindle_loader::{HDFS_RETRY, Storage};
use spindle_tests::hdfs;
use spindle_tests::yarn_rm::FakeRm;
use std::net::SocketAddr;

fn spec(name: &str) -> serde_json::Value {
    build(&SpecParams {
        name: name.into(),
        replicas: 2,
        repo: "hdfs://nn:8020/models".into(),
        artifact: "hdfs://nn:8020/user/ann/.spindle/spindle-x.tar.gz".into(),
        queue: Some("CPU_Q".into()),
        node_partition: Some("CPU".into()),
        gpus: 0,
        cpus: 2,
        memory_mb: 2048,
        port: 8000,
        poll_interval: "30s".into(),
        ort_library: None,
    })
}

async fn spindle(args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["spindle"];
    argv.extend_from_slice(args);
    run(Cli::try_parse_from(argv)?).await
}

/// Creating, reading, flexing, stopping and starting, destroying, the forms of "no such
/// service", a taken name, an unreadable spec and a call without `user.name` are checked
/// against the real ResourceManager (`yarn_cluster`); these are the answers it cannot give
/// here: a 401 for a user a secured RM refuses, and a page that is not JSON.
#[tokio::test]
async fn the_rest_client_handles_answers_the_real_rm_cannot_give() {
    let rm = FakeRm::start(Some("ann")).await;
    let client = ResourceManager::new(&rm.url(), Some("ann".into())).unwrap();
    client.create(&spec("spindle-a")).await.expect("202");

    // A secured cluster refusing the user: 401, naming --user and Kerberos.
    let bob = ResourceManager::new(&rm.url(), Some("bob".into())).unwrap();
    let e = bob.service("spindle-a").await.unwrap_err();
    assert!(
        matches!(e, YarnError::Unauthorized { status: 401, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("--user"), "{e}");
    // No user at all: Hadoop's "Null user", as the real RM answers it.
    let anonymous = ResourceManager::new(&rm.url(), None).unwrap();
    let e = anonymous.service("spindle-a").await.unwrap_err();
    assert!(matches!(e, YarnError::NoUser { .. }), "{e}");

    // An answer that is not JSON (a login page) and an unreachable RM.
    rm.state.lock().unwrap().html = true;
    client
        .create(&spec("spindle-d"))
        .await
        .expect("a POST answer is not parsed");
    let e = client.service("spindle-d").await.unwrap_err();
    assert!(matches!(e, YarnError::NotJson { .. }), "{e}");
    assert!(
        e.to_string().contains(&rm.url()) && e.to_string().contains("<html>"),
        "{e}"
    );
    let closed = closed_address();
    let gone = ResourceManager::new(&format!("http://{closed}"), None).unwrap();
    let e = gone.service("x").await.unwrap_err();
    assert!(matches!(e, YarnError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&closed.to_string()), "{e}");
    // An address that answers but serves no Services API.
    let e = gone.version().await.unwrap_err();
    assert!(matches!(e, YarnError::Unreachable { .. }), "{e}");
}

#[tokio::test]
async fn yarn_subcommands_report_bad_input_as_usage_errors() {
    // Refused before any call: the address has nothing listening.
    let url = format!("http://{}", closed_address());
    for args in [
        vec!["yarn", "flex", "svc", "--rm", &url, "--replicas", "-1"],
        vec!["yarn", "flex", "svc", "--rm", "rm:8088", "--replicas", "1"],
        vec![
            "yarn",
            "spec",
            "--name",
            "svc",
            "--replicas",
            "0",
            "--repo",
            "hdfs://nn/m",
        ],
        vec!["yarn", "spec", "--name", "Svc", "--repo", "hdfs://nn/m"],
        vec![
            "yarn",
            "deploy",
            "--rm",
            &url,
            "--name",
            "svc",
            "--repo",
            "/local/dir",
        ],
    ] {
        let e = spindle(&args).await.expect_err("refused");
        assert!(e.downcast_ref::<UsageError>().is_some(), "{args:?}: {e:#}");
    }
}

/// An address with nothing listening on it.
fn closed_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The deploy upload to Hadoop 2.7.3's HDFS (the compatibility check of `spindle yarn
/// deploy`; the real cluster runs Hadoop 3), what it submits, and a 401 refusing it before
/// anything is uploaded.
#[tokio::test]
async fn deploy_uploads_to_hadoop2_submits_and_refuses_before_uploading() {
    let Some(base) = hdfs::shared_url() else {
        return;
    };
    let dir = hdfs::unique_dir(&base, "yarn-deploy");
    let repo = format!("{dir}/models");
    let staging = format!("{dir}/staging");
    let rm = FakeRm::start(Some("ann")).await;
    let url = rm.url();
    let deploy = |name: &'static str, user: &'static str, repo: String| {
        let (url, staging) = (url.clone(), staging.clone());
        async move {
            spindle(&[
                "yarn",
                "deploy",
                "--rm",
                &url,
                "--user",
                user,
                "--name",
                name,
                "--replicas",
                "3",
                "--repo",
                &repo,
                "--staging",
                &staging,
                "--queue",
                "CPU_Q",
            ])
            .await
        }
    };
    let storage = Storage::new(&repo, HDFS_RETRY).unwrap();
    storage.mkdirs("").await.unwrap();

    deploy("svc-a", "ann", repo.clone())
        .await
        .expect("deployed");
    let staged = Storage::new(&staging, HDFS_RETRY).unwrap();
    let tarball = staged
        .read("spindle-svc-a.tar.gz")
        .await
        .unwrap()
        .expect("uploaded");
    assert!(tarball.len() > 1_000_000, "the binary is in it");
    let submitted = rm.state.lock().unwrap().services["svc-a"].clone();
    assert_eq!(submitted["components"][0]["number_of_containers"], 3);
    assert_eq!(
        submitted["components"][0]["artifact"]["id"],
        format!("{staging}/spindle-svc-a.tar.gz")
    );

    // Another user is refused (401) before anything is uploaded.
    let e = deploy("svc-b", "bob", repo.clone()).await.unwrap_err();
    assert!(format!("{e:#}").contains("401"), "{e:#}");
    assert!(!staged.exists("spindle-svc-b.tar.gz").await.unwrap());

    // A missing repository, a taken name, a submission refused (the tarball removed again)
    // and the replicas the upload starts: against the real RM and Hadoop 3's HDFS
    // (yarn_cluster.rs).
}

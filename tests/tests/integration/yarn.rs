//! `spindle yarn` and YARN discovery against the in-test ResourceManager (`yarn_rm`), for what
//! the real one (`yarn_cluster.rs`, scripts/hadoop.sh) cannot be made to do: answer 401 as a
//! secured cluster, answer a login page, and list containers on hosts the test chooses, so
//! that bare `spindle serve` processes on 127.0.0.2-8 stand in for containers while replicas
//! are killed and added under load. Real HDFS for the deploy upload.

use clap::Parser;
use serde_json::json;
use spindle_cli::{Cli, UsageError, run};
use spindle_client::{Client, InferRequest};
use spindle_core::{Tensor, TensorData};
use spindle_deploy::BuildFromYarn;
use spindle_deploy::yarn::rm::{ResourceManager, YarnError};
use spindle_deploy::yarn::spec::{SpecParams, build};
use spindle_loader::{HDFS_RETRY, Storage};
use spindle_tests::yarn_rm::FakeRm;
use spindle_tests::{ServeProcess, hdfs, zoo_repo};
use spindle_zoo::ZooModel;
use std::net::SocketAddr;
use std::time::Duration;

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

/// Creating, reading, flexing, destroying, the forms of "no such service", a taken name, an
/// unreadable spec and a call without `user.name` are checked against the real ResourceManager
/// (`yarn_cluster::the_rest_client_reads_the_real_rm_answers`); these are the answers it cannot
/// give.
#[tokio::test]
async fn the_rest_client_handles_answers_the_real_rm_cannot_give() {
    let rm = FakeRm::start(Some("ann")).await;
    let client = ResourceManager::new(&rm.url(), Some("ann".into())).unwrap();
    client.create(&spec("spindle-a")).await.expect("202");

    // Stop and start (not yet run against the real RM).
    client.set_state("spindle-a", "STOPPED").await.unwrap();
    assert_eq!(
        client.service("spindle-a").await.unwrap()["state"],
        "STOPPED"
    );
    client.set_state("spindle-a", "STARTED").await.unwrap();

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
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
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
    let rm = FakeRm::start(None).await;
    let url = rm.url();
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
    let e = spindle(&["yarn", "status", "nothing", "--rm", &url])
        .await
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("'nothing' does not exist"),
        "{e:#}"
    );
}

#[tokio::test]
async fn deploy_uploads_submits_and_refuses_before_uploading() {
    let Some(base) = hdfs::shared_url() else {
        return;
    };
    let dir = hdfs::unique_dir(&base, "yarn-deploy");
    let repo = format!("{dir}/models");
    let staging = format!("{dir}/staging");
    let rm = FakeRm::start(Some("ann")).await;
    let url = rm.url();
    rm.state.lock().unwrap().queues = Some(vec!["CPU_Q".into()]);
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
    // The repository must exist before anything is uploaded.
    let e = deploy("svc-a", "ann", repo.clone()).await.unwrap_err();
    assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
    assert!(
        format!("{e:#}").contains("no such directory on HDFS"),
        "{e:#}"
    );
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

    // A taken name is refused before uploading anything.
    let e = deploy("svc-a", "ann", repo.clone()).await.unwrap_err();
    assert!(format!("{e:#}").contains("is taken"), "{e:#}");

    // Another user is refused (401) before anything is uploaded.
    let e = deploy("svc-b", "bob", repo.clone()).await.unwrap_err();
    assert!(format!("{e:#}").contains("401"), "{e:#}");
    assert!(!staged.exists("spindle-svc-b.tar.gz").await.unwrap());

    // Refused at submission, the tarball removed again: against the real RM
    // (yarn_cluster::refused_deployments_leave_nothing_behind).
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn discovery_follows_ready_containers_and_callers_see_no_errors() {
    // Three "hosts" on one machine: 127.0.0.2-4 are all loopback, so every replica uses the
    // same port, as YARN containers on separate nodes do.
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let port = free_port();
    let mut replicas = Vec::new();
    for host in 2..=4 {
        let addr: SocketAddr = format!("127.0.0.{host}:{port}").parse().unwrap();
        replicas.push(
            ServeProcess::start(repo.path(), addr)
                .await
                .expect("replica"),
        );
    }
    let rm = FakeRm::start(None).await;
    let mut s = spec("spindle-disc");
    s["components"][0]["configuration"]["env"]["SPINDLE_HTTP_PORT"] = json!(port.to_string());
    ResourceManager::new(&rm.url(), None)
        .unwrap()
        .create(&s)
        .await
        .unwrap();
    rm.set_containers(
        "spindle-disc",
        &[
            ("spindle-0", "127.0.0.2", "READY"),
            ("spindle-1", "127.0.0.3", "READY"),
            ("spindle-2", "127.0.0.4", "STARTED"),
        ],
    );

    let client = Client::builder(Vec::<String>::new())
        .build_yarn_service(
            &format!("{}/spindle-disc", rm.url()),
            None,
            Duration::from_millis(200),
        )
        .await
        .expect("discovered");
    let mut endpoints = client.endpoints();
    endpoints.sort();
    assert_eq!(
        endpoints,
        vec![
            format!("http://127.0.0.2:{port}"),
            format!("http://127.0.0.3:{port}")
        ],
        "only READY containers"
    );

    let image = Tensor::new(vec![1, 24, 24, 3], TensorData::F32(vec![0.5; 1728])).unwrap();
    let request = InferRequest::new("cifar10").input("images", image);
    let load = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut done = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
            while tokio::time::Instant::now() < deadline {
                client.infer(&request).await?;
                done += 1;
            }
            Ok::<_, spindle_client::ClientError>(done)
        })
    };
    // Flex up: the third turns READY; then the first replica dies and YARN drops it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    rm.set_containers(
        "spindle-disc",
        &[
            ("spindle-0", "127.0.0.2", "READY"),
            ("spindle-1", "127.0.0.3", "READY"),
            ("spindle-2", "127.0.0.4", "READY"),
        ],
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        client.endpoints().len(),
        3,
        "the flexed-up replica was found"
    );
    let mut first = replicas.remove(0);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    rm.set_containers(
        "spindle-disc",
        &[
            ("spindle-1", "127.0.0.3", "READY"),
            ("spindle-2", "127.0.0.4", "READY"),
        ],
    );
    let done = load
        .await
        .unwrap()
        .expect("no failed request reached the caller");
    assert!(done > 10, "{done} requests");
    assert!(!client.endpoints().iter().any(|u| u.contains("127.0.0.2")));
}

/// `spindle infer` through a YARN service as `user`, sending the tensor in the JSON file
/// `path`, with `extra` flags.
async fn infer_via(service: &str, user: &str, path: &str, extra: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec![
        "infer",
        "--yarn-service",
        service,
        "--yarn-user",
        user,
        "--model",
        "cifar10",
        "--json",
        path,
    ];
    argv.extend_from_slice(extra);
    spindle(&argv).await
}

#[tokio::test]
async fn spindle_infer_finds_its_server_through_yarn() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.5:{port}").parse().unwrap();
    let _replica = ServeProcess::start(repo.path(), addr)
        .await
        .expect("replica");
    let rm = FakeRm::start(Some("ann")).await;
    let mut s = spec("spindle-infer");
    s["components"][0]["configuration"]["env"]["SPINDLE_HTTP_PORT"] = json!(port.to_string());
    let client = ResourceManager::new(&rm.url(), Some("ann".into())).unwrap();
    client.create(&s).await.unwrap();
    let input = tempfile::NamedTempFile::new().unwrap();
    let tensor = json!({"name": "images", "shape": [1, 24, 24, 3], "datatype": "FP32", "data": vec![0.5; 1728]});
    std::fs::write(input.path(), tensor.to_string()).unwrap();
    let service = format!("{}/spindle-infer", rm.url());
    let path = input.path().display().to_string();
    let infer = |user: &'static str| infer_via(&service, user, &path, &[]);
    // No READY container yet: a clear error, not a hang.
    let e = infer("ann").await.unwrap_err();
    assert!(format!("{e:#}").contains("no READY container"), "{e:#}");
    rm.set_containers("spindle-infer", &[("spindle-0", "127.0.0.5", "READY")]);
    infer("ann")
        .await
        .expect("answered by the discovered replica");
    let e = infer("bob").await.unwrap_err();
    assert!(format!("{e:#}").contains("401"), "{e:#}");

    // --repeat-for: callers loop over the discovered replica; a request the server refuses
    // (a wrong shape) fails every call, and the command says how many and why.
    let repeat = ["--repeat-for", "1s", "--callers", "2"];
    infer_via(&service, "ann", &path, &repeat)
        .await
        .expect("no failed call");
    let wrong = tempfile::NamedTempFile::new().unwrap();
    let tensor = json!({"name": "images", "shape": [1, 24, 24, 4], "datatype": "FP32", "data": vec![0.5; 2304]});
    std::fs::write(wrong.path(), tensor.to_string()).unwrap();
    let wrong = wrong.path().display().to_string();
    let e = infer_via(&service, "ann", &wrong, &repeat)
        .await
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("requests failed") && e.contains("images"), "{e}");
}

/// Successful requests a replica has answered, from its own `/metrics`.
async fn served(url: &str) -> f64 {
    spindle_tests::metric_sum(
        url,
        r#"spindle_requests_total{model="cifar10",outcome="success""#,
    )
    .await
}

#[tokio::test]
async fn spindle_loadtest_spreads_load_over_the_discovered_replicas() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let port = free_port();
    let mut replicas = Vec::new();
    for host in [6, 7] {
        let addr: SocketAddr = format!("127.0.0.{host}:{port}").parse().unwrap();
        replicas.push(
            ServeProcess::start(repo.path(), addr)
                .await
                .expect("replica"),
        );
    }
    let rm = FakeRm::start(Some("ann")).await;
    let mut s = spec("spindle-load");
    s["components"][0]["configuration"]["env"]["SPINDLE_HTTP_PORT"] = json!(port.to_string());
    ResourceManager::new(&rm.url(), Some("ann".into()))
        .unwrap()
        .create(&s)
        .await
        .unwrap();
    let service = format!("{}/spindle-load", rm.url());
    let out = tempfile::tempdir().unwrap();
    let report = out.path().join("report.json");
    let loadtest = |user: &'static str| {
        let (service, report) = (service.clone(), report.display().to_string());
        async move {
            spindle(&[
                "loadtest",
                "--yarn-service",
                &service,
                "--yarn-user",
                user,
                "--model",
                "cifar10",
                "--concurrency",
                "4",
                "--warmup",
                "200ms",
                "--window",
                "500ms",
                "--max-windows",
                "3",
                "--json",
                &report,
            ])
            .await
        }
    };
    // Nothing READY yet, and the wrong user: clear errors before any load.
    let e = loadtest("ann").await.unwrap_err();
    assert!(format!("{e:#}").contains("no READY container"), "{e:#}");
    rm.set_containers(
        "spindle-load",
        &[
            ("spindle-0", "127.0.0.6", "READY"),
            ("spindle-1", "127.0.0.7", "READY"),
            ("spindle-2", "127.0.0.8", "STARTED"),
        ],
    );
    let e = loadtest("bob").await.unwrap_err();
    assert!(format!("{e:#}").contains("401"), "{e:#}");

    loadtest("ann")
        .await
        .expect("load test over the discovered replicas");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        report["urls"],
        json!([
            format!("http://127.0.0.6:{port}"),
            format!("http://127.0.0.7:{port}")
        ]),
        "the READY containers, not the STARTED one"
    );
    let level = &report["levels"][0];
    assert_eq!(level["errors"]["total"], 0, "{level}");
    assert!(level["requests"].as_u64().unwrap() > 4, "{level}");
    for replica in &replicas {
        assert!(served(&replica.url).await > 0.0, "{} answered", replica.url);
    }
}

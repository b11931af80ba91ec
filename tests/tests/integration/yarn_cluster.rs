//! `spindle yarn` against the real Hadoop 3.4.2 cluster of `scripts/hadoop.sh` (a real
//! ResourceManager with node labels, real NodeManagers on 127.0.0.2 = CPU and 127.0.0.3 =
//! GPU, the YARN Services AM, HDFS): the real `spindle` binary deploys, inspects, flexes and
//! destroys services whose containers are real `spindle serve` processes started by YARN from
//! the uploaded tarball, serving models from the cluster's HDFS. Every service is destroyed
//! when its test ends, passed or not (`hadoop3::Service`).

use spindle_deploy::yarn::rm::{ResourceManager, YarnError};
use spindle_loader::{HDFS_RETRY, Storage};
use spindle_tests::hadoop3::{self, CPU_NODE, GPU_NODE, Hadoop3, Service, spindle};
use spindle_tests::hdfs::unique_dir;
use std::time::Duration;

/// A container turns READY 15-20 s after the POST on this cluster (2 shared cores); the
/// bound leaves room for a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// Publishes the cifar10 model (only: it keeps the test fast) under a fresh directory; its
/// repository and a staging directory for the tarball.
fn publish(cluster: &Hadoop3, test: &str) -> (String, String) {
    let dir = unique_dir(&cluster.hdfs, test);
    let repo = format!("{dir}/models");
    let (ok, _, err) = spindle(
        &["zoo", "--out", &repo, "--models", "cifar10"],
        Duration::from_secs(120),
    );
    assert!(ok, "spindle zoo --out {repo}: {err}");
    (repo, format!("{dir}/staging"))
}

/// `spindle yarn deploy` of one small replica (1 vcore, 1 GB: a NodeManager has 4 GB, and
/// the service AM takes 512 MB of it) in `queue`/`partition` on `port`.
fn deploy(
    service: &Service,
    repo: &str,
    staging: &str,
    queue: &str,
    partition: &str,
    port: u16,
    extra: &[&str],
) -> (bool, String, String) {
    let c = &service.cluster;
    let port = port.to_string();
    let mut args = vec![
        "yarn",
        "deploy",
        "--rm",
        &c.rm,
        "--user",
        &c.user,
        "--name",
        &service.name,
        "--repo",
        repo,
        "--staging",
        staging,
        "--replicas",
        "1",
        "--queue",
        queue,
        "--node-partition",
        partition,
        "--cpus",
        "1",
        "--memory",
        "1024",
        "--port",
        &port,
    ];
    args.extend_from_slice(extra);
    spindle(&args, Duration::from_secs(180))
}

/// The line of `spindle yarn status` for a READY container at `host:port`.
fn ready_at(status: &str, host: &str, port: u16) -> bool {
    status
        .lines()
        .any(|l| l.contains(" READY ") && l.contains(&format!(" {host}:{port} ")))
}

/// A JSON input for cifar10 in a temporary file.
fn cifar_input() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let tensor = serde_json::json!({"name": "images", "shape": [1, 24, 24, 3], "datatype": "FP32", "data": vec![0.5; 1728]});
    std::fs::write(file.path(), tensor.to_string()).unwrap();
    file
}

fn listening(host: &str, port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &format!("{host}:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )
    .is_ok()
}

#[test]
fn deploy_serves_on_the_cpu_node_and_infer_finds_it_through_the_rm() {
    let Some(cluster) = hadoop3::cluster() else {
        return;
    };
    let (repo, staging) = publish(&cluster, "yarn-cpu");
    let service = Service::guard(&cluster, &hadoop3::unique_name("it-cpu"));
    let port = hadoop3::free_port_pair();
    let (ok, out, err) = deploy(&service, &repo, &staging, "CPU_Q", "CPU", port, &[]);
    assert!(ok, "deploy: {err}");
    assert!(out.contains("submitted 1 replicas"), "{out}");
    assert!(err.contains("uploaded"), "{err}");

    let status = service
        .wait_status(READY_WITHIN, |s| ready_at(s, CPU_NODE, port))
        .unwrap_or_else(|last| panic!("not READY on {CPU_NODE}:{port} in time: {last}"));
    assert!(status.contains("queue CPU_Q"), "{status}");
    // The replica bound the node's own address (NM_HOST), not the wildcard: the GPU node's
    // address has nothing on the port.
    assert!(listening(CPU_NODE, port));
    assert!(!listening(GPU_NODE, port), "bound {GPU_NODE} too");

    // Discovery through the RM: with --yarn-user, and with the user from the environment.
    let input = cifar_input();
    let input = input.path().to_str().unwrap();
    let target = format!("{}/{}", cluster.rm, service.name);
    let infer = ["infer", "--yarn-service", &target, "--model", "cifar10"];
    let limit = Duration::from_secs(60);
    let (ok, out, err) = spindle(
        &[&infer[..], &["--yarn-user", &cluster.user, "--json", input]].concat(),
        limit,
    );
    assert!(ok && !out.trim().is_empty(), "infer: {out} {err}");

    // Flex 1 -> 2 -> 1 while callers run. Both partitions have one node, so under
    // anti-affinity the second replica waits for a node, and status says so; callers see
    // no failed request throughout.
    let callers = std::process::Command::new(spindle_tests::spindle_binary())
        .args(infer)
        .args(["--yarn-user", &cluster.user, "--json", input])
        .args([
            "--repeat-for",
            "10s",
            "--callers",
            "2",
            "--yarn-refresh",
            "1s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (ok, out, err) = service.yarn("flex", &["--replicas", "2"]);
    assert!(ok, "flex to 2: {out} {err}");
    let waiting = service
        .wait_status(Duration::from_secs(30), |s| {
            s.contains("1 waiting for a node")
        })
        .unwrap_or_else(|last| panic!("flex to 2 never showed a waiting replica: {last}"));
    assert!(waiting.contains("partition CPU"), "{waiting}");
    assert!(ready_at(&waiting, CPU_NODE, port), "{waiting}");
    let (ok, out, err) = service.yarn("flex", &["--replicas", "1"]);
    assert!(ok, "flex to 1: {out} {err}");
    let callers = callers.wait_with_output().unwrap();
    assert!(
        callers.status.success(),
        "callers: {} {}",
        String::from_utf8_lossy(&callers.stdout),
        String::from_utf8_lossy(&callers.stderr)
    );
    service
        .wait_status(Duration::from_secs(30), |s| {
            s.contains("1 of 1 containers") && !s.contains("waiting")
        })
        .unwrap_or_else(|last| panic!("flex back to 1 not seen: {last}"));

    let (ok, out, err) = service.yarn("destroy", &[]);
    assert!(ok && out.contains("destroyed"), "{out} {err}");
    let (ok, _, err) = service.yarn("status", &[]);
    assert!(!ok && err.contains("does not exist"), "{err}");
}

#[test]
fn the_gpu_queue_and_partition_place_the_replica_on_the_gpu_node() {
    let Some(cluster) = hadoop3::cluster() else {
        return;
    };
    let (repo, staging) = publish(&cluster, "yarn-gpu");
    let service = Service::guard(&cluster, &hadoop3::unique_name("it-gpu"));
    let port = hadoop3::free_port_pair();
    let (ok, _, err) = deploy(&service, &repo, &staging, "GPU_Q", "GPU", port, &[]);
    assert!(ok, "deploy: {err}");
    let status = service
        .wait_status(READY_WITHIN, |s| ready_at(s, GPU_NODE, port))
        .unwrap_or_else(|last| panic!("not READY on {GPU_NODE}:{port} in time: {last}"));
    assert!(!ready_at(&status, CPU_NODE, port), "{status}");
    assert!(listening(GPU_NODE, port));
}

#[tokio::test]
async fn refused_deployments_leave_nothing_behind() {
    let Some(cluster) = hadoop3::cluster() else {
        return;
    };
    let dir = unique_dir(&cluster.hdfs, "yarn-refused");
    let (repo, staging) = (format!("{dir}/models"), format!("{dir}/staging"));
    let staged = Storage::new(&staging, HDFS_RETRY).unwrap();

    // --gpus on a cluster without GPU scheduling: refused from the RM's node list before
    // the repository is even looked at (it does not exist) or anything is uploaded.
    let service = Service::guard(&cluster, &hadoop3::unique_name("it-gpus"));
    let (ok, _, err) = deploy(
        &service,
        &repo,
        &staging,
        "GPU_Q",
        "GPU",
        18000,
        &["--gpus", "1"],
    );
    assert!(!ok, "deployed with --gpus 1 on a cluster without GPUs");
    assert!(
        err.contains("--gpus 1") && err.contains("does not schedule yarn.io/gpu"),
        "{err}"
    );
    assert!(!err.contains("uploaded"), "{err}");
    let (_, _, err) = service.yarn("status", &[]);
    assert!(err.contains("does not exist"), "{err}");

    // An unknown queue: the RM refuses the submission (500), and the uploaded tarball is
    // removed again.
    Storage::new(&repo, HDFS_RETRY)
        .unwrap()
        .mkdirs("")
        .await
        .unwrap();
    let service = Service::guard(&cluster, &hadoop3::unique_name("it-queue"));
    let (ok, _, err) = deploy(&service, &repo, &staging, "NO_SUCH_Q", "CPU", 18000, &[]);
    assert!(!ok);
    assert!(err.contains("unknown queue: NO_SUCH_Q"), "{err}");
    assert!(err.contains("nothing is left behind"), "{err}");
    let tarball = format!("spindle-{}.tar.gz", service.name);
    assert!(!staged.exists(&tarball).await.unwrap(), "{tarball} left");
}

/// A service the REST client can create without a tarball: `sleep` in the CPU partition.
fn sleeper(name: &str, queue: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "version": "1",
        "queue": queue,
        "components": [{
            "name": "sleep",
            "number_of_containers": 1,
            "launch_command": "sleep 300",
            "resource": {"cpus": 1, "memory": "128"},
            "restart_policy": "NEVER",
            "configuration": {"env": {"SPINDLE_HTTP_PORT": "18999"}},
        }],
    })
}

#[tokio::test]
async fn the_rest_client_reads_the_real_rm_answers() {
    let Some(cluster) = hadoop3::cluster() else {
        return;
    };
    let rm = ResourceManager::new(&cluster.rm, Some(cluster.user.clone())).unwrap();
    assert!(rm.version().await.unwrap().starts_with("3."));
    let nodes = rm.nodes().await.unwrap();
    let labels: Vec<_> = nodes.iter().map(|n| n.node_labels.join(",")).collect();
    assert!(labels.contains(&"CPU".into()) && labels.contains(&"GPU".into()));
    assert!(nodes.iter().all(|n| n.resource("yarn.io/gpu").is_none()));
    assert_eq!(nodes[0].resource("vcores"), Some(4));

    let name = hadoop3::unique_name("it-rest");
    let _guard = Service::guard(&cluster, &name);
    // A missing service, as Hadoop says it per call: 404 (GET), 400 (DELETE), 500 (flex).
    assert!(!rm.exists(&name).await.unwrap());
    let e = rm.destroy(&name).await.unwrap_err();
    assert!(matches!(e, YarnError::NotFound { .. }), "{e}");
    let e = rm.flex(&name, "sleep", 2).await.unwrap_err();
    assert!(matches!(e, YarnError::NotFound { .. }), "{e}");

    // No user: "Null user" (404 on GET, 400 on POST), which must not read as "no such
    // service" (deploy would go on to upload) but name the fix.
    let anonymous = ResourceManager::new(&cluster.rm, None).unwrap();
    let e = anonymous.exists(&name).await.unwrap_err();
    assert!(matches!(e, YarnError::NoUser { .. }), "{e}");
    assert!(e.to_string().contains("--user"), "{e}");
    let e = anonymous
        .create(&sleeper(&name, "CPU_Q"))
        .await
        .unwrap_err();
    assert!(matches!(e, YarnError::NoUser { .. }), "{e}");

    // A spec Hadoop cannot read: 404 with Jackson's message, not "does not exist".
    let mut bad = sleeper(&name, "CPU_Q");
    bad["components"][0]["restart_policy"] = serde_json::json!("SOMETIMES");
    let e = rm.create(&bad).await.unwrap_err();
    assert!(
        matches!(e, YarnError::Status { status: 404, .. }) && e.to_string().contains("SOMETIMES"),
        "{e}"
    );

    rm.create(&sleeper(&name, "CPU_Q")).await.expect("202");
    assert!(rm.exists(&name).await.unwrap());
    // Until its AM runs, Hadoop answers the service with no components, so no port.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let port = loop {
        match rm.service_port(&name).await {
            Ok(port) => break port,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("ACCEPTED"), "{e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(port, 18999);
    let e = rm.create(&sleeper(&name, "CPU_Q")).await.unwrap_err();
    assert!(e.to_string().contains("already taken"), "{e}");
    rm.destroy(&name).await.unwrap();
    let e = rm.service(&name).await.unwrap_err();
    assert!(matches!(e, YarnError::NotFound { .. }), "{e}");
}

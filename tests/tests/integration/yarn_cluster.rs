//! `spindle yarn` against the real Hadoop 3.4.2 cluster of `scripts/hadoop.sh` (a real
//! ResourceManager with node labels, real NodeManagers on 127.0.0.2 = CPU and 127.0.0.3 =
//! GPU, the YARN Services AM, HDFS): the real `spindle` binary deploys, inspects, flexes and
//! destroys services whose containers are real `spindle serve` processes started by YARN from
//! the uploaded tarball, serving models from the cluster's HDFS. Every service is destroyed
//! when its test ends, passed or not (`hadoop3::Service`).

use spindle_deploy::yarn::rm::{ResourceManager, YarnError};
use spindle_loader::{HDFS_RETRY, Storage};
use spindle_tests::hadoop3::{self, CPU_NODE, CPU_NODE_2, GPU_NODE, Hadoop3, Service, spindle};
use spindle_tests::hdfs::unique_dir;
use std::time::{Duration, Instant};

mod node_loss;
mod scoring;
mod tls;

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

/// The CPU partition's two nodes.
const CPU_NODES: [&str; 2] = [CPU_NODE, CPU_NODE_2];

/// Concurrent callers of `spindle infer --repeat-for` in the background.
struct Callers {
    child: std::process::Child,
    spawned: Instant,
    what: String,
}

impl Callers {
    /// Two callers sending `input` to cifar10 for `secs` through `target` (`--yarn-service
    /// URL` re-listed every second, or `--url A,B`).
    fn start(what: &str, target: &[&str], input: &str, secs: u64) -> Callers {
        let child = std::process::Command::new(spindle_tests::spindle_binary())
            .args([
                "infer",
                "--model",
                "cifar10",
                "--json",
                input,
                "--callers",
                "2",
            ])
            .args(["--repeat-for", &format!("{secs}s")])
            .args(target)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Callers {
            child,
            spawned: Instant::now(),
            what: what.to_string(),
        }
    }

    /// Waits for them; their summary (requests, failures, errors, per-second timeline).
    fn summary(self) -> serde_json::Value {
        let out = self.child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "callers {}: no summary ({e}): {text} {}",
                self.what,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Waits for them and checks that every request was answered.
    fn none_failed(self) -> serde_json::Value {
        let what = self.what.clone();
        let summary = self.summary();
        assert!(
            summary["failed"] == 0 && summary["answered"].as_u64() > Some(0),
            "callers {what}: {summary}"
        );
        summary
    }
}

/// Discovery through the ResourceManager, re-listing the READY containers every second.
fn through_rm<'a>(target: &'a str, user: &'a str) -> [&'a str; 6] {
    [
        "--yarn-service",
        target,
        "--yarn-user",
        user,
        "--yarn-refresh",
        "1s",
    ]
}

/// A body answered 200 by `http://host:port/path`, else `None`.
fn http_get(host: &str, port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = format!("{host}:{port}").parse().unwrap();
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    // A reply to HTTP/1.0 may say HTTP/1.0 or HTTP/1.1.
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

/// Successful requests a replica has served (its /metrics), 0 when it does not answer.
fn served(host: &str, port: u16) -> u64 {
    http_get(host, port, "/metrics")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("spindle_requests_total{") && l.contains("outcome=\"success\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The pid of the `spindle serve` that YARN started for `host:port` (it binds the node's
/// address: `--http-addr HOST:PORT`).
fn replica_pid(host: &str, port: u16) -> Option<u32> {
    let addr = format!("{host}:{port}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let serves = args.iter().any(|a| *a == b"serve")
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--http-addr" && w[1] == addr.as_bytes());
            serves.then_some(pid)
        })
}

fn both_ready(status: &str, port: u16) -> bool {
    CPU_NODES.iter().all(|h| ready_at(status, h, port))
}

/// One deployment on the CPU partition (two nodes) serves every check of a replicated
/// service, in order: deploy, discovery through the RM, flex 1 -> 2 under callers, load spread
/// over both replicas (`spindle infer`, `loadtest` and `score`), a third replica waiting for a
/// node, a replica killed with SIGKILL under callers, stop/start under callers, and (alone on
/// the cluster) a NodeManager lost under callers and brought back, and a DataNode killed and
/// the NameNode restarted under callers, then a new version picked up.
#[test]
fn a_replicated_service_flexes_spreads_load_and_survives_sigkill_stop_start_node_and_hdfs_outages()
{
    let Some(cluster) = hadoop3::cluster_to_disrupt() else {
        return;
    };
    let (repo, staging) = publish(&cluster, "yarn-cpu");
    let service = Service::guard(&cluster, &hadoop3::unique_name("it-cpu"));
    let port = hadoop3::free_port_pair();
    // The replicas look for new versions every 2 s (the last check publishes one).
    let poll = ["--poll-interval", "2s"];
    let (ok, out, err) = deploy(&service, &repo, &staging, "CPU_Q", "CPU", port, &poll);
    assert!(ok, "deploy: {err}");
    assert!(out.contains("submitted 1 replicas"), "{out}");
    assert!(err.contains("uploaded"), "{err}");

    let status = service
        .wait_status(READY_WITHIN, |s| {
            CPU_NODES.iter().any(|h| ready_at(s, h, port))
        })
        .unwrap_or_else(|last| panic!("not READY on a CPU node on port {port} in time: {last}"));
    assert!(status.contains("queue CPU_Q"), "{status}");
    let first = *CPU_NODES
        .iter()
        .find(|h| ready_at(&status, h, port))
        .unwrap();
    // The replica bound the node's own address (NM_HOST), not the wildcard: the GPU node's
    // address has nothing on the port.
    assert!(listening(first, port));
    assert!(!listening(GPU_NODE, port), "bound {GPU_NODE} too");
    // The name is taken now: a second deploy is refused before it uploads anything.
    let (ok, _, err) = deploy(&service, &repo, &staging, "CPU_Q", "CPU", port, &poll);
    assert!(!ok && err.contains("is taken"), "{err}");
    assert!(!err.contains("uploaded"), "{err}");

    // Discovery through the RM.
    let input = cifar_input();
    let input = input.path().to_str().unwrap();
    let target = format!("{}/{}", cluster.rm, service.name);
    let rm = through_rm(&target, &cluster.user);
    let limit = Duration::from_secs(60);
    let (ok, out, err) = spindle(
        &[&["infer", "--model", "cifar10", "--json", input], &rm[..4]].concat(),
        limit,
    );
    assert!(ok && !out.trim().is_empty(), "infer: {out} {err}");
    // A request the replica refuses (a wrong shape) fails every call of --repeat-for, and the
    // command says how many and why.
    let wrong = tempfile::NamedTempFile::new().unwrap();
    let tensor = serde_json::json!({"name": "images", "shape": [1, 24, 24, 4], "datatype": "FP32", "data": vec![0.5; 2304]});
    std::fs::write(wrong.path(), tensor.to_string()).unwrap();
    let (ok, _, err) = spindle(
        &[
            &["infer", "--model", "cifar10", "--json"][..],
            &[wrong.path().to_str().unwrap()],
            &rm[..4],
            &["--repeat-for", "1s"],
        ]
        .concat(),
        limit,
    );
    assert!(
        !ok && err.contains("requests failed") && err.contains("images"),
        "{err}"
    );

    // Flex 1 -> 2 while callers run: the second replica lands on the other CPU node.
    let callers = Callers::start("during flex 1 -> 2", &rm, input, 10);
    let (ok, out, err) = service.yarn("flex", &["--replicas", "2"]);
    assert!(ok, "flex to 2: {out} {err}");
    service
        .wait_status(READY_WITHIN, |s| both_ready(s, port))
        .unwrap_or_else(|last| panic!("flex to 2: not READY on both CPU nodes: {last}"));
    callers.none_failed();

    // Callers that find the replicas through the RM spread their requests over both:
    // `spindle infer --repeat-for` (one client, round-robin) and `spindle loadtest`.
    let counts = || CPU_NODES.map(|h| served(h, port));
    let before = counts();
    Callers::start("spread", &rm, input, 3).none_failed();
    let after = counts();
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "spindle infer --yarn-service reached {CPU_NODES:?}: {before:?} -> {after:?}"
    );
    let report = tempfile::NamedTempFile::new().unwrap();
    let report_path = report.path().to_str().unwrap();
    let (ok, out, err) = spindle(
        &[
            &["loadtest", "--model", "cifar10", "--concurrency", "4"][..],
            &rm[..4],
            &[
                "--warmup",
                "200ms",
                "--window",
                "500ms",
                "--max-windows",
                "3",
            ],
            &["--json", report_path],
        ]
        .concat(),
        limit,
    );
    assert!(ok, "loadtest: {out} {err}");
    assert!(out.contains("2 READY replica(s)"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_path).unwrap()).unwrap();
    assert_eq!(report["levels"][0]["errors"]["total"], 0, "{report}");
    let loaded = counts();
    assert!(
        loaded[0] > after[0] && loaded[1] > after[1],
        "spindle loadtest --yarn-service reached {CPU_NODES:?}: {after:?} -> {loaded:?}"
    );
    scoring::score_through_the_replicas(&cluster, &service.name, &repo, port);

    // A third replica: both CPU nodes have one, so under anti-affinity it waits, and status
    // says so; flexing back to 2 leaves the two serving.
    let (ok, out, err) = service.yarn("flex", &["--replicas", "3"]);
    assert!(ok, "flex to 3: {out} {err}");
    let waiting = service
        .wait_status(Duration::from_secs(30), |s| {
            s.contains("1 waiting for a node")
        })
        .unwrap_or_else(|last| panic!("flex to 3 never showed a waiting replica: {last}"));
    assert!(waiting.contains("partition CPU"), "{waiting}");
    assert!(both_ready(&waiting, port), "{waiting}");
    let (ok, out, err) = service.yarn("flex", &["--replicas", "2"]);
    assert!(ok, "flex to 2: {out} {err}");
    service
        .wait_status(Duration::from_secs(30), |s| {
            s.contains("2 of 2 containers") && !s.contains("waiting") && both_ready(s, port)
        })
        .unwrap_or_else(|last| panic!("flex back to 2 not seen: {last}"));

    // A replica's process killed with SIGKILL under callers: YARN restarts it (restart
    // policy ALWAYS) on the only node free for it, its own; the callers' retries carry
    // their requests to the other replica meanwhile. Measured: READY again 8 s later.
    let victim = CPU_NODE_2;
    let pid = replica_pid(victim, port).expect("the replica's spindle process on 127.0.0.4");
    let callers = Callers::start("while a replica is killed", &rm, input, 15);
    std::thread::sleep(Duration::from_secs(2));
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    service
        .wait_status(READY_WITHIN, |s| {
            both_ready(s, port) && replica_pid(victim, port).is_some_and(|p| p != pid)
        })
        .unwrap_or_else(|last| panic!("the killed replica was not restarted: {last}"));
    let restarted = format!("http://{victim}:{port}");
    let (ok, out, err) = spindle(
        &[
            "infer", "--url", &restarted, "--model", "cifar10", "--json", input,
        ],
        limit,
    );
    assert!(
        ok && !out.trim().is_empty(),
        "the restarted replica: {out} {err}"
    );
    callers.none_failed();

    stop_and_start_under_callers(&service, &rm, input, port);
    // Alone on the cluster from here: these steps kill and restart its daemons.
    if let Some(_alone) = cluster.exclusive() {
        node_loss::lose_a_node_under_callers(&cluster, &service, &rm, input, port);
        hdfs_outage_under_callers(&cluster, &service, &repo, input, port);
    }

    let (ok, out, err) = service.yarn("destroy", &[]);
    assert!(ok && out.contains("destroyed"), "{out} {err}");
    let (ok, _, err) = service.yarn("status", &[]);
    assert!(!ok && err.contains("does not exist"), "{err}");
}

/// `spindle yarn stop` takes every replica down (YARN ends the service's application) until
/// `start` has one READY again. Callers that find the replicas through the RM wait for one
/// meanwhile (`--wait-for-replica`, 30 s by default), asking the RM again, instead of failing:
/// no request fails, and the wait shows in their latency (a request's max is about as long
/// as the service had no replica). Measured: stopped 3 s after the call, a replica READY 11 s
/// after start.
fn stop_and_start_under_callers(service: &Service, rm: &[&str], input: &str, port: u16) {
    let secs = 30;
    let callers = Callers::start("through stop/start", rm, input, secs);
    std::thread::sleep(Duration::from_secs(4));
    let stopping = callers.spawned.elapsed();
    let (ok, out, err) = service.yarn("stop", &[]);
    assert!(ok && out.contains("stopping"), "stop: {out} {err}");
    service
        .wait_status(Duration::from_secs(60), |s| s.contains("state STOPPED"))
        .unwrap_or_else(|last| panic!("never STOPPED: {last}"));
    let stopped = callers.spawned.elapsed();
    let (ok, out, err) = service.yarn("start", &[]);
    assert!(ok && out.contains("starting"), "start: {out} {err}");
    service
        .wait_status(READY_WITHIN, |s| both_ready(s, port))
        .unwrap_or_else(|last| panic!("not READY again after start: {last}"));
    let ready = callers.spawned.elapsed();
    let summary = callers.none_failed();
    eprintln!(
        "stop/start under callers: stop called {stopping:?}, STOPPED {stopped:?}, both READY {ready:?} after the callers started; latency {}",
        summary["latency_ms"]
    );
    // The callers waited out the gap: the longest request lasted about as long as the
    // service had no replica (at least from STOPPED until the start was called).
    let gap = (ready - stopped).as_secs_f64() * 1000.0;
    let max = summary["latency_ms"]["max"].as_f64().unwrap();
    assert!(
        max >= 1000.0 && max >= gap / 4.0,
        "no request waited for a replica (max {max} ms; no replica for about {gap} ms): {summary}"
    );
    // The same callers answered again after the start (when they ran that long).
    if ready.as_secs() + 3 < secs {
        let timeline = summary["timeline"].as_array().unwrap();
        let answered_after = timeline
            .iter()
            .filter(|t| t["second"].as_u64().unwrap() > ready.as_secs())
            .any(|t| t["answered"].as_u64().unwrap() > 0);
        assert!(answered_after, "callers did not recover: {summary}");
    }
    Callers::start("after start", rm, input, 2).none_failed();
}

/// The DataNode killed, then the NameNode stopped and both started
/// again, while callers send to both replicas: serving goes on from the loaded version (the
/// replicas' repository polls fail meanwhile). Callers name the replicas (`--url`): a caller
/// starting while the NameNode is down could not list them, since the ResourceManager
/// reads a service's definition from HDFS. A version published after the recovery is then
/// served by both, and found through the RM again. Measured: the outage lasts about 19 s.
fn hdfs_outage_under_callers(
    cluster: &Hadoop3,
    service: &Service,
    repo: &str,
    input: &str,
    port: u16,
) {
    let urls = CPU_NODES.map(|h| format!("http://{h}:{port}")).join(",");
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let outage = scope.spawn(|| {
            let _done = SetOnDrop(&done);
            cluster.script(&["kill-datanode"]);
            std::thread::sleep(Duration::from_secs(3));
            cluster.script(&["stop-namenode"]);
            std::thread::sleep(Duration::from_secs(3));
            // Each waits for the other: the DataNode's block report needs the NameNode,
            // and the NameNode leaves safe mode once the DataNode has reported.
            std::thread::scope(|s| {
                s.spawn(|| cluster.script(&["start-datanode"]));
                std::thread::sleep(Duration::from_secs(1));
                cluster.script(&["start-namenode"]);
            });
        });
        // Windows of callers until the cluster is back, each with no failure.
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            Callers::start("during the HDFS outage", &["--url", &urls], input, 4).none_failed();
        }
        outage.join().expect("the outage's steps");
    });

    let out = hadoop3::publish_cifar10(repo, 7);
    assert!(out.contains("cifar10/2"), "publish after the outage: {out}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !CPU_NODES
        .iter()
        .all(|h| http_get(h, port, "/v2/models/cifar10/versions/2/ready").is_some())
    {
        assert!(
            Instant::now() < deadline,
            "version 2 not served by both replicas within 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let target = format!("{}/{}", cluster.rm, service.name);
    let summary = Callers::start(
        "after the outage",
        &through_rm(&target, &cluster.user),
        input,
        2,
    )
    .none_failed();
    assert_eq!(
        summary["versions"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["2"],
        "{summary}"
    );
}

/// Sets the flag when dropped, so a panicking step still ends the callers' loop.
struct SetOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
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

    // The repository must exist before anything is uploaded.
    let service = Service::guard(&cluster, &hadoop3::unique_name("it-norepo"));
    let (ok, _, err) = deploy(&service, &repo, &staging, "CPU_Q", "CPU", 18000, &[]);
    assert!(!ok && err.contains("no such directory on HDFS"), "{err}");
    assert!(!err.contains("uploaded"), "{err}");

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

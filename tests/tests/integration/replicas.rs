//! `spindle replicas` with the client library: N real `spindle serve` processes; one is killed
//! during a load and no failed request reaches the caller.

use spindle_client::{Client, InferRequest};
use spindle_core::{Tensor, TensorData};
use spindle_tests::{spindle_binary, zoo_repo};
use spindle_zoo::ZooModel;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The pids of a process's children (Linux: /proc/PID/task/PID/children).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_replica_under_load_fails_no_request() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let mut replicas = Command::new(spindle_binary())
        .args([
            "replicas",
            "--n",
            "3",
            "--",
            "--engine",
            "tract",
            "--poll-interval",
            "0",
        ])
        .arg("--repo")
        .arg(repo.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spindle replicas");
    let stdout = replicas.stdout.take().unwrap();
    let urls: Vec<String> = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(3)
            .map(|l| l.unwrap())
            .collect()
    })
    .await
    .unwrap();
    assert_eq!(urls.len(), 3, "three URLs printed: {urls:?}");
    assert!(
        urls.iter().all(|u| u.starts_with("http://127.0.0.1:")),
        "{urls:?}"
    );
    let servers = children(replicas.id());
    assert_eq!(servers.len(), 3, "one serve process per replica");

    let client = Client::builder(urls.clone()).build().unwrap();
    let image = Tensor::new(vec![1, 24, 24, 3], TensorData::F32(vec![0.25; 1728])).unwrap();
    let request = InferRequest::new("cifar10").input("images", image);
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, request) = (client.clone(), request.clone());
        load.push(tokio::spawn(async move {
            let mut done = 0u32;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
            while tokio::time::Instant::now() < deadline {
                client.infer(&request).await?;
                done += 1;
            }
            Ok::<_, spindle_client::ClientError>(done)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // SIGKILL: no draining, connections reset mid-request.
    let victim = servers[0];
    assert!(
        Command::new("kill")
            .args(["-KILL", &victim.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let mut total = 0;
    for task in load {
        total += task
            .await
            .unwrap()
            .expect("no failed request reached the caller");
    }
    assert!(total > 20, "{total} requests");
    let ready = client.ready().await;
    assert_eq!(
        ready.iter().filter(|r| matches!(r, Ok(true))).count(),
        2,
        "{ready:?}"
    );

    // SIGTERM stops the remaining replicas and the command itself.
    assert!(
        Command::new("kill")
            .args(["-TERM", &replicas.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || replicas.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    for pid in &servers[1..] {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || children(*pid).is_empty()
        );
    }
    let after = client.ready().await;
    assert!(after.iter().all(|r| r.is_err()), "all stopped: {after:?}");
}

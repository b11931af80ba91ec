//! `spindle yarn deploy --tls-cert/--tls-key/--auth-token-file` on the real cluster: the
//! certificate, its key and the tokens lie on the cluster's HDFS, YARN localizes them into
//! the replica's container, the replica serves HTTPS with bearer tokens, `spindle yarn status`
//! lists it as https, and `spindle infer --yarn-service` reaches it through the RM with
//! `--ca-cert` and `--token-file` (and is refused without either).

use super::{CPU_NODES, READY_WITHIN, cifar_input, deploy, publish, ready_at};
use crate::tls::{Pki, TOKEN};
use spindle_loader::{HDFS_RETRY, Storage};
use spindle_tests::hadoop3::{self, CPU_NODE, CPU_NODE_2, GPU_NODE, Hadoop3, Service, spindle};
use std::time::Duration;

/// The first line of what `host:port` answers to a plain HTTP request, if anything.
fn plain_http_status_line(host: &str, port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let addr = format!("{host}:{port}").parse().unwrap();
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /v2/health/live HTTP/1.0\r\nHost: {host}\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.lines().next().map(str::to_string)
}

/// One replica in the CPU partition with a certificate for every NodeManager's address
/// (whichever node YARN picks) and a token file, all from HDFS. Measured: about 25 s, most
/// of it the replica's start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_deployment_serves_https_with_tokens_from_hdfs() {
    let Some(cluster) = hadoop3::cluster() else {
        return;
    };
    let (repo, staging) = publish(&cluster, "yarn-tls");
    let secrets = format!("{}/secrets", repo.trim_end_matches("/models"));
    let pki = Pki::new("yarn-tls");
    let (cert, key) = pki.leaf("replica", &[CPU_NODE, CPU_NODE_2, GPU_NODE, "localhost"]);
    let on_hdfs = Storage::new(&secrets, HDFS_RETRY).unwrap();
    for (name, bytes) in [
        ("replica.pem", std::fs::read(&cert).unwrap()),
        ("replica.key", std::fs::read(&key).unwrap()),
        ("tokens", format!("{TOKEN}\n").into_bytes()),
    ] {
        on_hdfs.write(name, &bytes).await.unwrap();
    }
    let uri = |name: &str| format!("{secrets}/{name}");
    let (cert_uri, key_uri, tokens_uri) = (uri("replica.pem"), uri("replica.key"), uri("tokens"));

    let service = Service::guard(&cluster, &hadoop3::unique_name("it-tls"));
    let port = hadoop3::free_port_pair();
    let tls = [
        "--tls-cert",
        &cert_uri,
        "--tls-key",
        &key_uri,
        "--auth-token-file",
        &tokens_uri,
    ];
    let (ok, out, err) = deploy(&service, &repo, &staging, "CPU_Q", "CPU", port, &tls);
    assert!(ok, "deploy: {out} {err}");
    let status = service
        .wait_status(READY_WITHIN, |s| {
            CPU_NODES.iter().any(|h| ready_at(s, h, port))
        })
        .unwrap_or_else(|last| panic!("not READY on a CPU node on port {port} in time: {last}"));
    // The status lists the replica as https (the service records its scheme).
    assert!(status.contains("(https;"), "{status}");
    let host = *CPU_NODES
        .iter()
        .find(|h| ready_at(&status, h, port))
        .unwrap();

    // Through the RM, with the CA and the token: answered over https.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let (ca, token_file) = (
        pki.ca_path().display().to_string(),
        token_file.display().to_string(),
    );
    let input = cifar_input();
    let target = format!("{}/{}", cluster.rm, service.name);
    let infer = |extra: &[&str]| {
        let mut args = vec![
            "infer",
            "--model",
            "cifar10",
            "--json",
            input.path().to_str().unwrap(),
            "--yarn-service",
            &target,
            "--yarn-user",
            &cluster.user,
        ];
        args.extend_from_slice(extra);
        spindle(&args, Duration::from_secs(60))
    };
    let (ok, out, err) = infer(&["--ca-cert", &ca, "--token-file", &token_file]);
    assert!(
        ok && !out.trim().is_empty(),
        "infer over https: {out} {err}"
    );

    // Without the token: refused, and the message names the refusal and the flag.
    let (ok, out, err) = infer(&["--ca-cert", &ca]);
    assert!(!ok, "answered without a token: {out}");
    assert!(err.contains("401") && err.contains("--token-file"), "{err}");
    // Without the CA: the replica's certificate is not trusted.
    let (ok, out, err) = infer(&["--token-file", &token_file]);
    assert!(!ok, "answered without --ca-cert: {out}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // Plain HTTP to the replica's port is not served.
    let line = plain_http_status_line(host, port);
    assert!(
        line.as_deref().is_none_or(|l| !l.contains(" 200")),
        "plain http to {host}:{port}: {line:?}"
    );
    let (ok, out, _) = spindle(
        &[
            "infer",
            "--url",
            &format!("http://{host}:{port}"),
            "--model",
            "cifar10",
            "--json",
            input.path().to_str().unwrap(),
            "--token-file",
            &token_file,
        ],
        Duration::from_secs(60),
    );
    assert!(!ok, "answered over plain http: {out}");

    score_on_yarn_through_the_replica(&cluster, &secrets, &target, &on_hdfs, &pki).await;

    let (ok, out, err) = service.yarn("destroy", &[]);
    assert!(ok && out.contains("destroyed"), "{out} {err}");
}

/// `spindle score --yarn --executors 1 --yarn-service RM/NAME` with the CA and the token on
/// HDFS: the executor, in a container of its own and with no repository, scores 8 CIFAR-10
/// images through the TLS replica. Measured: about 20 s.
async fn score_on_yarn_through_the_replica(
    cluster: &Hadoop3,
    dir: &str,
    target: &str,
    secrets: &Storage,
    pki: &Pki,
) {
    secrets
        .write("ca.pem", &std::fs::read(pki.ca_path()).unwrap())
        .await
        .unwrap();
    crate::score_yarn::upload_cifar10(dir, 1, 8).await;
    let input = format!("{dir}/data/data_batch_*.bin");
    let (ca, tokens) = (format!("{dir}/ca.pem"), format!("{dir}/tokens"));
    let name = hadoop3::unique_name("it-tls-score");
    let _job = Service::guard(cluster, &name);
    let (ok, out, err) = crate::score_yarn::yarn_score_job(
        cluster,
        dir,
        &name,
        ("cifar10", &input),
        "1",
        &[
            "--yarn-service",
            target,
            "--ca-cert",
            &ca,
            "--token-file",
            &tokens,
        ],
    );
    assert!(ok, "score --yarn through the TLS replica: {out} {err}");
    let scores = Storage::new(&format!("{dir}/out"), HDFS_RETRY).unwrap();
    assert!(scores.exists("_SUCCESS").await.unwrap(), "{out}");
    assert!(
        scores.exists("data_batch_1.bin.tsv").await.unwrap(),
        "{out}"
    );
}

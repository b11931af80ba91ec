//! Trust: `spindle loadtest` and `wrk` (an independent load generator, from Debian) post the
//! same binary-tensor request at the same concurrency to two identical servers at the same
//! time, and must agree on throughput within 10 %. The servers answer each request after a
//! fixed pause, so their capacity is set by the pause rather than by how much CPU is left on a
//! busy machine, and running both tools at once exposes them to the same load from everything
//! else: the comparison is of what the two tools count, not of how fast they are. Three such
//! runs; the median of the three ratios is compared.
//!
//! wrk must be installed (`apt-get install -y wrk`; `scripts/test.sh` does it). Without it the
//! test fails, unless `SPINDLE_SKIP_WRK=1`.

mod support;

use spindle_loadtest::metadata::TensorMetadata;
use spindle_loadtest::{ConcurrencyLevels, LoadtestArgs, Protocol, payload, run, tensors};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{Fault, start};

const CONCURRENCY: usize = 8;
const SHAPE: [i64; 2] = [-1, 64];
const RUNS: usize = 3;

/// wrk on the PATH, or `None` when the user asked to skip; otherwise a failure saying how to
/// install it.
fn wrk() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("wrk"))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => Some(path),
        None if std::env::var("SPINDLE_SKIP_WRK").as_deref() == Ok("1") => {
            spindle_core::skip::record("wrk is not installed and SPINDLE_SKIP_WRK=1");
            None
        }
        None => panic!(
            "wrk is not installed: run `apt-get install -y wrk` (scripts/test.sh does), or set \
             SPINDLE_SKIP_WRK=1 to skip the agreement test"
        ),
    }
}

/// Writes the request body exactly as `spindle loadtest` encodes it, and a wrk script that
/// posts it with the binary-tensor header.
fn wrk_script(dir: &Path) -> PathBuf {
    let metadata = [TensorMetadata {
        name: "x".into(),
        datatype: "FP32".into(),
        shape: SHAPE.to_vec(),
    }];
    let inputs = tensors::generate(&metadata, 1, &[]).unwrap();
    let body = payload::encode(Protocol::HttpBinary, &inputs.tensors, &["y".to_string()]);
    let body_path = dir.join("body.bin");
    std::fs::write(&body_path, &body.body).unwrap();
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        format!(
            "local f = io.open(\"{}\", \"rb\")\nwrk.body = f:read(\"*a\")\nf:close()\n\
             wrk.method = \"POST\"\n\
             wrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n\
             wrk.headers[\"Inference-Header-Content-Length\"] = \"{}\"\n",
            body_path.display(),
            body.header_len.unwrap()
        ),
    )
    .unwrap();
    script
}

/// Starts wrk in the background for `seconds`.
fn start_wrk(
    wrk: &Path,
    script: &Path,
    url: &str,
    connections: usize,
    seconds: u64,
) -> std::process::Child {
    Command::new(wrk)
        .args(["-t", "1", "-c", &connections.to_string(), "-d"])
        .arg(format!("{seconds}s"))
        .arg("-s")
        .arg(script)
        .arg(format!("{url}/v2/models/m/infer"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Requests per second a finished wrk measured, failing on any non-2xx answer or socket error.
fn wrk_result(child: std::process::Child) -> f64 {
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx"),
        "the server refused wrk's requests: {text}"
    );
    assert!(
        !text.contains("Socket errors"),
        "wrk had socket errors: {text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output: {text}"))
}

/// Requests per second `spindle loadtest` measured over one window.
async fn run_loadtest(url: &str, concurrency: usize, window: Duration) -> f64 {
    let mut args = LoadtestArgs::new(url, "m");
    args.concurrency = Some(ConcurrencyLevels(vec![concurrency]));
    args.warmup = Duration::from_millis(500);
    args.window = window;
    args.max_windows = 1;
    let report = run(args).await.unwrap();
    let level = &report.levels[0];
    assert_eq!(level.errors.total, 0, "{:?}", level.first_error);
    level.throughput_rps
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_agrees_with_wrk_within_ten_percent() {
    let Some(wrk) = wrk() else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = wrk_script(dir.path());
    // 8 connections, each request held 20 ms: at most 400 requests/s, a rate a server keeps up
    // with even when the CPUs are busy, so it is the pause that sets the throughput.
    let pause = vec![Fault::Delay(Duration::from_millis(20))];
    let (server, other) = (start(&SHAPE, pause.clone()), start(&SHAPE, pause));
    let mut ratios = Vec::new();
    for _ in 0..RUNS {
        // wrk runs 3 s; loadtest's 0.5 s warm-up and 2 s window lie inside them.
        let theirs = start_wrk(&wrk, &script, &other.url, CONCURRENCY, 3);
        let ours = run_loadtest(&server.url, CONCURRENCY, Duration::from_secs(2)).await;
        let theirs = tokio::task::spawn_blocking(move || wrk_result(theirs))
            .await
            .unwrap();
        println!(
            "loadtest {ours:.0} req/s, wrk {theirs:.0} req/s, ratio {:.3}",
            ours / theirs
        );
        ratios.push(ours / theirs);
    }
    for s in [&server, &other] {
        assert_eq!(
            s.malformed.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "both tools sent well-formed binary-tensor requests"
        );
    }
    let ratio = median(ratios.clone());
    assert!(
        (0.9..=1.1).contains(&ratio),
        "spindle loadtest / wrk throughput ratios {ratios:.3?}, median {ratio:.3}: they disagree by more than 10 %"
    );
}

/// How many small requests per second one loadtest process drives against a trivial endpoint
/// (answered at once), next to wrk on the same endpoint. Printed, never asserted: it depends
/// on the machine (the target is 20,000/s on a 2-core box). Run with
/// `cargo test --release -p spindle-loadtest --test wrk_agreement -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn requests_per_second_against_a_trivial_endpoint() {
    let Some(wrk) = wrk() else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = wrk_script(dir.path());
    let server = start(&SHAPE, vec![]);
    for concurrency in [16, 64] {
        // One after the other: each tool gets the machine to itself.
        let ours = run_loadtest(&server.url, concurrency, Duration::from_secs(3)).await;
        let theirs = wrk_result(start_wrk(&wrk, &script, &server.url, concurrency, 3));
        println!(
            "TRIVIAL concurrency {concurrency}: spindle loadtest {ours:.0} req/s, wrk {theirs:.0} req/s"
        );
    }
}

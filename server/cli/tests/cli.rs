//! The `spindle` binary's command line: bad values exit 64 with one clear message, before
//! anything binds.

use std::process::Command;

fn spindle(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_spindle"))
        .args(args)
        .output()
        .expect("running spindle");
    (
        output.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_missing_repository_is_a_usage_error_said_once() {
    let (code, stderr) = spindle(&[
        "serve",
        "--repo",
        "/nonexistent/repo",
        "--http-addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("--repo /nonexistent/repo: no such directory"),
        "{stderr}"
    );
    assert!(
        stderr.contains("spindle zoo --out"),
        "suggests the fix: {stderr}"
    );
    assert_eq!(
        stderr.matches("no such directory").count(),
        1,
        "said once: {stderr}"
    );
}

#[test]
fn malformed_values_name_the_flag_and_the_fix() {
    for (args, fragment) in [
        (
            &["serve", "--demo", "--max-body", "12XB"][..],
            "unknown size unit 'XB'",
        ),
        (
            &["serve", "--demo", "--engine", "trt"][..],
            "expected auto, ort or tract",
        ),
        (
            &["serve", "--demo", "--device", "gpu"][..],
            "expected cpu, cuda or cuda:N",
        ),
        (
            &["serve", "--demo", "--shutdown-grace", "soon"][..],
            "write it like 500us, 2ms or 10s",
        ),
        (
            &["zoo", "--out", "/tmp/x", "--models", "resnet"][..],
            "available: cifar10, inception_v3",
        ),
    ] {
        let (code, stderr) = spindle(args);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert!(stderr.contains(fragment), "{args:?}: {stderr}");
    }
}

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn http_get_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let repo = tempfile::tempdir().unwrap();
    let (code, stderr) = spindle(&[
        "zoo",
        "--out",
        repo.path().to_str().unwrap(),
        "--models",
        "cifar10",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_spindle"))
        .args([
            "serve",
            "--repo",
            repo.path().to_str().unwrap(),
            "--engine",
            "tract",
        ])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while http_get_status(port, "/v2/health/ready") != Some(200) {
        assert!(
            started.elapsed().as_secs() < 60,
            "server never became ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("readiness is false"), "{log}");
    assert!(log.contains("server stopped"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a log file: {log}"
    );
}

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

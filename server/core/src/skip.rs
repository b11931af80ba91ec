//! Test skips that are counted as skips. A test that cannot run here (no HDFS, no ONNX Runtime,
//! no wrk) and is allowed to skip says so through [`record`]; `scripts/test.sh` points
//! `SPINDLE_SKIP_LOG` at a file and reports those tests as skipped, not passed, with their
//! reasons. Cargo has no run-time skip, so the test itself still ends as "ok".

use std::io::Write;

/// Records that the calling test is skipped and why: on stderr, and as one line in
/// `$SPINDLE_SKIP_LOG` when it is set.
pub fn record(reason: &str) {
    // libtest names each test's thread after the test.
    let test = std::thread::current().name().unwrap_or("?").to_string();
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(log) = std::env::var_os("SPINDLE_SKIP_LOG") {
        let line = format!("{test}: {reason}\n");
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log);
        // A test that cannot write its skip line still skips; the stderr line remains.
        let _ = file.and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

//! Issue 18: a part bound for HDFS is streamed up from its local file, never held whole.
//!
//! One test in its own binary, because it watches this process's resident memory: the peak
//! (`VmHWM`, reset through `/proc/self/clear_refs` just before) while a 96 MiB part is
//! published must stay under 32 MiB above the resident size before. Reading the part whole, as
//! the scorer did before, raises the peak by the part's size or more, and fails this. Needs the
//! shared HDFS (`SPINDLE_HADOOP3_HDFS_URL` or `SPINDLE_HDFS_URL`); `SPINDLE_SKIP_HDFS=1` skips
//! it knowingly.

use spindle_score::images::input::Io;
use spindle_score::images::output::Output;
use std::io::Write;

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`: given in kB there).
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: usize = line.trim().trim_end_matches("kB").trim().parse().unwrap();
    kb * 1024
}

/// The part: 96 MiB of `row<TAB>probability<TAB>label` lines, as a Criteo part holds.
const PART_BYTES: usize = 96 << 20;
/// What publishing it may add to the resident size at its peak: the 1 MiB chunk read from the
/// file, and hdfs-native's queues of 64 KiB packets sent and not yet acknowledged (up to 100
/// each). Measured: +15 MiB for a 48 MiB part, +17 MiB for 144 MiB; reading the part whole
/// adds at least the part's size.
const BOUND: usize = 32 << 20;

fn hdfs_url() -> Option<String> {
    for name in ["SPINDLE_HADOOP3_HDFS_URL", "SPINDLE_HDFS_URL"] {
        if let Ok(url) = std::env::var(name) {
            return Some(url);
        }
    }
    if std::env::var("SPINDLE_SKIP_HDFS").as_deref() == Ok("1") {
        return None;
    }
    panic!(
        "this test needs HDFS: set SPINDLE_HADOOP3_HDFS_URL or SPINDLE_HDFS_URL (scripts/test.sh starts one), or SPINDLE_SKIP_HDFS=1 to skip it knowingly"
    );
}

#[test]
fn a_part_goes_to_hdfs_in_bounded_memory_and_arrives_whole() {
    let Some(url) = hdfs_url() else { return };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let location = format!("{}/tests/score-part-{nanos}", url.trim_end_matches('/'));
    let local = tempfile::tempdir().unwrap();
    let spool = local.path().join(".part-00000.tmp");
    let mut expected = Vec::with_capacity(PART_BYTES + 64);
    let mut row = 0u64;
    while expected.len() < PART_BYTES {
        let p = (row.wrapping_mul(2_654_435_761) % 1_000_000_000) as f64 / 1e9;
        writeln!(expected, "{row}\t{p:.9}\t{}", row % 2).unwrap();
        row += 1;
    }
    std::fs::write(&spool, &expected).unwrap();
    let expected_len = expected.len();

    let io = Io::new().unwrap();
    let output = Output::open(&location, &io).unwrap();
    // Connect and warm the client's connections first: the first NameNode call's buffers are
    // not the part's.
    assert!(!output.has("part-00000").unwrap());
    // "5" resets the peak resident size to the current one (Linux 4.0 and later).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_bytes("VmRSS");
    output.publish_file("part-00000", &spool).unwrap();
    let held = status_bytes("VmHWM").saturating_sub(before);
    println!("published {expected_len} bytes ({row} rows); peak resident size +{held} bytes");
    assert!(
        held < BOUND,
        "publishing a {expected_len}-byte part raised the peak resident size by {held} bytes (bound {BOUND}): the part is held in memory"
    );

    assert!(!spool.exists(), "the local file is gone once published");
    assert!(
        !output.has(".part-00000.tmp").unwrap(),
        "the temporary is renamed"
    );
    let got = output
        .read("part-00000")
        .unwrap()
        .expect("the part is there");
    assert!(
        got == expected,
        "the part on HDFS is byte for byte the local one"
    );
    drop(got);
    // A second publisher is refused and leaves the finished part as it was.
    std::fs::write(&spool, b"other\n").unwrap();
    assert!(output.publish_file("part-00000", &spool).is_err());
    assert_eq!(
        output.read("part-00000").unwrap().unwrap().len(),
        expected_len
    );
    output.remove("").unwrap();
}

//! Replays the fuzz targets' committed inputs on stable, through the very entry points the
//! targets call (`fuzz/src/lib.rs`, included by path): every seed in `fuzz/corpus/TARGET/`
//! (valid requests, answered; those named `refused_*`, refused) and every input that once made
//! a target crash, in `fuzz/regressions/TARGET/`, which must now be answered or refused without
//! a panic. Fuzzing itself needs nightly and time: `scripts/fuzz.sh`.

#[path = "../../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Feeds one file to a target: whether it was answered, or the panic's file name.
fn replay(entry: harness::Entry, path: &Path) -> Result<bool, String> {
    let data = std::fs::read(path).expect("a readable corpus file");
    std::panic::catch_unwind(|| entry(&data))
        .map_err(|_| format!("{}: panicked (message above)", path.display()))
}

#[test]
fn fuzz_seeds_are_answered_and_past_crashes_are_not_crashes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut failures = Vec::new();
    for &(target, entry) in harness::TARGETS {
        let seeds = files(&root.join("corpus").join(target));
        assert!(!seeds.is_empty(), "fuzz/corpus/{target}/ has no seeds");
        for seed in &seeds {
            let refused = seed
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("refused_");
            match replay(entry, seed) {
                Err(panic) => failures.push(panic),
                Ok(answered) if answered == refused => failures.push(format!(
                    "{}: {} but this seed should be {}",
                    seed.display(),
                    if answered { "answered" } else { "refused" },
                    if refused { "refused" } else { "answered" }
                )),
                Ok(_) => {}
            }
        }
        for crash in files(&root.join("regressions").join(target)) {
            if let Err(panic) = replay(entry, &crash) {
                failures.push(panic);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! Where an image job's parts go: a local directory or an `hdfs://` one, through the loader's
//! storage layer (the HDFS client the model repository uses, with its retries).
//!
//! A part is written whole under a hidden temporary name (`.NAME.tmp`, which input listings
//! and readers of the output skip) and then renamed into place: on HDFS one NameNode operation,
//! so a part that exists is complete and a rerun can skip it. Executors of a YARN job each
//! score their [`Share`] of the shards into the same directory and leave their summary under
//! `_summary/`; the process that started them writes `_SUCCESS`.

use super::input::Io;
use super::job::{ErrorCount, ImageSummary};
use anyhow::Context;
use spindle_loader::{HDFS_RETRY, Storage};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The directory executors leave their summaries in, inside the output directory.
pub const SUMMARY_DIR: &str = "_summary";

/// The summary file of executor `index`, relative to the output directory.
pub fn executor_summary(index: usize) -> String {
    format!("{SUMMARY_DIR}/executor-{index}.json")
}

/// The output directory of a job.
#[derive(Clone)]
pub struct Output {
    storage: Storage,
    io: Io,
}

impl Output {
    /// The directory at `location` (a local path or `hdfs://...`), created if missing.
    pub fn open(location: &str, io: &Io) -> anyhow::Result<Output> {
        let storage = Storage::new(location.trim_end_matches('/'), HDFS_RETRY)
            .with_context(|| format!("--output {location}"))?;
        let output = Output {
            storage,
            io: io.clone(),
        };
        output
            .io
            .block_on(output.storage.mkdirs(""))
            .with_context(|| format!("creating {}", output.display("")))?;
        Ok(output)
    }

    /// The full path or URL of `rel`, for messages.
    pub fn display(&self, rel: &str) -> String {
        self.storage.display(rel)
    }

    /// Whether `rel` exists (a finished part, a marker, a summary).
    pub fn has(&self, rel: &str) -> anyhow::Result<bool> {
        self.io
            .block_on(self.storage.exists(rel))
            .with_context(|| format!("checking {}", self.display(rel)))
    }

    /// Reads `rel` whole; `None` when it does not exist.
    pub fn read(&self, rel: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.io
            .block_on(self.storage.read(rel))
            .with_context(|| format!("reading {}", self.display(rel)))
    }

    /// Writes `rel` whole (replacing it): markers and summaries.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.io
            .block_on(self.storage.write(rel, bytes))
            .with_context(|| format!("writing {}", self.display(rel)))
    }

    /// Publishes a finished part: written under `.NAME.tmp` beside it, then renamed to `rel`.
    /// A temporary left by an interrupted run is overwritten.
    pub fn publish(&self, rel: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.publish_with(rel, |temporary| self.write(temporary, bytes))
    }

    /// Publishes a finished part written to the local file `file` (which is gone afterwards).
    /// Into a local directory, `file` is renamed to `rel` (write it under
    /// [`Output::local_temporary`] so the rename stays on one file system); into HDFS, it is
    /// uploaded under `.NAME.tmp` and renamed like [`Output::publish`]. The upload streams the
    /// file in chunks of [`spindle_loader::UPLOAD_CHUNK`] bytes: a part of any size costs the
    /// same memory (issue 18).
    pub fn publish_file(&self, rel: &str, file: &Path) -> anyhow::Result<()> {
        if let Storage::Local(root) = &self.storage {
            let target = root.join(rel);
            return std::fs::rename(file, &target)
                .with_context(|| format!("renaming {} to {}", file.display(), target.display()));
        }
        let published = self.publish_with(rel, |temporary| {
            self.io
                .block_on(self.storage.upload(temporary, file))
                .with_context(|| {
                    format!(
                        "uploading {} to {}",
                        file.display(),
                        self.display(temporary)
                    )
                })
                .map(drop)
        });
        let _ = std::fs::remove_file(file);
        published
    }

    /// Writes a part under `.NAME.tmp` with `write`, then renames it to `rel`; the temporary
    /// is removed when the rename fails.
    fn publish_with(
        &self,
        rel: &str,
        write: impl FnOnce(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let temporary = match rel.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.{name}.tmp"),
            None => format!(".{rel}.tmp"),
        };
        write(&temporary)?;
        let renamed = self.io.block_on(self.storage.rename(&temporary, rel));
        if renamed.is_err() {
            let _ = self.io.block_on(self.storage.delete(&temporary));
        }
        renamed.with_context(|| format!("renaming {} into place", self.display(&temporary)))
    }

    /// Where a part is written locally before [`Output::publish_file`]: `.NAME.tmp` beside it
    /// in a local output directory (its directory created), or a file of the system's
    /// temporary directory for HDFS output.
    pub fn local_temporary(&self, rel: &str) -> anyhow::Result<PathBuf> {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        match &self.storage {
            Storage::Local(root) => {
                let dir = root.join(dir);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                Ok(dir.join(format!(".{name}.tmp")))
            }
            Storage::Hdfs(_) => Ok(super::input::temporary_path(name)),
        }
    }

    /// The parts of `shards` that `share` takes and that are not in this directory yet, and
    /// how many of the share's parts are (finished by an earlier run). When a single process
    /// has parts left to score, a `_SUCCESS` from an earlier run is removed: it would vouch
    /// for this run.
    pub fn pending<'a, T>(
        &self,
        shards: &'a [T],
        parts: Vec<String>,
        share: Share,
    ) -> anyhow::Result<(Vec<(&'a T, String)>, usize)> {
        let mut mine = 0;
        let mut pending = Vec::new();
        for (position, (shard, part)) in shards.iter().zip(parts).enumerate() {
            if !share.takes(position) {
                continue;
            }
            mine += 1;
            if !self.has(&part)? {
                pending.push((shard, part));
            }
        }
        if !pending.is_empty() && !share.is_partial() {
            self.remove(crate::SUCCESS)?;
        }
        let skipped = mine - pending.len();
        Ok((pending, skipped))
    }

    /// Removes `rel` (a file or directory); a missing one is not an error.
    pub fn remove(&self, rel: &str) -> anyhow::Result<()> {
        self.io
            .block_on(self.storage.delete(rel))
            .with_context(|| format!("removing {}", self.display(rel)))
    }
}

/// Which shards one process of a job scores: executor `index` of `count` takes the shards at
/// positions `index`, `index + count`, ... of the sorted list, so executors never share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// 0-based executor number.
    pub index: usize,
    /// Executors in all.
    pub count: usize,
}

impl Share {
    /// Every shard: a job run by one process.
    pub const ALL: Share = Share { index: 0, count: 1 };

    /// Whether the shard at `position` of the sorted list is this executor's.
    pub fn takes(&self, position: usize) -> bool {
        position % self.count == self.index
    }

    /// Whether this is one executor of several (which leaves `_SUCCESS` to its submitter).
    pub fn is_partial(&self) -> bool {
        self.count > 1
    }
}

impl FromStr for Share {
    type Err = String;

    /// `I/N`, with `0 <= I < N`.
    fn from_str(s: &str) -> Result<Share, String> {
        let parsed = s
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(Share { index, count }),
            _ => Err(format!(
                "'{s}' is not an executor share: expected I/N with 0 <= I < N, like 0/2"
            )),
        }
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The summary of a job whose executors ran side by side: counts added up, errors by kind
/// merged (the first examples kept), the metrics over every labelled image, and the time of
/// the slowest executor (images/s is the records over it). Complete when every executor was.
pub fn merge_summaries(backend: String, executors: &[ImageSummary]) -> ImageSummary {
    let mut errors: BTreeMap<String, ErrorCount> = BTreeMap::new();
    for (kind, count) in executors.iter().flat_map(|s| &s.errors) {
        let merged = errors.entry(kind.clone()).or_default();
        merged.count += count.count;
        let room = super::job::EXAMPLES.saturating_sub(merged.examples.len());
        merged
            .examples
            .extend(count.examples.iter().take(room).cloned());
    }
    let sum = |f: fn(&ImageSummary) -> u64| executors.iter().map(f).sum::<u64>();
    let records = sum(|s| s.records);
    let labelled = sum(|s| s.labelled);
    // Each executor's share times its labelled images gives back its hits exactly.
    let hits = |share: fn(&ImageSummary) -> Option<f64>| {
        let with: Vec<&ImageSummary> = executors.iter().filter(|s| share(s).is_some()).collect();
        (!with.is_empty() && labelled > 0).then(|| {
            let hits: f64 = with
                .iter()
                .map(|s| (share(s).unwrap_or(0.0) * s.labelled as f64).round())
                .sum();
            hits / labelled as f64
        })
    };
    let (seconds, shards_scored, shards_skipped, shards_failed) = merge_shards(executors, |s| {
        (
            s.seconds,
            s.shards_scored,
            s.shards_skipped,
            &s.shards_failed,
        )
    });
    ImageSummary {
        backend,
        records,
        seconds,
        images_per_s: records as f64 / seconds.max(1e-9),
        shards_scored,
        shards_skipped,
        shards_failed,
        errors,
        labelled,
        precision_at_1: hits(|s| s.precision_at_1),
        recall_at_5: hits(|s| s.recall_at_5),
        stopped_on_errors: executors.iter().any(|s| s.stopped_on_errors),
        complete: !executors.is_empty() && executors.iter().all(|s| s.complete),
    }
}

/// What every executor summary counts alike, over executors side by side: the slowest one's
/// seconds, shards scored and skipped added up, the failed ones listed.
pub(crate) fn merge_shards<S>(
    executors: &[S],
    of: impl Fn(&S) -> (f64, usize, usize, &Vec<String>),
) -> (f64, usize, usize, Vec<String>) {
    let mut merged = (0.0, 0, 0, Vec::new());
    for executor in executors {
        let (seconds, scored, skipped, failed) = of(executor);
        merged.0 = f64::max(merged.0, seconds);
        merged.1 += scored;
        merged.2 += skipped;
        merged.3.extend(failed.iter().cloned());
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_the_shards_without_overlap() {
        let shares: Vec<Share> = ["0/3", "1/3", "2/3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for position in 0..10 {
            let takers = shares.iter().filter(|s| s.takes(position)).count();
            assert_eq!(takers, 1, "shard {position}");
        }
        assert!(shares[1].takes(4) && !shares[1].takes(5));
        assert!(shares[0].is_partial() && !Share::ALL.is_partial());
        for bad in ["3/3", "1", "a/2", "-1/2", "0/0"] {
            let e = bad.parse::<Share>().unwrap_err();
            assert!(e.contains(bad) && e.contains("I/N"), "{e}");
        }
    }

    fn summary(records: u64, labelled: u64, top1: u64, seconds: f64) -> ImageSummary {
        let mut errors = BTreeMap::new();
        errors.insert(
            "data_crc".to_string(),
            ErrorCount {
                count: 4,
                examples: (0..4).map(|i| format!("s:{i}: bad")).collect(),
            },
        );
        ImageSummary {
            backend: "local".into(),
            records,
            seconds,
            images_per_s: records as f64 / seconds,
            shards_scored: 2,
            shards_skipped: 1,
            shards_failed: vec![],
            errors,
            labelled,
            precision_at_1: Some(top1 as f64 / labelled as f64),
            recall_at_5: None,
            stopped_on_errors: false,
            complete: true,
        }
    }

    #[test]
    fn executor_summaries_merge_into_the_jobs() {
        let mut second = summary(30, 30, 10, 4.0);
        second.shards_failed.push("b.bin: cut short".into());
        second.complete = false;
        let merged = merge_summaries("yarn".into(), &[summary(70, 70, 7, 2.0), second]);
        assert_eq!((merged.records, merged.labelled), (100, 100));
        assert_eq!(merged.precision_at_1, Some(0.17));
        assert_eq!(merged.recall_at_5, None);
        assert_eq!((merged.seconds, merged.images_per_s), (4.0, 25.0));
        assert_eq!((merged.shards_scored, merged.shards_skipped), (4, 2));
        assert_eq!(merged.shards_failed, ["b.bin: cut short"]);
        assert_eq!(merged.errors["data_crc"].count, 8);
        assert_eq!(merged.errors["data_crc"].examples.len(), 5);
        assert!(!merged.complete);
        assert!(!merge_summaries("yarn".into(), &[]).complete);
    }

    #[test]
    fn a_part_is_published_by_rename_and_its_temporary_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let io = Io::new().unwrap();
        let location = dir.path().join("out");
        let output = Output::open(location.to_str().unwrap(), &io).unwrap();
        output.publish("day/a.tsv", b"record\n").unwrap();
        assert_eq!(output.read("day/a.tsv").unwrap().unwrap(), b"record\n");
        assert!(!output.has("day/.a.tsv.tmp").unwrap());
        // A finished part is never replaced: the second publisher is told it exists.
        let e = output.publish("day/a.tsv", b"other\n").unwrap_err();
        assert!(format!("{e:#}").contains("a.tsv"), "{e:#}");
        assert_eq!(output.read("day/a.tsv").unwrap().unwrap(), b"record\n");
        assert!(!output.has("day/.a.tsv.tmp").unwrap());
    }
}

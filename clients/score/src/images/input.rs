//! Input shards on local disk or HDFS: expanding a path or glob into shards, reading a shard
//! (gzip undone when its name ends in `.gz`), and walking its records whatever the format.
//!
//! A shard is read whole into memory before its records are walked: CIFAR-10 batches are
//! 30 MB and TFRecord shards of image datasets tens to a few hundred MB, and reading through
//! the loader's storage layer keeps local disk and HDFS (with its retries) on one path.

use super::example::parse_image_example;
use super::{InputFormat, Record, RecordProblem, cifar, tfrecord};
use anyhow::Context;
use spindle_loader::{HDFS_RETRY, Storage, is_hdfs};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// One input shard: a file (or, for [`InputFormat::Files`], a directory).
#[derive(Clone, Debug)]
pub struct Shard {
    storage: Storage,
    rel: String,
    /// Its full path or URL, for messages and output names.
    pub display: String,
    /// Whether it is a directory (of image files).
    pub is_dir: bool,
}

/// Runs the loader's async storage calls from the scorer's plain threads.
#[derive(Clone)]
pub struct Io {
    handle: tokio::runtime::Handle,
    // Keeps a runtime alive when the caller had none (tests, plain threads).
    _runtime: Option<Arc<tokio::runtime::Runtime>>,
}

impl Io {
    /// The caller's runtime, or a small one of its own.
    pub fn new() -> anyhow::Result<Io> {
        let (handle, runtime) = crate::backend::runtime_handle()?;
        Ok(Io {
            handle,
            _runtime: runtime,
        })
    }

    pub(crate) fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.handle.block_on(future)
    }
}

/// The shards `pattern` names, sorted: a file, a glob (`data/cifar/data_batch_*.bin`; on HDFS
/// only the last component may hold wildcards), or a directory, which stands for its files,
/// unless they are all images: then it is one shard of the `files` format. Names starting with
/// `_` or `.` (markers, temporary files) are left out.
pub fn expand(pattern: &str, io: &Io) -> anyhow::Result<Vec<Shard>> {
    let mut shards = if is_hdfs(pattern) {
        let pattern = pattern.trim_end_matches('/');
        let (dir, last) = pattern
            .rsplit_once('/')
            .context("an hdfs:// URL has a path")?;
        let storage = Storage::new(dir, HDFS_RETRY)?;
        let glob = glob::Pattern::new(last)
            .with_context(|| format!("'{last}' in {pattern} is not a valid glob"))?;
        let listing = io
            .block_on(storage.list(""))?
            .with_context(|| format!("{dir} does not exist"))?;
        listing
            .into_iter()
            .filter(|e| visible(&e.name) && glob.matches(&e.name))
            .map(|e| Shard::new(storage.clone(), e.name, e.is_dir))
            .collect()
    } else {
        let paths =
            glob::glob(pattern).with_context(|| format!("'{pattern}' is not a valid glob"))?;
        let mut shards = Vec::new();
        for path in paths.filter_map(Result::ok) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !visible(name) {
                continue;
            }
            shards.push(Shard::local(&path));
        }
        shards
    };
    if let [only] = &shards[..]
        && only.is_dir
    {
        let listing = io
            .block_on(only.storage.list(&only.rel))?
            .unwrap_or_default();
        let files: Vec<_> = listing
            .into_iter()
            .filter(|e| !e.is_dir && visible(&e.name))
            .collect();
        if !files.iter().all(|e| is_image_name(&e.name)) {
            let (storage, rel) = (only.storage.clone(), only.rel.clone());
            shards = files
                .into_iter()
                .map(|e| Shard::new(storage.clone(), join(&rel, &e.name), false))
                .collect();
        }
    }
    shards.sort_by(|a, b| a.display.cmp(&b.display));
    if shards.is_empty() {
        anyhow::bail!(
            "no file matches '{pattern}' (quote the pattern so the shell does not expand it, and check the directory)"
        );
    }
    Ok(shards)
}

/// A shard's local file (see [`Shard::local_file`]).
pub struct LocalFile {
    /// Where it is.
    pub path: std::path::PathBuf,
    downloaded: bool,
}

impl Drop for LocalFile {
    fn drop(&mut self) {
        if self.downloaded {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A fresh path in the system's temporary directory ending in `name` (so its compression
/// extension is kept): `spindle-score-PID-N-NAME`.
pub(crate) fn temporary_path(name: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("spindle-score-{}-{n}-{name}", std::process::id()))
}

fn visible(name: &str) -> bool {
    !name.starts_with('_') && !name.starts_with('.')
}

impl Shard {
    /// The local file at `path`.
    pub fn local(path: &Path) -> Shard {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => ".".into(),
        };
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into());
        Shard::new(Storage::Local(parent), name, path.is_dir())
    }

    fn new(storage: Storage, rel: String, is_dir: bool) -> Shard {
        let display = storage.display(&rel);
        Shard {
            storage,
            rel,
            display,
            is_dir,
        }
    }

    /// The shard's bytes, gunzipped when its name ends in `.gz`.
    pub fn read(&self, io: &Io) -> anyhow::Result<Vec<u8>> {
        read_file(&self.storage, &self.rel, io)
    }

    /// The shard as a local file, for readers that stream it (Criteo rows, which can be
    /// gigabytes): itself when it is local, a downloaded copy (removed when the [`LocalFile`]
    /// is dropped) when it is on HDFS. Compressed as the shard is.
    pub fn local_file(&self, io: &Io) -> anyhow::Result<LocalFile> {
        match &self.storage {
            Storage::Local(root) => Ok(LocalFile {
                path: root.join(&self.rel),
                downloaded: false,
            }),
            Storage::Hdfs(_) => {
                let name = self.rel.rsplit('/').next().unwrap_or(&self.rel);
                let copy = LocalFile {
                    path: temporary_path(name),
                    downloaded: true,
                };
                io.block_on(self.storage.download(&self.rel, &copy.path))
                    .with_context(|| format!("downloading {}", self.display))?;
                Ok(copy)
            }
        }
    }

    /// The format of this shard judged from its name and first bytes: a directory holds
    /// `files`, `.bin` is CIFAR-10, `.txt`/`.list` a list, and a file whose first 12 bytes
    /// carry a valid TFRecord length checksum is TFRecord. `None`: none of these (Criteo rows).
    pub fn detect(&self, io: &Io) -> anyhow::Result<Option<InputFormat>> {
        if self.is_dir {
            return Ok(Some(InputFormat::Files));
        }
        let name = self.display.trim_end_matches(".gz");
        if name.ends_with(".bin") {
            return Ok(Some(InputFormat::Cifar10));
        }
        if name.ends_with(".txt") || name.ends_with(".list") {
            return Ok(Some(InputFormat::List));
        }
        let head = match &self.storage {
            Storage::Local(root) => {
                let file = std::fs::File::open(root.join(&self.rel))
                    .with_context(|| format!("opening {}", self.display))?;
                let mut head = Vec::with_capacity(12);
                let reader: Box<dyn Read> = if self.display.ends_with(".gz") {
                    Box::new(flate2::read::MultiGzDecoder::new(file))
                } else {
                    Box::new(file)
                };
                reader
                    .take(12)
                    .read_to_end(&mut head)
                    .with_context(|| format!("reading {}", self.display))?;
                head
            }
            Storage::Hdfs(_) => self.read(io)?,
        };
        Ok(tfrecord::looks_like_tfrecord(&head).then_some(InputFormat::TfRecord))
    }

    /// Walks the shard's records in order, calling `each` with every record or the reason it
    /// cannot be scored, until `each` returns false. An error means the shard itself could not
    /// be read.
    pub fn for_each_record(
        &self,
        format: InputFormat,
        io: &Io,
        each: &mut dyn FnMut(u64, Result<Record, RecordProblem>) -> bool,
    ) -> anyhow::Result<()> {
        match format {
            InputFormat::Cifar10 => {
                let data = self.read(io)?;
                for (index, record) in cifar::records(&data) {
                    let record = record.map(|(label, planes)| Record {
                        index,
                        label: Some(i64::from(label)),
                        encoded: cifar::to_png(planes),
                    });
                    if !each(index, record) {
                        break;
                    }
                }
            }
            InputFormat::TfRecord => {
                let data = self.read(io)?;
                for (index, payload) in tfrecord::Records::new(&data) {
                    let record = payload.and_then(parse_image_example).map(|e| Record {
                        index,
                        label: e.label,
                        encoded: e.encoded,
                    });
                    if !each(index, record) {
                        break;
                    }
                }
            }
            InputFormat::Files => {
                let listing = io
                    .block_on(self.storage.list(&self.rel))?
                    .with_context(|| format!("{} does not exist", self.display))?;
                let images = listing
                    .into_iter()
                    .filter(|e| !e.is_dir && is_image_name(&e.name));
                for (index, entry) in images.enumerate() {
                    let rel = join(&self.rel, &entry.name);
                    let record = read_file(&self.storage, &rel, io)
                        .map(|encoded| Record {
                            index: index as u64,
                            label: None,
                            encoded,
                        })
                        .map_err(|e| RecordProblem::File(format!("{e:#}")));
                    if !each(index as u64, record) {
                        break;
                    }
                }
            }
            InputFormat::List => {
                let text = String::from_utf8(self.read(io)?)
                    .with_context(|| format!("{} is not UTF-8 text", self.display))?;
                let dir = self.rel.rsplit_once('/').map_or("", |(d, _)| d);
                let lines = text.lines().filter(|l| !l.trim().is_empty());
                for (index, line) in lines.enumerate() {
                    let record = self
                        .list_entry(dir, line, io)
                        .map(|(encoded, label)| Record {
                            index: index as u64,
                            label,
                            encoded,
                        });
                    if !each(index as u64, record) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// One `PATH[<TAB>LABEL]` line of a list: the file's bytes and the label.
    fn list_entry(
        &self,
        dir: &str,
        line: &str,
        io: &Io,
    ) -> Result<(Vec<u8>, Option<i64>), RecordProblem> {
        let (path, label) = match line.split_once('\t') {
            Some((path, label)) => {
                let label = label.trim().parse::<i64>().map_err(|_| {
                    RecordProblem::File(format!(
                        "'{line}': the label '{}' is not a whole number",
                        label.trim()
                    ))
                })?;
                (path, Some(label))
            }
            None => (line.trim(), None),
        };
        let read = if Path::new(path).is_absolute() && !self.storage.is_hdfs() {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {path}: {e}"))
        } else {
            read_file(&self.storage, &join(dir, path), io)
        };
        let encoded = read.map_err(|e| RecordProblem::File(format!("{e:#}")))?;
        Ok((encoded, label))
    }
}

fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn read_file(storage: &Storage, rel: &str, io: &Io) -> anyhow::Result<Vec<u8>> {
    let shown = storage.display(rel);
    let bytes = io
        .block_on(storage.read(rel))?
        .with_context(|| format!("{shown} does not exist"))?;
    if !shown.ends_with(".gz") {
        return Ok(bytes);
    }
    let mut plain = Vec::with_capacity(bytes.len() * 4);
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut plain)
        .with_context(|| format!("{shown}: not gzip, or cut short"))?;
    Ok(plain)
}

//! Who owns a cache directory, and cleaning up after owners that died.
//!
//! A server holds its cache directory through a [`CacheDir`]: an exclusive `flock` on the
//! directory's `.owner` file (which also names the process, for people). The kernel releases that
//! lock however the process ends, SIGKILL and out-of-memory kills included, so "the lock can be
//! taken" means "its owner is dead", without trusting process ids that may have been reused.
//!
//! - Without `--cache-dir`, the cache is a new `spindle-cache-*` directory under the system's
//!   temporary directory, removed when the [`CacheDir`] is dropped (a normal exit, SIGTERM or
//!   Ctrl-C, an error return, a panic that unwinds). An exit that runs no destructor (SIGKILL,
//!   an abort) leaves it behind, so every start first removes the `spindle-cache-*` directories
//!   whose owner is dead.
//! - With `--cache-dir`, the directory outlives the server on purpose (a cold start serves its
//!   last good versions), so it is reused: the start takes its lock, refuses it while a live
//!   server holds it, and removes half-finished downloads a dead owner left.

use crate::cache::FETCH_PREFIX;
use crate::error::RepoError;
use std::fs::{File, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The lock file in a cache directory.
const OWNER_FILE: &str = ".owner";
/// The name prefix of temporary cache directories.
const TEMP_PREFIX: &str = "spindle-cache-";
/// A temporary cache directory is made under this name, locked, then renamed to its
/// `spindle-cache-*` name: a start cleaning up never sees one of those without its lock.
const STAGING_PREFIX: &str = ".spindle-cache-staging-";
/// `spindle-cache-*` directories without an owner file come from servers older than the lock
/// (or were made by hand): removed once nothing has changed in them for this long.
const LEGACY_AGE: Duration = Duration::from_secs(3600);

/// A cache directory this process owns. Blocking (filesystem work): create it on the blocking
/// pool, and drop it at exit.
#[derive(Debug)]
pub struct CacheDir {
    path: PathBuf,
    /// Removed on drop (no `--cache-dir`).
    temporary: bool,
    /// Holds the lock as long as it is open.
    _owner: File,
}

impl CacheDir {
    /// A new temporary cache directory under the system's temporary directory (`TMPDIR`),
    /// after removing those whose owner died.
    pub fn temporary() -> Result<CacheDir, RepoError> {
        CacheDir::temporary_in(&std::env::temp_dir())
    }

    /// [`CacheDir::temporary`] under `parent`.
    pub fn temporary_in(parent: &Path) -> Result<CacheDir, RepoError> {
        remove_stale(parent);
        let unique = format!("{}-{}", std::process::id(), nanos());
        let staging = parent.join(format!("{STAGING_PREFIX}{unique}"));
        std::fs::create_dir_all(&staging).map_err(|e| RepoError::io(&staging, e))?;
        let owner = lock(&staging)
            .and_then(|owner| owner.ok_or_else(|| in_use(&staging)))
            .and_then(|owner| {
                let path = parent.join(format!("{TEMP_PREFIX}{unique}"));
                std::fs::rename(&staging, &path).map_err(|e| RepoError::io(&path, e))?;
                Ok(CacheDir {
                    path,
                    temporary: true,
                    _owner: owner,
                })
            });
        if owner.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        owner
    }

    /// The configured `--cache-dir` (created if missing), kept at exit. Refused while another
    /// live server holds it; downloads a dead owner left half-done are removed.
    pub fn configured(path: &Path) -> Result<CacheDir, RepoError> {
        std::fs::create_dir_all(path).map_err(|e| RepoError::io(path, e))?;
        let owner = lock(path)?.ok_or_else(|| in_use(path))?;
        remove_partial_fetches(path);
        Ok(CacheDir {
            path: path.to_path_buf(),
            temporary: false,
            _owner: owner,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CacheDir {
    /// Removes a temporary cache (this runs at exit, when nothing is served any more, so the
    /// blocking removal holds up no request); a configured one stays for the next start.
    fn drop(&mut self) {
        if self.temporary {
            match std::fs::remove_dir_all(&self.path) {
                Ok(()) => tracing::debug!(dir = %self.path.display(), "cache directory removed"),
                Err(e) => {
                    tracing::warn!(dir = %self.path.display(), error = %e, "could not remove the cache directory; the next start removes it");
                }
            }
        }
    }
}

/// Takes the lock of `dir`'s owner file and writes our process id into it; `None` when a live
/// process holds it.
fn lock(dir: &Path) -> Result<Option<File>, RepoError> {
    let path = dir.join(OWNER_FILE);
    let io = |e| RepoError::io(&path, e);
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(None),
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    writeln!(file, "spindle serve, process {}", std::process::id()).map_err(io)?;
    Ok(Some(file))
}

fn in_use(dir: &Path) -> RepoError {
    let mut owner = String::new();
    let _ = File::open(dir.join(OWNER_FILE)).and_then(|mut f| f.read_to_string(&mut owner));
    let owner = owner.trim();
    RepoError::CacheInUse {
        path: dir.display().to_string(),
        owner: if owner.is_empty() {
            "another process".into()
        } else {
            owner.to_string()
        },
    }
}

/// Removes the temporary cache directories under `parent` whose owner is dead. Best effort: a
/// directory that cannot be examined or removed is left for the next start.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let staging = name.starts_with(STAGING_PREFIX);
        if !(name.starts_with(TEMP_PREFIX) || staging)
            || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let dir = entry.path();
        // Held while the directory is removed, so no one can take it meanwhile.
        let lock = match File::options().write(true).open(dir.join(OWNER_FILE)) {
            Ok(file) => match file.try_lock() {
                Ok(()) => Some(file),
                Err(_) => continue,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A staging directory is locked right after it is made; give its maker a moment.
                let age = if staging {
                    Duration::from_secs(60)
                } else {
                    LEGACY_AGE
                };
                if !older_than(&dir, age) {
                    continue;
                }
                None
            }
            Err(_) => continue,
        };
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!(dir = %dir.display(), "removed the cache directory of a server that is no longer running");
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a stale cache directory");
            }
        }
        drop(lock);
    }
}

/// Removes `<cache>/<model>/.fetch-*`: downloads their owner never finished.
fn remove_partial_fetches(cache: &Path) {
    let Ok(models) = std::fs::read_dir(cache) else {
        return;
    };
    for model in models.flatten() {
        let Ok(entries) = std::fs::read_dir(model.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(FETCH_PREFIX)
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn older_than(dir: &Path, age: Duration) -> bool {
    std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|elapsed| elapsed > age)
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

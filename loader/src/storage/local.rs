//! A repository in a local directory: plain, blocking `std::fs` (the caller, `Storage`, runs
//! these on the blocking pool), no retries within one operation (the next poll is the retry).

use super::{FileInfo, hex};
use crate::error::RepoError;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub(super) fn display(root: &Path, rel: &str) -> String {
    join(root, rel).display().to_string()
}

fn io(root: &Path, rel: &str, e: std::io::Error) -> RepoError {
    RepoError::io(&join(root, rel), e)
}

/// Unsorted: the caller sorts every backend's listing the same way.
pub(super) fn list(root: &Path, rel: &str) -> Result<Option<Vec<FileInfo>>, RepoError> {
    let dir = join(root, rel);
    let read = match std::fs::read_dir(&dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(root, rel, e)),
    };
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| io(root, rel, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // Follows symlinks, so a repository may link to models kept elsewhere.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        entries.push(FileInfo {
            name,
            is_dir: meta.is_dir(),
            len: if meta.is_dir() { 0 } else { meta.len() },
            modified_ms: modified_ms(&meta),
        });
    }
    Ok(Some(entries))
}

pub(super) fn read(root: &Path, rel: &str) -> Result<Option<Vec<u8>>, RepoError> {
    match std::fs::read(join(root, rel)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(root, rel, e)),
    }
}

/// Copies `rel` into the new file `dest`, hashing as it goes, and syncs it; returns the bytes
/// written and their sha256. Errors name the file they happened on.
pub(super) fn download(root: &Path, rel: &str, dest: &Path) -> Result<(u64, String), RepoError> {
    let dest_io = |e| RepoError::io(dest, e);
    let mut file = File::create(dest).map_err(dest_io)?;
    let mut input = File::open(join(root, rel)).map_err(|e| io(root, rel, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut written: u64 = 0;
    loop {
        let n = input.read(&mut buf).map_err(|e| io(root, rel, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(dest_io)?;
        written += n as u64;
    }
    file.sync_all().map_err(dest_io)?;
    Ok((written, hex(&hasher.finalize())))
}

pub(super) fn write(root: &Path, rel: &str, data: &[u8]) -> Result<(), RepoError> {
    let path = join(root, rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(root, rel, e))?;
    }
    let mut file = File::create(&path).map_err(|e| io(root, rel, e))?;
    file.write_all(data).map_err(|e| io(root, rel, e))?;
    file.sync_all().map_err(|e| io(root, rel, e))
}

pub(super) fn mkdirs(root: &Path, rel: &str) -> Result<(), RepoError> {
    std::fs::create_dir_all(join(root, rel)).map_err(|e| io(root, rel, e))
}

pub(super) fn rename(root: &Path, from: &str, to: &str) -> Result<(), RepoError> {
    std::fs::rename(join(root, from), join(root, to)).map_err(|e| io(root, to, e))
}

pub(super) fn delete(root: &Path, rel: &str) -> Result<(), RepoError> {
    let path = join(root, rel);
    let result = if path.is_dir() {
        std::fs::remove_dir_all(&path)
    } else {
        std::fs::remove_file(&path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(root, rel, e)),
        _ => Ok(()),
    }
}

pub(super) fn exists(root: &Path, rel: &str) -> bool {
    join(root, rel).exists()
}

fn join(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

fn modified_ms(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

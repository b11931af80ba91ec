//! The artifact of a YARN deployment: a gzipped tarball holding the running `spindle` binary
//! and the ONNX Runtime library, uploaded to HDFS through spindle's own HDFS client. YARN
//! unpacks it into `lib/` of each container's working directory.

use anyhow::Context;
use flate2::Compression;
use flate2::write::GzEncoder;
use spindle_loader::{HDFS_RETRY, Storage};
use std::path::Path;

/// The tarball's file name for a service.
pub fn tarball_name(service: &str) -> String {
    format!("spindle-{service}.tar.gz")
}

/// A tarball of this binary and, when given, the ONNX Runtime library (symlinks resolved, so
/// the container gets the file itself).
pub fn build(ort_library: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let exe = std::env::current_exe().context("finding the running spindle binary")?;
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    append(&mut tar, &exe, "spindle")?;
    if let Some(lib) = ort_library {
        let name = lib
            .file_name()
            .with_context(|| format!("{}: not a file name", lib.display()))?
            .to_string_lossy()
            .into_owned();
        append(&mut tar, lib, &name)?;
    }
    let gz = tar.into_inner().context("finishing the tarball")?;
    gz.finish().context("compressing the tarball")
}

fn append(
    tar: &mut tar::Builder<GzEncoder<Vec<u8>>>,
    path: &Path,
    name: &str,
) -> anyhow::Result<()> {
    let real =
        std::fs::canonicalize(path).with_context(|| format!("reading {}", path.display()))?;
    let mut file =
        std::fs::File::open(&real).with_context(|| format!("reading {}", real.display()))?;
    tar.append_file(name, &mut file)
        .with_context(|| format!("adding {} to the tarball", real.display()))
}

/// Uploads the tarball into the staging directory.
pub async fn upload(staging: &str, service: &str, tarball: &[u8]) -> anyhow::Result<()> {
    let storage = Storage::new(staging, HDFS_RETRY)?;
    storage
        .write(&tarball_name(service), tarball)
        .await
        .with_context(|| format!("uploading the tarball to {staging}"))?;
    Ok(())
}

/// Removes an uploaded tarball (after a refused submission).
pub async fn remove(staging: &str, service: &str) -> anyhow::Result<()> {
    let storage = Storage::new(staging, HDFS_RETRY)?;
    storage.delete(&tarball_name(service)).await?;
    Ok(())
}

/// Fails unless the repository directory exists (replicas would all exit at start otherwise).
pub async fn check_repo(repo: &str) -> anyhow::Result<()> {
    let storage = Storage::new(repo, HDFS_RETRY)?;
    match storage.list("").await? {
        Some(_) => Ok(()),
        None => Err(spindle_core::UsageError(format!(
            "--repo {repo}: no such directory on HDFS (publish models first: `spindle zoo --out {repo}`)"
        ))
        .into()),
    }
}

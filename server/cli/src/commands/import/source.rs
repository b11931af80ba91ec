//! Where the TensorFlow model comes from: a local path is used in place; an hdfs:// one is
//! copied into the import's temp dir first (TensorFlow's own HDFS support needs a JVM and
//! libhdfs; Spindle's loader needs neither).

use super::python::SourceKind;
use spindle_loader::{HDFS_RETRY, Storage, is_hdfs};
use std::path::{Path, PathBuf};

/// The local path TensorFlow reads for `location`: `location` itself, or its copy under `dest`.
///
/// From HDFS, a directory (a SavedModel, or a checkpoint directory with its `checkpoint` file)
/// is copied whole; a checkpoint prefix (`DIR/model.ckpt-N`) brings the files of that prefix and
/// the `checkpoint` file beside them.
pub async fn fetch(kind: SourceKind, location: &str, dest: &Path) -> anyhow::Result<PathBuf> {
    if !is_hdfs(location) {
        let path = PathBuf::from(location);
        // A checkpoint prefix names no file of its own; the helper checks for its .meta.
        if kind == SourceKind::SavedModel && !path.exists() {
            anyhow::bail!("--saved-model {location}: no such directory");
        }
        return Ok(path);
    }
    let trimmed = location.trim_end_matches('/');
    let (parent, base) = trimmed
        .rsplit_once('/')
        .filter(|(parent, _)| {
            parent.contains("://") && !parent.ends_with(':') && !parent.ends_with('/')
        })
        .ok_or_else(|| {
            anyhow::anyhow!("{location}: give the model's directory, not the root of HDFS")
        })?;
    let storage = Storage::new(parent, HDFS_RETRY)?;
    let listing = storage.list("").await?.ok_or_else(|| {
        anyhow::anyhow!("{location}: the directory {parent} does not exist on HDFS")
    })?;
    let flag = match kind {
        SourceKind::SavedModel => "--saved-model",
        SourceKind::Checkpoint => "--checkpoint",
    };
    std::fs::create_dir_all(dest)?;
    match listing.iter().find(|f| f.name == base) {
        Some(entry) if entry.is_dir => {
            let copied = copy_tree(&storage, base, &dest.join(base)).await?;
            eprintln!("import: fetched {copied} files from {location}");
            Ok(dest.join(base))
        }
        _ if kind == SourceKind::Checkpoint => {
            let prefix = format!("{base}.");
            let wanted: Vec<_> = listing
                .iter()
                .filter(|f| !f.is_dir && (f.name.starts_with(&prefix) || f.name == "checkpoint"))
                .collect();
            if !wanted.iter().any(|f| f.name.starts_with(&prefix)) {
                anyhow::bail!(
                    "{flag} {location}: no such directory or checkpoint prefix on HDFS (no \
                     {base}.meta, .index or .data-* files in {parent})"
                );
            }
            for file in &wanted {
                storage.download(&file.name, &dest.join(&file.name)).await?;
            }
            eprintln!("import: fetched {} files from {parent}", wanted.len());
            Ok(dest.join(base))
        }
        Some(_) => anyhow::bail!("{flag} {location}: is a file, not a SavedModel directory"),
        None => anyhow::bail!("{flag} {location}: no such directory on HDFS"),
    }
}

/// Copies the directory `rel` of `storage` into `dest`, recursively; returns the files copied.
async fn copy_tree(storage: &Storage, rel: &str, dest: &Path) -> anyhow::Result<usize> {
    let mut pending = vec![(rel.to_string(), dest.to_path_buf())];
    let mut copied = 0;
    while let Some((dir, local)) = pending.pop() {
        std::fs::create_dir_all(&local)?;
        for entry in storage.list(&dir).await?.unwrap_or_default() {
            let child = format!("{dir}/{}", entry.name);
            if entry.is_dir {
                pending.push((child, local.join(&entry.name)));
            } else {
                storage.download(&child, &local.join(&entry.name)).await?;
                copied += 1;
            }
        }
    }
    Ok(copied)
}

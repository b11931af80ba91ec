//! A local file that an async download fills: the chunks go over a bounded channel to a
//! blocking thread that hashes, writes and finally syncs them, so neither the sha256 of a large
//! model nor its fsync runs on the runtime's workers.

use super::hex;
use crate::error::RepoError;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Chunks in flight between the download and the writer: with HDFS packets of 64 KiB, about
/// 1 MiB, which bounds the memory a download holds whatever the model's size.
const CHUNKS_IN_FLIGHT: usize = 16;

/// The writing end of a download into a new local file.
pub(super) struct FileSink {
    chunks: Option<mpsc::Sender<Bytes>>,
    writer: JoinHandle<Result<(u64, String), RepoError>>,
}

impl FileSink {
    /// Creates `dest` (on the blocking thread that will write it).
    pub(super) fn create(dest: &Path) -> FileSink {
        let (chunks, mut received) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
        let dest = dest.to_path_buf();
        let writer = tokio::task::spawn_blocking(move || {
            let dest_io = |e| RepoError::io(&dest, e);
            let mut file = std::fs::File::create(&dest).map_err(dest_io)?;
            let mut hasher = Sha256::new();
            let mut written: u64 = 0;
            while let Some(chunk) = received.blocking_recv() {
                hasher.update(&chunk);
                file.write_all(&chunk).map_err(dest_io)?;
                written += chunk.len() as u64;
            }
            file.sync_all().map_err(dest_io)?;
            Ok((written, hex(&hasher.finalize())))
        });
        FileSink {
            chunks: Some(chunks),
            writer,
        }
    }

    /// Hands a chunk to the writer; `false` when the writer has stopped (on a local error,
    /// which [`FileSink::finish`] returns).
    pub(super) async fn send(&self, chunk: Bytes) -> bool {
        match &self.chunks {
            Some(chunks) => chunks.send(chunk).await.is_ok(),
            None => false,
        }
    }

    /// Ends the file: waits until every chunk is written and the file synced; its length and
    /// sha256, or the local error that stopped the writer.
    pub(super) async fn finish(mut self) -> Result<(u64, String), RepoError> {
        self.chunks = None;
        match (&mut self.writer).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(RepoError::Io {
                path: "(download writer)".into(),
                cause: std::io::Error::other(e),
            }),
        }
    }
}

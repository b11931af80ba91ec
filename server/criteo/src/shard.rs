//! Reading Criteo shards: plain text, gzip (`.gz`) or bzip2 (`.bz2`, as the seed's Pig jobs
//! wrote them), chosen by file extension; and expanding `--data`/`--input` globs into a sorted
//! list of shard files.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// How a shard is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain text.
    None,
    /// gzip (`.gz`).
    Gzip,
    /// bzip2 (`.bz2`).
    Bzip2,
}

impl Compression {
    /// The compression a file name implies.
    pub fn of(path: &Path) -> Compression {
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Compression::Gzip,
            Some("bz2") => Compression::Bzip2,
            _ => Compression::None,
        }
    }

    /// The file extension, with its dot, or empty.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Bzip2 => ".bz2",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Compression::None),
            "gz" | "gzip" => Ok(Compression::Gzip),
            "bz2" | "bzip2" => Ok(Compression::Bzip2),
            other => Err(format!(
                "unknown compression '{other}' (expected none, gz or bz2)"
            )),
        }
    }
}

/// Read buffer: large, because rows are short and the decoders like big reads.
const BUFFER: usize = 1 << 20;

/// Opens a shard for reading lines, decompressing by extension. Multi-member gzip files (as
/// `cat a.gz b.gz` makes) are read whole.
pub fn open_shard(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    Ok(Box::new(BufReader::with_capacity(
        BUFFER,
        open_shard_stream(path)?,
    )))
}

/// Opens a shard as a decompressed byte stream with no line buffering of its own, for
/// [`LineChunks`] (which buffers whole lines itself).
pub fn open_shard_stream(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    let file = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
    Ok(match Compression::of(path) {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            BUFFER, file,
        ))),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(BufReader::with_capacity(
            BUFFER, file,
        ))),
    })
}

/// Reads a stream in large chunks of whole lines, so a caller splits lines in place instead of
/// copying each one out (as `read_until` does). Only the part-line at the end of each read is
/// moved, to the front of the buffer; a line longer than the buffer grows it.
pub struct LineChunks<R> {
    reader: R,
    buffer: Vec<u8>,
    /// Bytes of `buffer` read but not yet handed out (a part-line, after the first call).
    kept: usize,
    /// Where the part-line starts once the chunk before it has been handed out.
    handed: usize,
}

impl<R: Read> LineChunks<R> {
    /// Chunks of `reader` of about [`BUFFER`] bytes.
    pub fn new(reader: R) -> LineChunks<R> {
        LineChunks::with_capacity(reader, BUFFER)
    }

    /// Chunks of about `capacity` bytes (at least one).
    pub fn with_capacity(reader: R, capacity: usize) -> LineChunks<R> {
        LineChunks {
            reader,
            buffer: vec![0; capacity.max(1)],
            kept: 0,
            handed: 0,
        }
    }

    /// The next lines, each ending in `\n` except the stream's last when it has none; empty at
    /// the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<&[u8]> {
        self.buffer.copy_within(self.handed..self.kept, 0);
        self.kept -= self.handed;
        self.handed = 0;
        loop {
            if self.kept == self.buffer.len() {
                self.buffer.resize(self.buffer.len() * 2, 0);
            }
            let read = loop {
                match self.reader.read(&mut self.buffer[self.kept..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            let searched = self.kept;
            self.kept += read;
            if read == 0 {
                // End of stream: whatever is left is the last line.
                self.handed = self.kept;
                return Ok(&self.buffer[..self.kept]);
            }
            if let Some(last) = memchr::memrchr(b'\n', &self.buffer[searched..self.kept]) {
                self.handed = searched + last + 1;
                return Ok(&self.buffer[..self.handed]);
            }
        }
    }
}

/// The lines of a chunk from [`LineChunks`], each with its `\n` when it has one.
pub fn lines(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', chunk);
    std::iter::from_fn(move || {
        let end = match ends.next() {
            Some(newline) => newline + 1,
            None if start < chunk.len() => chunk.len(),
            None => return None,
        };
        let line = &chunk[start..end];
        start = end;
        Some(line)
    })
}

/// A shard being written, compressed as its name says; [`ShardWriter::finish`] flushes and
/// completes the compressed stream, reporting errors a drop would swallow.
pub enum ShardWriter {
    /// Plain text.
    Plain(BufWriter<File>),
    /// gzip.
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
    /// bzip2.
    Bzip2(bzip2::write::BzEncoder<BufWriter<File>>),
}

impl ShardWriter {
    /// Wraps `file` in the encoder for `compression`.
    pub fn new(file: File, compression: Compression) -> ShardWriter {
        let file = BufWriter::with_capacity(BUFFER, file);
        match compression {
            Compression::None => ShardWriter::Plain(file),
            Compression::Gzip => ShardWriter::Gzip(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::new(6),
            )),
            Compression::Bzip2 => ShardWriter::Bzip2(bzip2::write::BzEncoder::new(
                file,
                bzip2::Compression::default(),
            )),
        }
    }

    /// Flushes everything and ends the compressed stream.
    pub fn finish(self) -> io::Result<()> {
        let mut file = match self {
            ShardWriter::Plain(f) => f,
            ShardWriter::Gzip(e) => e.finish()?,
            ShardWriter::Bzip2(e) => e.finish()?,
        };
        file.flush()?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()
    }
}

impl Write for ShardWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ShardWriter::Plain(w) => w.write(buf),
            ShardWriter::Gzip(w) => w.write(buf),
            ShardWriter::Bzip2(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ShardWriter::Plain(w) => w.flush(),
            ShardWriter::Gzip(w) => w.flush(),
            ShardWriter::Bzip2(w) => w.flush(),
        }
    }
}

/// A pattern that matched nothing, or is not a pattern.
#[derive(Debug, thiserror::Error)]
pub enum GlobError {
    /// The pattern does not parse.
    #[error("'{pattern}' is not a valid glob: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// Nothing matched.
    #[error(
        "no file matches '{0}' (quote the pattern so the shell does not expand it, and check the directory)"
    )]
    NoMatch(String),
}

/// Expands `pattern` (a file, or a glob like `data/day_*/part-*`) into sorted regular files,
/// skipping names that start with `_` or `.` (markers like `_SUCCESS`, temporary files).
pub fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>, GlobError> {
    let paths = glob::glob(pattern).map_err(|e| GlobError::Pattern {
        pattern: pattern.to_string(),
        message: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('_') && !n.starts_with('.'))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(GlobError::NoMatch(pattern.to_string()));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn reads_plain_gzip_and_bzip2_alike() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"0\t1\n1\t2\n".repeat(1000);
        let plain = dir.path().join("part-0");
        std::fs::write(&plain, &text).unwrap();
        let gz = dir.path().join("part-1.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(&text).unwrap();
        enc.finish().unwrap();
        let bz = dir.path().join("part-2.bz2");
        let mut enc =
            bzip2::write::BzEncoder::new(File::create(&bz).unwrap(), bzip2::Compression::fast());
        enc.write_all(&text).unwrap();
        enc.finish().unwrap();
        for path in [&plain, &gz, &bz] {
            let mut read = Vec::new();
            open_shard(path).unwrap().read_to_end(&mut read).unwrap();
            assert!(read == text, "{} reads back differently", path.display());
        }
        let files = expand_glob(&format!("{}/part-*", dir.path().display())).unwrap();
        assert_eq!(files, [plain, gz, bz]);
    }

    /// Splits `text` with [`LineChunks`] of `capacity` bytes and reads at most `step` bytes at
    /// a time from the source, as pipes and decoders do.
    fn chunked_lines(text: &[u8], capacity: usize, step: usize) -> Vec<Vec<u8>> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.1).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut chunks = LineChunks::with_capacity(Trickle(text, step), capacity);
        let mut out = Vec::new();
        loop {
            let chunk = chunks.next_chunk().unwrap();
            if chunk.is_empty() {
                return out;
            }
            out.extend(lines(chunk).map(<[u8]>::to_vec));
        }
    }

    #[test]
    fn line_chunks_give_the_lines_read_until_gives() {
        let texts: [&[u8]; 6] = [
            b"",
            b"\n",
            b"one line without end",
            b"a\nbb\n\nccc\r\n",
            b"a\nbb\n\nlast without end",
            &b"0\t1\t2\n1\t\t\t33\n".repeat(300),
        ];
        for text in texts {
            let mut want = Vec::new();
            let mut reader = text;
            loop {
                let mut line = Vec::new();
                if reader.read_until(b'\n', &mut line).unwrap() == 0 {
                    break;
                }
                want.push(line);
            }
            // Buffers smaller than a line, reads smaller than a buffer, and the usual case.
            for (capacity, step) in [(1, 1), (3, 2), (7, 100), (64, 5), (BUFFER, usize::MAX)] {
                assert_eq!(
                    chunked_lines(text, capacity, step),
                    want,
                    "capacity {capacity}, step {step}, text {:?}",
                    String::from_utf8_lossy(&text[..text.len().min(40)])
                );
            }
        }
    }

    #[test]
    fn corrupt_gzip_is_an_error_not_silence() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("bad.gz");
        std::fs::write(&gz, b"\x1f\x8b\x08\x00garbage that is not deflate").unwrap();
        let mut read = Vec::new();
        assert!(open_shard(&gz).unwrap().read_to_end(&mut read).is_err());
    }

    #[test]
    fn globs_that_match_nothing_say_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("_SUCCESS"), b"").unwrap();
        let e = expand_glob(&format!("{}/*", dir.path().display())).unwrap_err();
        assert!(e.to_string().contains("no file matches"), "{e}");
        assert!(open_shard(&dir.path().join("absent")).is_err());
    }
}

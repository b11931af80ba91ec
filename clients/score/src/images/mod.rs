//! Image datasets for batch scoring: the formats image models are evaluated from on Hadoop, read
//! into encoded images with their labels, and the job that scores them.
//!
//! - [`cifar`]: CIFAR-10 binary (`data_batch_N.bin`, `test_batch.bin`).
//! - [`tfrecord`] and [`example`]: TFRecord files of `tf.train.Example` (`image/encoded`,
//!   `image/class/label`, `image/format`), with both framing checksums checked.
//! - [`input`]: shards on local disk or HDFS (globs, plain or gzip) and their records.
//! - [`synth`]: synthetic datasets in both formats, for tests and benchmarks.
//! - [`backend`]: where batches of images are classified (in-process or through servers).
//! - [`job`]: the job: one TSV part per shard, `_SUCCESS`, summary with precision@1/recall@5.
//! - [`output`]: the output directory (local or HDFS), parts renamed into place, executor
//!   shares and their summaries.
//!
//! Every record becomes an encoded image (CIFAR-10's raw planes as a lossless PNG) so that one
//! code path prepares it: the serving library's `preprocess::prepare_inputs`, the code the
//! server runs on an image sent to it.

pub mod backend;
pub mod cifar;
pub mod example;
pub mod input;
pub mod job;
pub mod output;
pub mod synth;
pub mod tfrecord;

use std::fmt;
use std::str::FromStr;

/// One image of a shard.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// 0-based index within its shard.
    pub index: u64,
    /// Class index, when the input has labels.
    pub label: Option<i64>,
    /// JPEG or PNG bytes.
    pub encoded: Vec<u8>,
}

/// Why one record could not be scored. The kinds are what the summary counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordProblem {
    /// The shard ends inside a record (the rest of the shard is lost).
    Truncated(String),
    /// A TFRecord length checksum is wrong (the rest of the shard cannot be framed).
    LengthCrc(String),
    /// A TFRecord data checksum is wrong (this record only).
    DataCrc(String),
    /// The payload is not an image Example.
    Example(String),
    /// An image file of a list or directory cannot be read.
    File(String),
    /// The image does not decode or prepare (the server's preprocessing refused it).
    Image(String),
}

impl RecordProblem {
    /// A short name for counting: `truncated`, `length_crc`, `data_crc`, `example`, `file`,
    /// `image`.
    pub fn kind(&self) -> &'static str {
        match self {
            RecordProblem::Truncated(_) => "truncated",
            RecordProblem::LengthCrc(_) => "length_crc",
            RecordProblem::DataCrc(_) => "data_crc",
            RecordProblem::Example(_) => "example",
            RecordProblem::File(_) => "file",
            RecordProblem::Image(_) => "image",
        }
    }
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, why) = match self {
            RecordProblem::Truncated(w) => ("truncated record", w),
            RecordProblem::LengthCrc(w) => ("bad length checksum", w),
            RecordProblem::DataCrc(w) => ("bad data checksum", w),
            RecordProblem::Example(w) => ("bad tf.train.Example", w),
            RecordProblem::File(w) => ("unreadable image file", w),
            RecordProblem::Image(w) => ("bad image", w),
        };
        write!(f, "{what}: {why}")
    }
}

/// How input shards are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// CIFAR-10 binary records.
    Cifar10,
    /// TFRecord files of image Examples.
    TfRecord,
    /// A directory of JPEG/PNG files (one shard per directory, no labels).
    Files,
    /// A list file: one `PATH[<TAB>LABEL]` per line, paths relative to the list's directory
    /// unless absolute (one shard per list).
    List,
}

impl FromStr for InputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<InputFormat, String> {
        match s {
            "cifar10" => Ok(InputFormat::Cifar10),
            "tfrecord" => Ok(InputFormat::TfRecord),
            "files" => Ok(InputFormat::Files),
            "list" => Ok(InputFormat::List),
            other => Err(format!(
                "unknown image format '{other}'; expected cifar10, tfrecord, files or list"
            )),
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputFormat::Cifar10 => "cifar10",
            InputFormat::TfRecord => "tfrecord",
            InputFormat::Files => "files",
            InputFormat::List => "list",
        })
    }
}

//! Synthetic image datasets, format-exact, for tests and benchmarks: CIFAR-10 binary batches and
//! TFRecord shards of JPEG or PNG Examples. The images are made up (a per-class colour and
//! stripe pattern with noise), not photographs; the labels are the classes they were drawn for.

use super::{cifar, example, tfrecord};
use anyhow::Context;
use image::ImageEncoder;
use spindle_criteo::rng::SplitMix64;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How encoded images are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// JPEG, quality 90.
    Jpeg,
    /// PNG.
    Png,
}

/// What a synthetic dataset holds.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    /// Directory to write into (created).
    pub out: PathBuf,
    /// Records in all.
    pub records: u64,
    /// Files to spread them over.
    pub shards: usize,
    /// Seed: the same seed writes the same bytes.
    pub seed: u64,
    /// Classes; labels are drawn from `0..classes`.
    pub classes: u32,
    /// Gzip each file (`.gz`).
    pub gzip: bool,
}

/// The files written.
#[derive(Clone, Debug)]
pub struct SynthReport {
    /// Paths, in order.
    pub files: Vec<PathBuf>,
    /// Records in all.
    pub records: u64,
    /// Bytes written (after compression).
    pub bytes: u64,
}

/// One made-up `width` x `height` RGB image of class `class`: interleaved rows.
fn picture(rng: &mut SplitMix64, width: u32, height: u32, class: u32) -> Vec<u8> {
    let hue = [
        (class * 97) % 256,
        (class * 57 + 80) % 256,
        (class * 23 + 160) % 256,
    ];
    let period = 4 + class % 7;
    let phase = (rng.next_u64() % 64) as u32;
    let mut raw = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let stripe = if ((x + y + phase) / period).is_multiple_of(2) {
                40
            } else {
                0
            };
            let noise = rng.next_u64();
            for (c, base) in hue.iter().enumerate() {
                let n = ((noise >> (c * 8)) & 0x1f) as u32;
                raw.push(((base * 3 / 4) + stripe + n).min(255) as u8);
            }
        }
    }
    raw
}

/// Spreads `records` over `shards` files: the first ones get one more when it does not divide.
fn per_shard(records: u64, shards: usize, k: usize) -> u64 {
    records / shards as u64 + u64::from((k as u64) < records % shards as u64)
}

fn check(config: &SynthConfig) -> anyhow::Result<()> {
    if config.shards == 0 || config.records == 0 || config.classes == 0 {
        anyhow::bail!("records, shards and classes must each be at least 1");
    }
    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("creating {}", config.out.display()))
}

/// Writes `config.shards` files named by `name(k)`, each record appended by `record(rng,
/// class, file)` for a class drawn at random.
fn write_shards(
    config: &SynthConfig,
    name: impl Fn(usize) -> String,
    mut record: impl FnMut(&mut SplitMix64, u32, &mut Vec<u8>) -> anyhow::Result<()>,
) -> anyhow::Result<SynthReport> {
    check(config)?;
    let mut rng = SplitMix64(config.seed);
    let mut report = SynthReport {
        files: Vec::new(),
        records: 0,
        bytes: 0,
    };
    for k in 0..config.shards {
        let mut data = Vec::new();
        for _ in 0..per_shard(config.records, config.shards, k) {
            let class = (rng.next_u64() % u64::from(config.classes)) as u32;
            record(&mut rng, class, &mut data)?;
            report.records += 1;
        }
        finish_file(config, &name(k), &data, &mut report)?;
    }
    Ok(report)
}

/// Writes `data_batch_1.bin` ... `data_batch_K.bin` (CIFAR-10 binary, 32x32, at most 256
/// classes as the label is one byte).
pub fn write_cifar10(config: &SynthConfig) -> anyhow::Result<SynthReport> {
    if config.classes > 256 {
        anyhow::bail!(
            "CIFAR-10 labels are one byte: at most 256 classes, got {}",
            config.classes
        );
    }
    write_shards(
        config,
        |k| format!("data_batch_{}.bin", k + 1),
        |rng, class, data| {
            let raw = picture(rng, 32, 32, class);
            cifar::write_record(data, class as u8, &cifar::planes(&raw));
            Ok(())
        },
    )
}

/// Writes `images-00000-of-0000K.tfrecord` ...: TFRecord shards of image Examples
/// (`image/encoded`, `image/class/label`, `image/format`), `width` x `height` images.
pub fn write_tfrecord(
    config: &SynthConfig,
    width: u32,
    height: u32,
    encoding: Encoding,
) -> anyhow::Result<SynthReport> {
    write_shards(
        config,
        |k| format!("images-{k:05}-of-{:05}.tfrecord", config.shards),
        |rng, class, data| {
            let raw = picture(rng, width, height, class);
            let (encoded, format) = encode(&raw, width, height, encoding)?;
            let payload = example::image_example(&encoded, Some(i64::from(class)), format);
            tfrecord::write_record(data, &payload);
            Ok(())
        },
    )
}

/// Encodes one interleaved RGB image.
pub fn encode(
    raw: &[u8],
    width: u32,
    height: u32,
    encoding: Encoding,
) -> anyhow::Result<(Vec<u8>, &'static str)> {
    let mut out = Vec::new();
    let color = image::ExtendedColorType::Rgb8;
    match encoding {
        Encoding::Jpeg => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
                .write_image(raw, width, height, color)?;
            Ok((out, "JPEG"))
        }
        Encoding::Png => {
            image::codecs::png::PngEncoder::new(&mut out).write_image(raw, width, height, color)?;
            Ok((out, "PNG"))
        }
    }
}

/// Writes one file under a temporary name, gzipped if asked, then renames it into place.
fn finish_file(
    config: &SynthConfig,
    name: &str,
    data: &[u8],
    report: &mut SynthReport,
) -> anyhow::Result<()> {
    let name = if config.gzip {
        format!("{name}.gz")
    } else {
        name.to_string()
    };
    let path = config.out.join(&name);
    let temporary = config.out.join(format!(".{name}.tmp"));
    let bytes = if config.gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data)?;
        gz.finish()?
    } else {
        data.to_vec()
    };
    write_then_rename(&temporary, &path, &bytes)?;
    report.bytes += bytes.len() as u64;
    report.files.push(path);
    Ok(())
}

fn write_then_rename(temporary: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(temporary, bytes).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(temporary, path)
        .with_context(|| format!("renaming {} into place", temporary.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::InputFormat;
    use crate::images::input::{Io, expand};

    fn config(out: &Path, gzip: bool) -> SynthConfig {
        SynthConfig {
            out: out.to_path_buf(),
            records: 7,
            shards: 2,
            seed: 3,
            classes: 10,
            gzip,
        }
    }

    /// Reads every record of every shard back with the readers.
    fn read_back(pattern: &str) -> Vec<(String, u64, Option<i64>, usize)> {
        let io = Io::new().unwrap();
        let mut out = Vec::new();
        for shard in expand(pattern, &io).unwrap() {
            let format = shard.detect(&io).unwrap().expect("a known format");
            shard
                .for_each_record(format, &io, &mut |i, r| {
                    let r = r.unwrap();
                    out.push((format.to_string(), i, r.label, r.encoded.len()));
                    true
                })
                .unwrap();
        }
        out
    }

    #[test]
    fn both_formats_read_back_plain_and_gzipped_and_are_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        for gzip in [false, true] {
            let out = dir.path().join(format!("cifar-{gzip}"));
            let report = write_cifar10(&config(&out, gzip)).unwrap();
            assert_eq!((report.records, report.files.len()), (7, 2));
            let read = read_back(&format!("{}/data_batch_*", out.display()));
            assert_eq!(read.len(), 7);
            assert!(read.iter().all(|r| r.0 == "cifar10" && r.2.unwrap() < 10));
            assert_eq!(
                read.iter().filter(|r| r.1 == 3).count(),
                1,
                "shards of 4 and 3: {read:?}"
            );

            let out = dir.path().join(format!("tf-{gzip}"));
            write_tfrecord(&config(&out, gzip), 50, 40, Encoding::Jpeg).unwrap();
            let read = read_back(&out.display().to_string());
            assert_eq!(read.len(), 7);
            assert!(read.iter().all(|r| r.0 == "tfrecord" && r.3 > 100));
        }
        let again = dir.path().join("again");
        write_cifar10(&config(&again, false)).unwrap();
        assert_eq!(
            std::fs::read(again.join("data_batch_2.bin")).unwrap(),
            std::fs::read(dir.path().join("cifar-false/data_batch_2.bin")).unwrap()
        );
        assert_eq!(InputFormat::TfRecord.to_string(), "tfrecord");
    }
}

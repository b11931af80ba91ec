//! `spindle data criteo`: realistic synthetic Criteo days, deterministic from a seed.
//!
//! Each row has the real layout (label, 13 integers, 26 8-hex-digit tokens) and the real
//! statistics that matter: per-column missing rates, log-normal (heavy-tailed) counts, Zipf-like
//! token popularity over each column's true cardinality (3 to ten million), a click rate of about
//! 3.3 %. Labels are drawn from a known sparse logistic model over the *same* hashed ids and
//! crosses the transform produces ([`TrueModel`]), so the best achievable (Bayes) log loss is
//! known: the generator reports it, and the trainer recomputes it on its validation rows.
//!
//! Every shard has its own random stream, seeded by (seed, day, shard), so shards are written
//! in parallel and the bytes do not depend on the thread count.

use crate::metrics::{LogLoss, entropy};
use crate::rng::{SplitMix, mix, unit};
use crate::shard::Compression;
use crate::spec::{CATEGORICAL_COLUMNS, CRITEO_CARDINALITIES, FeatureSpec, INTEGER_COLUMNS};
use crate::transform::Transformer;
use serde::{Deserialize, Serialize};
use std::io::{self, Write};

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The click rate the generator aims for (the seed's data: 3.3 %).
pub const TARGET_CLICK_RATE: f64 = 0.033;

/// Name of the generator's report, written beside the days.
pub const REPORT_FILE: &str = "_generator.json";

/// Missing rate, log-mean and log-sd of each integer column, after the Criteo data's own.
const INTEGERS: [(f64, f64, f64); INTEGER_COLUMNS] = [
    (0.45, 0.8, 1.2),
    (0.0, 2.5, 2.0),
    (0.21, 2.0, 1.5),
    (0.22, 1.8, 1.0),
    (0.03, 7.5, 2.0),
    (0.22, 3.5, 1.6),
    (0.04, 1.5, 1.5),
    (0.0005, 2.3, 1.0),
    (0.04, 3.5, 1.4),
    (0.45, 0.3, 0.6),
    (0.04, 1.0, 1.0),
    (0.77, 0.3, 1.0),
    (0.22, 1.8, 1.0),
];

/// Missing rate of each categorical column.
const CATEGORICAL_MISSING: [f64; CATEGORICAL_COLUMNS] = [
    0.0, 0.0, 0.034, 0.034, 0.0, 0.12, 0.0, 0.0, 0.0, 0.0, 0.0, 0.034, 0.0, 0.0, 0.0, 0.034, 0.0,
    0.0, 0.44, 0.44, 0.034, 0.76, 0.0, 0.034, 0.44, 0.44,
];

/// The known model labels are drawn from: a sparse logistic regression over the spec's ids.
/// Weight `id` is nonzero with probability `density`, then normal with sd `scale`; weights are a
/// keyed hash of the id, so the model needs no storage and is the same everywhere.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrueModel {
    /// Key of the weight hash.
    pub seed: u64,
    /// Intercept, calibrated to [`TARGET_CLICK_RATE`].
    pub bias: f64,
    /// Fraction of ids with a nonzero weight.
    pub density: f64,
    /// Standard deviation of the nonzero weights.
    pub scale: f64,
}

impl TrueModel {
    /// The true weight of `id`.
    #[inline]
    pub fn weight(&self, id: i64) -> f64 {
        let h = mix(self.seed ^ (id as u64).wrapping_mul(0xd6e8_feb8_6659_fd93));
        if unit(h) >= self.density {
            return 0.0;
        }
        let (u1, u2) = (1.0 - unit(mix(h)), unit(mix(h ^ 0x5555)));
        self.scale * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// The true click probability of a row's ids.
    #[inline]
    pub fn probability(&self, ids: &[i64]) -> f64 {
        let logit = self.bias + ids.iter().map(|&id| self.weight(id)).sum::<f64>();
        1.0 / (1.0 + (-logit).exp())
    }
}

/// What `spindle data criteo` was asked for.
#[derive(Clone, Debug)]
pub struct GenerateConfig {
    /// Output directory.
    pub out: PathBuf,
    /// Days (`day_0`, `day_1`, ...).
    pub days: usize,
    /// Rows per day.
    pub rows_per_day: u64,
    /// Shards per day (`part-00000`, ...).
    pub shards_per_day: usize,
    /// Compression of the shards.
    pub compression: Compression,
    /// Seed: the same seed writes the same bytes.
    pub seed: u64,
}

/// What the generator wrote, and the best loss any model can reach on it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GenerateReport {
    /// The seed.
    pub seed: u64,
    /// Rows written.
    pub rows: u64,
    /// Rows labelled 1.
    pub clicks: u64,
    /// `clicks / rows`.
    pub click_rate: f64,
    /// Expected log loss of the true probabilities (the mean binary entropy of each row's true
    /// click probability): no model can do better on average.
    pub bayes_log_loss: f64,
    /// Log loss of always predicting the click rate.
    pub base_rate_entropy: f64,
    /// The model the labels came from.
    pub true_model: TrueModel,
    /// The feature spec the true model is defined over.
    pub spec: FeatureSpec,
    /// Shard files, relative to the output directory.
    pub shards: Vec<String>,
}

/// Writes one row at a time into a buffer; see the module docs.
pub struct RowGenerator<'a> {
    rng: SplitMix,
    transformer: &'a Transformer,
    model: &'a TrueModel,
    ids: Vec<i64>,
}

impl<'a> RowGenerator<'a> {
    /// A generator with its own stream `seed`.
    pub fn new(seed: u64, transformer: &'a Transformer, model: &'a TrueModel) -> Self {
        RowGenerator {
            rng: SplitMix::new(seed),
            transformer,
            model,
            ids: vec![0; transformer.fields()],
        }
    }

    /// Appends one labelled row and its newline to `out`; returns the label and the true click
    /// probability.
    pub fn row(&mut self, out: &mut Vec<u8>) -> (bool, f64) {
        let start = out.len();
        out.extend_from_slice(b"0");
        for (c, &(missing, mu, sigma)) in INTEGERS.iter().enumerate() {
            out.push(b'\t');
            if self.rng.next_f64() < missing {
                continue;
            }
            // Column I2 has small negative values in the real data.
            let value = if c == 1 && self.rng.next_f64() < 0.05 {
                -1 - (self.rng.next_u64() % 3) as i64
            } else {
                ((mu + sigma * self.rng.normal()).exp() - 1.0).max(0.0) as i64
            };
            crate::text::write_i64(out, value);
        }
        for c in 0..CATEGORICAL_COLUMNS {
            out.push(b'\t');
            if self.rng.next_f64() < CATEGORICAL_MISSING[c] {
                continue;
            }
            // Log-uniform over [0, cardinality): a few values dominate, most are rare.
            let cardinality = CRITEO_CARDINALITIES[c];
            let index = ((self.rng.next_f64() * ((cardinality + 1) as f64).ln()).exp() - 1.0)
                .min((cardinality - 1) as f64) as u64;
            let token = (mix(((c as u64) << 40) ^ index) >> 32) as u32;
            write_hex(out, token);
        }
        let features = &out[start + 2..];
        self.transformer
            .transform(features, &mut self.ids)
            .expect("the generator writes well-formed rows");
        let p = self.model.probability(&self.ids);
        let clicked = self.rng.next_f64() < p;
        if clicked {
            out[start] = b'1';
        }
        out.push(b'\n');
        (clicked, p)
    }
}

fn write_hex(out: &mut Vec<u8>, token: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..8).rev() {
        out.push(HEX[((token >> (shift * 4)) & 0xf) as usize]);
    }
}

/// The true model for `seed`, its intercept bisected so that the mean true click probability
/// over a calibration sample is [`TARGET_CLICK_RATE`].
pub fn calibrated_model(seed: u64, transformer: &Transformer) -> TrueModel {
    let mut model = TrueModel {
        seed: mix(seed ^ 0x7275_6520_6d6f_6465),
        bias: 0.0,
        density: 0.25,
        scale: 0.5,
    };
    let mut generator = RowGenerator::new(mix(seed ^ 0xca11b), transformer, &model);
    let mut line = Vec::new();
    let mut ids = vec![0i64; transformer.fields()];
    let logits: Vec<f64> = (0..20_000)
        .map(|_| {
            line.clear();
            generator.row(&mut line);
            transformer.transform(&line, &mut ids).expect("well-formed");
            ids.iter().map(|&id| model.weight(id)).sum()
        })
        .collect();
    let (mut low, mut high) = (-20.0, 5.0);
    for _ in 0..60 {
        let bias = (low + high) / 2.0;
        let rate = logits
            .iter()
            .map(|l| 1.0 / (1.0 + (-(l + bias)).exp()))
            .sum::<f64>()
            / logits.len() as f64;
        if rate > TARGET_CLICK_RATE {
            high = bias;
        } else {
            low = bias;
        }
    }
    model.bias = (low + high) / 2.0;
    model
}

/// Writes the days, `features.toml` and [`REPORT_FILE`]; `progress` is called with rows written.
pub fn generate(
    config: &GenerateConfig,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<GenerateReport> {
    let spec = FeatureSpec::criteo_default();
    let transformer = Transformer::new(spec.clone()).expect("the default spec is valid");
    let model = calibrated_model(config.seed, &transformer);
    let shards: Vec<(usize, usize, u64)> = (0..config.days)
        .flat_map(|day| {
            let k = config.shards_per_day as u64;
            (0..config.shards_per_day).map(move |s| {
                // The first `rows % k` shards get one row more.
                let rows =
                    config.rows_per_day / k + u64::from((s as u64) < config.rows_per_day % k);
                (day, s, rows)
            })
        })
        .collect();
    let next = AtomicUsize::new(0);
    let totals = Mutex::new((0u64, 0u64, LogLoss::default()));
    let first_error = Mutex::new(None);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads.min(shards.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(day, shard, rows)) = shards.get(i) else {
                        break;
                    };
                    let stream = mix(config.seed ^ mix(((day as u64) << 32) | shard as u64));
                    let path = shard_path(&config.out, day, shard, config.compression);
                    match write_shard(
                        &path,
                        rows,
                        stream,
                        &transformer,
                        &model,
                        config.compression,
                        progress,
                    ) {
                        Ok((clicks, bayes)) => {
                            let mut t = totals.lock().expect("no panics while held");
                            t.0 += rows;
                            t.1 += clicks;
                            t.2.merge(bayes);
                        }
                        Err(e) => {
                            first_error
                                .lock()
                                .expect("no panics while held")
                                .get_or_insert(e);
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("threads joined") {
        return Err(e);
    }
    let (rows, clicks, bayes) = totals.into_inner().expect("threads joined");
    let click_rate = clicks as f64 / rows.max(1) as f64;
    let report = GenerateReport {
        seed: config.seed,
        rows,
        clicks,
        click_rate,
        bayes_log_loss: bayes.mean().unwrap_or(f64::NAN),
        base_rate_entropy: entropy(click_rate),
        true_model: model,
        spec: spec.clone(),
        shards: shards
            .iter()
            .map(|&(d, s, _)| format!("day_{d}/part-{s:05}{}", config.compression.extension()))
            .collect(),
    };
    std::fs::write(config.out.join("features.toml"), spec.to_toml())?;
    let json = serde_json::to_string_pretty(&report).expect("the report serialises");
    std::fs::write(config.out.join(REPORT_FILE), json + "\n")?;
    Ok(report)
}

/// `<out>/day_<d>/part-<sssss><ext>`.
pub fn shard_path(out: &Path, day: usize, shard: usize, compression: Compression) -> PathBuf {
    out.join(format!("day_{day}"))
        .join(format!("part-{shard:05}{}", compression.extension()))
}

/// Writes one shard under a hidden temporary name, then renames it. Returns clicks and the
/// expected (entropy) Bayes loss of its rows.
fn write_shard(
    path: &Path,
    rows: u64,
    stream: u64,
    transformer: &Transformer,
    model: &TrueModel,
    compression: Compression,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<(u64, LogLoss)> {
    let dir = path.parent().expect("shards live in a day directory");
    std::fs::create_dir_all(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 name");
    let temporary = dir.join(format!(".{name}.tmp"));
    let file = std::fs::File::create(&temporary)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", temporary.display())))?;
    let mut writer = crate::shard::ShardWriter::new(file, compression);
    let mut generator = RowGenerator::new(stream, transformer, model);
    let mut buf = Vec::with_capacity(1 << 20);
    let (mut clicks, mut bayes) = (0u64, LogLoss::default());
    let mut written = 0u64;
    while written < rows {
        let chunk = (rows - written).min(4096);
        for _ in 0..chunk {
            let (clicked, p) = generator.row(&mut buf);
            clicks += u64::from(clicked);
            bayes.add_expected(p);
        }
        writer.write_all(&buf)?;
        buf.clear();
        written += chunk;
        progress(chunk);
    }
    writer.finish()?;
    std::fs::rename(&temporary, path)?;
    Ok((clicks, bayes))
}

#[cfg(test)]
#[path = "generate_tests.rs"]
mod tests;

//! Streaming FTRL-Proximal logistic regression over shards of raw rows (McMahan et al., "Ad
//! Click Prediction: a View from the Trenches", 2013): the seed's CTR model, fitted in a few
//! passes without holding the data in memory. Every row contributes exactly `F` ids of value 1,
//! so the model is one weight per id plus a bias: what the ONNX model gathers and sums.

use crate::generate::TrueModel;
use crate::metrics::{LogLoss, auc, entropy};
use crate::transform::Transformer;
use std::io::{self, BufRead};
use std::path::PathBuf;

/// Learning-rate and regularisation settings.
#[derive(Clone, Copy, Debug)]
pub struct FtrlConfig {
    /// Per-coordinate learning rate scale.
    pub alpha: f64,
    /// Learning rate smoothing.
    pub beta: f64,
    /// L1 strength (sparsity).
    pub l1: f64,
    /// L2 strength.
    pub l2: f64,
    /// Passes over the training shards.
    pub passes: usize,
}

impl Default for FtrlConfig {
    fn default() -> Self {
        FtrlConfig {
            alpha: 0.05,
            beta: 1.0,
            l1: 0.5,
            l2: 1.0,
            passes: 3,
        }
    }
}

/// Where rows come from: a shard file, or bytes in memory (the zoo fits on generated rows).
#[derive(Clone, Debug)]
pub enum RowSource {
    /// A plain, `.gz` or `.bz2` file.
    File(PathBuf),
    /// Rows in memory, with a name for messages.
    Memory(String, std::sync::Arc<Vec<u8>>),
}

impl RowSource {
    fn open(&self) -> io::Result<Box<dyn BufRead + Send + '_>> {
        match self {
            RowSource::File(path) => Ok(crate::shard::open_shard(path)?),
            RowSource::Memory(_, bytes) => Ok(Box::new(io::Cursor::new(bytes.as_slice()))),
        }
    }

    /// The name used in messages: the path, or the given name.
    pub fn name(&self) -> String {
        match self {
            RowSource::File(path) => path.display().to_string(),
            RowSource::Memory(name, _) => name.clone(),
        }
    }
}

/// A training failure.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A shard could not be read.
    #[error("reading {shard}: {source}")]
    Read {
        /// The shard.
        shard: String,
        /// Why.
        source: io::Error,
    },
    /// A row without a label: training needs labelled rows.
    #[error("{shard}:{line}: the row has no label; training needs the leading 0/1 column")]
    Unlabelled {
        /// The shard.
        shard: String,
        /// 1-based line.
        line: u64,
    },
    /// No labelled training rows at all.
    #[error("no training rows: every row was malformed or the shards are empty")]
    NoRows,
}

/// The generator's model, to compute the best achievable loss on the validation rows.
pub struct BayesReference {
    /// Transform of the generator's spec.
    pub transformer: Transformer,
    /// Its label model.
    pub model: TrueModel,
}

/// The fitted model and how well it does.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainReport {
    /// Training rows per pass.
    pub train_rows: u64,
    /// Validation rows.
    pub validation_rows: u64,
    /// Malformed rows skipped (each pass counts them again).
    pub malformed_rows: u64,
    /// The first few malformed rows, as `shard:line: problem`.
    pub malformed_examples: Vec<String>,
    /// Progressive (predict-then-update) log loss of the last pass.
    pub train_log_loss: f64,
    /// AUC of the last pass's progressive predictions.
    pub train_auc: Option<f64>,
    /// Log loss on the validation rows.
    pub validation_log_loss: Option<f64>,
    /// AUC on the validation rows.
    pub validation_auc: Option<f64>,
    /// Log loss on validation of always predicting the training click rate.
    pub base_rate_entropy: f64,
    /// Log loss on validation of the generator's true probabilities, when known.
    pub bayes_log_loss: Option<f64>,
    /// Training click rate.
    pub click_rate: f64,
}

/// The fitted weights: one per id, and the bias.
pub struct Fitted {
    /// `id_space` weights.
    pub weights: Vec<f32>,
    /// Intercept.
    pub bias: f32,
    /// Metrics.
    pub report: TrainReport,
}

struct Ftrl {
    config: FtrlConfig,
    z: Vec<f64>,
    n: Vec<f64>,
    bias_z: f64,
    bias_n: f64,
}

impl Ftrl {
    #[inline]
    fn weight(&self, z: f64, n: f64, l1: f64, l2: f64) -> f64 {
        if z.abs() <= l1 {
            0.0
        } else {
            -(z - z.signum() * l1) / ((self.config.beta + n.sqrt()) / self.config.alpha + l2)
        }
    }

    #[inline]
    fn bias(&self) -> f64 {
        self.weight(self.bias_z, self.bias_n, 0.0, 0.0)
    }

    #[inline]
    fn logit(&self, ids: &[i64]) -> f64 {
        let (l1, l2) = (self.config.l1, self.config.l2);
        self.bias()
            + ids
                .iter()
                .map(|&i| self.weight(self.z[i as usize], self.n[i as usize], l1, l2))
                .sum::<f64>()
    }

    /// Predicts, then updates every active coordinate with the log-loss gradient.
    #[inline]
    fn learn(&mut self, ids: &[i64], clicked: bool) -> f64 {
        let p = sigmoid(self.logit(ids));
        let g = p - f64::from(u8::from(clicked));
        let (l1, l2, alpha) = (self.config.l1, self.config.l2, self.config.alpha);
        for &i in ids {
            let i = i as usize;
            let w = self.weight(self.z[i], self.n[i], l1, l2);
            let sigma = ((self.n[i] + g * g).sqrt() - self.n[i].sqrt()) / alpha;
            self.z[i] += g - sigma * w;
            self.n[i] += g * g;
        }
        let w = self.bias();
        let sigma = ((self.bias_n + g * g).sqrt() - self.bias_n.sqrt()) / alpha;
        self.bias_z += g - sigma * w;
        self.bias_n += g * g;
        p
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Visits every well-formed labelled row of `sources`; malformed rows are counted and skipped.
fn for_each_row(
    sources: &[RowSource],
    transformer: &Transformer,
    skipped: &mut (u64, Vec<String>),
    mut visit: impl FnMut(&[u8], &[i64], bool),
) -> Result<(), TrainError> {
    let mut ids = vec![0i64; transformer.fields()];
    let mut line = Vec::with_capacity(1024);
    for source in sources {
        let read_error = |source_error| TrainError::Read {
            shard: source.name(),
            source: source_error,
        };
        let mut reader = source.open().map_err(read_error)?;
        let mut number = 0u64;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(read_error)? == 0 {
                break;
            }
            number += 1;
            match transformer.transform(&line, &mut ids) {
                Ok(Some(clicked)) => visit(&line, &ids, clicked),
                Ok(None) => {
                    return Err(TrainError::Unlabelled {
                        shard: source.name(),
                        line: number,
                    });
                }
                Err(problem) => {
                    skipped.0 += 1;
                    if skipped.1.len() < 5 {
                        skipped
                            .1
                            .push(format!("{}:{number}: {problem}", source.name()));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Fits the model on `train` in `config.passes` passes and evaluates it on `validation`;
/// `progress` is called with the rows of each pass as they go.
pub fn train(
    transformer: &Transformer,
    train: &[RowSource],
    validation: &[RowSource],
    config: FtrlConfig,
    bayes: Option<&BayesReference>,
    progress: &dyn Fn(u64),
) -> Result<Fitted, TrainError> {
    let space = transformer.spec().id_space as usize;
    let mut ftrl = Ftrl {
        config,
        z: vec![0.0; space],
        n: vec![0.0; space],
        bias_z: 0.0,
        bias_n: 0.0,
    };
    let mut skipped = (0u64, Vec::new());
    let (mut train_loss, mut pairs, mut rows, mut clicks) =
        (LogLoss::default(), Vec::new(), 0u64, 0u64);
    for pass in 0..config.passes.max(1) {
        let last = pass + 1 == config.passes.max(1);
        (train_loss, rows, clicks) = (LogLoss::default(), 0, 0);
        pairs.clear();
        let mut since_progress = 0u64;
        for_each_row(train, transformer, &mut skipped, |_, ids, clicked| {
            let p = ftrl.learn(ids, clicked);
            train_loss.add(p, clicked);
            rows += 1;
            clicks += u64::from(clicked);
            if last {
                pairs.push((p as f32, clicked));
            }
            since_progress += 1;
            if since_progress == 65_536 {
                progress(since_progress);
                since_progress = 0;
            }
        })?;
        progress(since_progress);
    }
    if rows == 0 {
        return Err(TrainError::NoRows);
    }
    let click_rate = clicks as f64 / rows as f64;
    let weights: Vec<f32> = (0..space)
        .map(|i| ftrl.weight(ftrl.z[i], ftrl.n[i], config.l1, config.l2) as f32)
        .collect();
    let bias = ftrl.bias() as f32;

    // Validation scores with the f32 weights the ONNX file holds, as serving will.
    let (mut loss, mut base, mut best) =
        (LogLoss::default(), LogLoss::default(), LogLoss::default());
    let mut validation_pairs = Vec::new();
    let mut bayes_ids = bayes.map(|b| vec![0i64; b.transformer.fields()]);
    for_each_row(
        validation,
        transformer,
        &mut skipped,
        |line, ids, clicked| {
            let logit = f64::from(bias)
                + ids
                    .iter()
                    .map(|&i| f64::from(weights[i as usize]))
                    .sum::<f64>();
            let p = sigmoid(logit);
            loss.add(p, clicked);
            base.add(click_rate, clicked);
            validation_pairs.push((p as f32, clicked));
            if let (Some(reference), Some(ids)) = (bayes, bayes_ids.as_mut())
                && reference.transformer.transform(line, ids).is_ok()
            {
                best.add(reference.model.probability(ids), clicked);
            }
        },
    )?;
    let report = TrainReport {
        train_rows: rows,
        validation_rows: loss.rows(),
        malformed_rows: skipped.0,
        malformed_examples: skipped.1,
        train_log_loss: train_loss.mean().expect("rows > 0"),
        train_auc: auc(&mut pairs),
        validation_log_loss: loss.mean(),
        validation_auc: auc(&mut validation_pairs),
        base_rate_entropy: base.mean().unwrap_or_else(|| entropy(click_rate)),
        bayes_log_loss: best.mean(),
        click_rate,
    };
    Ok(Fitted {
        weights,
        bias,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{RowGenerator, calibrated_model};
    use crate::spec::FeatureSpec;
    use std::sync::Arc;

    fn rows(transformer: &Transformer, model: &TrueModel, seed: u64, n: usize) -> RowSource {
        let mut generator = RowGenerator::new(seed, transformer, model);
        let mut bytes = Vec::new();
        for _ in 0..n {
            generator.row(&mut bytes);
        }
        RowSource::Memory(format!("generated-{seed}"), Arc::new(bytes))
    }

    #[test]
    fn ftrl_learns_the_generators_model_and_beats_the_base_rate() {
        let transformer = Transformer::new(FeatureSpec::criteo_default()).unwrap();
        let model = calibrated_model(5, &transformer);
        let train_rows = rows(&transformer, &model, 1, 60_000);
        let validation = rows(&transformer, &model, 2, 20_000);
        let reference = BayesReference {
            transformer: Transformer::new(FeatureSpec::criteo_default()).unwrap(),
            model: model.clone(),
        };
        let fitted = train(
            &transformer,
            &[train_rows],
            &[validation],
            FtrlConfig::default(),
            Some(&reference),
            &|_| {},
        )
        .unwrap();
        let r = &fitted.report;
        assert_eq!((r.train_rows, r.validation_rows), (60_000, 20_000));
        let (loss, base, bayes) = (
            r.validation_log_loss.unwrap(),
            r.base_rate_entropy,
            r.bayes_log_loss.unwrap(),
        );
        assert!(
            bayes < loss && loss < base,
            "bayes {bayes} < model {loss} < base {base}"
        );
        assert!(r.validation_auc.unwrap() > 0.65, "{r:?}");
    }

    #[test]
    fn unlabelled_rows_cannot_train_and_malformed_rows_are_counted() {
        let transformer = Transformer::new(FeatureSpec::criteo_default()).unwrap();
        let model = calibrated_model(5, &transformer);
        let RowSource::Memory(_, good) = rows(&transformer, &model, 1, 10) else {
            unreachable!()
        };
        let mut bytes = b"garbage\n".to_vec();
        bytes.extend_from_slice(&good);
        let source = RowSource::Memory("mixed".into(), Arc::new(bytes));
        let config = FtrlConfig {
            passes: 1,
            ..FtrlConfig::default()
        };
        let fitted = train(&transformer, &[source], &[], config, None, &|_| {}).unwrap();
        assert_eq!(fitted.report.malformed_rows, 1);
        assert!(fitted.report.malformed_examples[0].starts_with("mixed:1: expected 39"));

        let unlabelled: Vec<u8> = good[2..].to_vec();
        let source = RowSource::Memory("nolabel".into(), Arc::new(unlabelled));
        let Err(e) = train(&transformer, &[source], &[], config, None, &|_| {}) else {
            panic!("unlabelled rows must not train")
        };
        assert!(
            e.to_string().contains("nolabel:1: the row has no label"),
            "{e}"
        );
    }
}

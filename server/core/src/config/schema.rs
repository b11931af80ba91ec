//! The `config.toml` schema: the types it reads into, their defaults, and the rules a config
//! must follow before a model loads. The file's layout is shown in the [parent module](super).

use super::duration::{duration_text, format_duration};
use crate::dtype::DataType;
use crate::placement::EngineChoice;
use crate::tensor::element_count;
use crate::version_policy::VersionPolicy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A config that cannot be used; names the offending field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Path of the field, like `inputs[0].dims`.
    pub field: String,
    /// What is wrong with it and what would be right.
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One input or output of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    /// Tensor name, as in the ONNX graph.
    pub name: String,
    /// Element type.
    pub dtype: DataType,
    /// Dimensions; `-1` is variable (the first is the batch dimension when the model batches).
    pub dims: Vec<i64>,
    /// Inputs only: what else the server accepts for this input and turns into the tensor above
    /// before batching (encoded images, for example), so clients need not repeat the training
    /// pipeline's preprocessing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<Preprocess>,
}

/// A server-side transform from what a client sends to what the model takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preprocess {
    /// Encoded JPEG or PNG (one BYTES element per row), prepared as the TensorFlow CIFAR-10
    /// tutorial evaluates: 32x32, central crop to the input's height and width, per-image
    /// standardisation.
    Cifar10Image,
    /// Encoded JPEG or PNG, prepared as Inception v3 evaluates: central crop of 87.5 %, bilinear
    /// resize to the input's height and width, scale to [-1, 1].
    InceptionImage,
    /// Raw Criteo TSV lines (one BYTES element per row, with or without the label column),
    /// turned into the INT64 `[-1, F]` feature ids by the version's `features.toml`: the same
    /// transform the model was trained with.
    CriteoRows,
}

impl Preprocess {
    /// The name used in config files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Preprocess::Cifar10Image => "cifar10_image",
            Preprocess::InceptionImage => "inception_image",
            Preprocess::CriteoRows => "criteo_rows",
        }
    }

    /// Whether the client sends encoded images.
    pub fn is_image(self) -> bool {
        matches!(self, Preprocess::Cifar10Image | Preprocess::InceptionImage)
    }
}

impl TensorSpec {
    /// Dims as `[-1, 24, 24, 3]`.
    pub fn dims_display(&self) -> String {
        format!("{:?}", self.dims)
    }

    /// Elements per batch row when every non-batch dimension is fixed.
    pub fn row_elements(&self) -> Option<usize> {
        let rest = self.dims.get(1..)?;
        if rest.iter().any(|&d| d < 0) {
            return None;
        }
        Some(element_count(
            &rest.iter().map(|&d| d as usize).collect::<Vec<_>>(),
        ))
    }
}

/// The names of `specs`, comma separated, for messages that list what a model expects.
pub fn spec_names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The longest `idle_spin` a config may ask for.
const MAX_IDLE_SPIN: Duration = Duration::from_millis(10);

fn default_max_queue_size() -> usize {
    1024
}

/// `idle_spin` when a config does not say.
pub const DEFAULT_IDLE_SPIN: Duration = Duration::from_micros(300);

fn default_idle_spin() -> Duration {
    DEFAULT_IDLE_SPIN
}

fn is_default_idle_spin(d: &Duration) -> bool {
    *d == DEFAULT_IDLE_SPIN
}

/// When ONNX Runtime's intra-op threads spin instead of sleeping (`intra_op_spinning`).
///
/// A run is a chain of operators, each split across the threads; a thread that sleeps between
/// two of them must be woken for the next, and on a virtual machine whose idle core halted a
/// wake-up costs tens of microseconds, per operator. Spinning through a run avoids that. Spinning
/// on after the run ends takes a core from the HTTP and gRPC stack (and, on a small machine,
/// the callers) while the next batch gathers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Spinning {
    /// Idle threads sleep at once, even between the operators of one run.
    Off,
    /// Threads spin while a run lasts and stop when it ends (the default).
    #[default]
    InRun,
    /// Threads spin between runs too: the lowest latency when the model has its cores to
    /// itself, at the cost of CPU.
    Always,
}

impl Spinning {
    fn is_default(&self) -> bool {
        *self == Spinning::InRun
    }

    /// The config's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Spinning::Off => "off",
            Spinning::InRun => "in-run",
            Spinning::Always => "always",
        }
    }
}

impl std::fmt::Display for Spinning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Spinning {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Reads `"off"`, `"in-run"` or `"always"`; also `false` and `true` (`"off"` and `"always"`),
/// which is what the setting was before it had three values.
impl<'de> Deserialize<'de> for Spinning {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Words;
        impl serde::de::Visitor<'_> for Words {
            type Value = Spinning;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#""off", "in-run" or "always" (or false / true)"#)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Spinning, E> {
                Ok(if v { Spinning::Always } else { Spinning::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Spinning, E> {
                match v {
                    "off" => Ok(Spinning::Off),
                    "in-run" => Ok(Spinning::InRun),
                    "always" => Ok(Spinning::Always),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
        }
        d.deserialize_any(Words)
    }
}

/// A model's `config.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Model name; must equal the directory name.
    pub name: String,
    /// Largest batch the model accepts; 0 when it has no batch dimension.
    #[serde(default)]
    pub max_batch_size: usize,
    /// Batch sizes the batcher aims for when it may wait (`max_queue_delay` > 0).
    #[serde(default)]
    pub preferred_batch_sizes: Vec<usize>,
    /// How long the oldest queued request may wait for a fuller batch.
    #[serde(default, with = "duration_text")]
    pub max_queue_delay: Duration,
    /// Requests that may wait in the queue before new ones are refused as overloaded.
    #[serde(default = "default_max_queue_size")]
    pub max_queue_size: usize,
    /// Engine instances (worker threads). Default: tract, one per core; ONNX Runtime on the
    /// CPU, one, or as many as fill the cores when `intra_op_threads` is given; on a GPU, one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<usize>,
    /// Threads per instance for engines that use them; default: all cores / instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intra_op_threads: Option<usize>,
    /// ONNX Runtime: when idle intra-op threads spin, waiting for the next piece of work,
    /// instead of sleeping. See [`Spinning`]; default `"in-run"`.
    #[serde(default, skip_serializing_if = "Spinning::is_default")]
    pub intra_op_spinning: Spinning,
    /// After a batch of a single request, how long the idle worker keeps checking for the next
    /// one before it sleeps. A lone caller's next request comes one round trip later, and a
    /// sleeping worker costs it a thread wake-up (on a virtual machine whose idle core halted,
    /// tens of microseconds). Batches of several mean concurrent callers, who need no spin.
    /// The same key governs the lone caller's side: it checks for its answer for the last lone
    /// run's time plus this long (runs over 2 ms excepted), so the answer does not have to wake
    /// the front end's thread either.
    /// Default 300us (about two loopback round trips); `"0us"` turns both off; at most 10ms.
    #[serde(
        default = "default_idle_spin",
        with = "duration_text",
        skip_serializing_if = "is_default_idle_spin"
    )]
    pub idle_spin: Duration,
    /// Engine preference.
    #[serde(default)]
    pub engine: EngineChoice,
    /// Inputs, in the order engines receive them.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in the order engines return them.
    pub outputs: Vec<TensorSpec>,
    /// Which versions to serve (repository loading; default: the newest one).
    #[serde(default, skip_serializing_if = "VersionPolicy::is_default")]
    pub version_policy: VersionPolicy,
    /// TF Serving's version labels: names clients select a version by (`[version_labels]`
    /// `stable = 3`, `canary = 4`), over TF REST (`/labels/{label}`) and TF Serving gRPC
    /// (`model_spec.version_label`). A label of a version that is not loaded answers 404.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version_labels: BTreeMap<String, u64>,
    /// Serve a version only once its directory holds a `_SUCCESS` marker: for writers that
    /// cannot publish by rename (a Spark or Pig job writing in place).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_success_marker: bool,
}

impl ModelConfig {
    /// Parses and validates a `config.toml` text.
    pub fn from_toml(text: &str) -> Result<ModelConfig, ConfigError> {
        let config: ModelConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            let field = match e.span() {
                Some(span) => format!("line {}", text[..span.start].lines().count().max(1)),
                None => "config".to_string(),
            };
            ConfigError::new(field, message)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Serialises to TOML (what `spindle zoo` writes).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a model config always serialises")
    }

    /// Checks the semantic rules that parsing alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_valid_name(&self.name) {
            return Err(ConfigError::new(
                "name",
                format!(
                    "'{}' is not a valid model name (use letters, digits, '_', '-' and '.', not starting with '.')",
                    self.name
                ),
            ));
        }
        if self.inputs.is_empty() {
            return Err(ConfigError::new(
                "inputs",
                "a model needs at least one input",
            ));
        }
        if self.outputs.is_empty() {
            return Err(ConfigError::new(
                "outputs",
                "a model needs at least one output",
            ));
        }
        self.version_policy
            .validate()
            .map_err(|message| ConfigError::new("version_policy", message))?;
        self.validate_labels()?;
        if self.max_queue_size == 0 {
            return Err(ConfigError::new("max_queue_size", "must be at least 1"));
        }
        if self.instance_count == Some(0) {
            return Err(ConfigError::new("instance_count", "must be at least 1"));
        }
        if self.intra_op_threads == Some(0) {
            return Err(ConfigError::new("intra_op_threads", "must be at least 1"));
        }
        if self.idle_spin > MAX_IDLE_SPIN {
            return Err(ConfigError::new(
                "idle_spin",
                format!(
                    "{} is more than the {} allowed: a longer spin only burns a core",
                    format_duration(self.idle_spin),
                    format_duration(MAX_IDLE_SPIN)
                ),
            ));
        }
        for (i, &size) in self.preferred_batch_sizes.iter().enumerate() {
            if size == 0 || size > self.max_batch_size {
                return Err(ConfigError::new(
                    format!("preferred_batch_sizes[{i}]"),
                    format!(
                        "{size} is outside 1..={} (max_batch_size)",
                        self.max_batch_size
                    ),
                ));
            }
        }
        for (list, specs) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            for (i, spec) in specs.iter().enumerate() {
                self.validate_spec(&format!("{list}[{i}]"), spec)?;
                if specs[..i].iter().any(|s| s.name == spec.name) {
                    return Err(ConfigError::new(
                        format!("{list}[{i}].name"),
                        format!("'{}' appears twice", spec.name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Labels are names (not numbers, which would read as versions), and name versions the
    /// version policy can load.
    fn validate_labels(&self) -> Result<(), ConfigError> {
        for (label, &version) in &self.version_labels {
            let field = format!("version_labels.{label}");
            if !is_valid_name(label) || label.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::new(
                    field,
                    format!(
                        "'{label}' is not a valid label (use letters, digits, '_', '-' and '.', not only digits, which read as a version number)"
                    ),
                ));
            }
            if let VersionPolicy::Specific(served) = &self.version_policy
                && !served.contains(&version)
            {
                return Err(ConfigError::new(
                    field,
                    format!(
                        "names version {version}, which version_policy {{ specific = {served:?} }} never loads; label a version it serves"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_spec(&self, field: &str, spec: &TensorSpec) -> Result<(), ConfigError> {
        if let Some(pre) = spec.preprocess {
            if field.starts_with("outputs") {
                return Err(ConfigError::new(
                    format!("{field}.preprocess"),
                    "only inputs can be preprocessed; remove it from this output",
                ));
            }
            let image_like = spec.dtype == DataType::F32
                && spec.dims.len() == 4
                && spec.dims[0] == -1
                && spec.dims[1] > 0
                && spec.dims[2] > 0
                && spec.dims[3] == 3;
            let ids_like = spec.dtype == DataType::I64
                && spec.dims.len() == 2
                && spec.dims[0] == -1
                && spec.dims[1] > 0;
            if pre == Preprocess::CriteoRows && !ids_like {
                return Err(ConfigError::new(
                    format!("{field}.preprocess"),
                    format!(
                        "'criteo_rows' needs an INT64 input of dims [-1, fields], not {} {:?}",
                        spec.dtype, spec.dims
                    ),
                ));
            }
            if pre.is_image() && !image_like {
                return Err(ConfigError::new(
                    format!("{field}.preprocess"),
                    format!(
                        "'{}' needs an FP32 input of dims [-1, height, width, 3], not {} {:?}",
                        pre.name(),
                        spec.dtype,
                        spec.dims
                    ),
                ));
            }
        }
        if spec.name.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.name"),
                "must not be empty",
            ));
        }
        if let Some((j, &d)) = spec
            .dims
            .iter()
            .enumerate()
            .find(|&(_, &d)| d == 0 || d < -1)
        {
            return Err(ConfigError::new(
                format!("{field}.dims[{j}]"),
                format!("{d} is not a dimension (use a positive size, or -1 for variable)"),
            ));
        }
        if self.max_batch_size > 0 && spec.dims.first() != Some(&-1) {
            return Err(ConfigError::new(
                format!("{field}.dims"),
                format!(
                    "{:?} must start with -1, the batch dimension, since max_batch_size is {}",
                    spec.dims, self.max_batch_size
                ),
            ));
        }
        Ok(())
    }

    /// The input spec called `name`.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|s| s.name == name)
    }

    /// The output spec called `name`.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|s| s.name == name)
    }
}

/// Model names become path components and metric labels, so they are kept plain.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CIFAR: &str = r#"
name = "cifar10"
max_batch_size = 64
max_queue_delay = "2ms"

[[inputs]]
name = "images"
dtype = "FP32"
dims = [-1, 24, 24, 3]

[[outputs]]
name = "probabilities"
dtype = "FP32"
dims = [-1, 10]
"#;

    #[test]
    fn parses_and_round_trips() {
        let config = ModelConfig::from_toml(CIFAR).unwrap();
        assert_eq!(config.max_queue_delay, Duration::from_millis(2));
        assert_eq!(config.max_queue_size, 1024);
        assert_eq!(config.inputs[0].row_elements(), Some(24 * 24 * 3));
        assert_eq!(ModelConfig::from_toml(&config.to_toml()).unwrap(), config);
    }

    #[test]
    fn errors_name_the_field() {
        let bad_dtype = CIFAR.replace("\"FP32\"\ndims = [-1, 24", "\"FLOAT\"\ndims = [-1, 24");
        let err = ModelConfig::from_toml(&bad_dtype).unwrap_err();
        assert!(err.message.contains("FLOAT"), "{err}");
        assert!(err.field.starts_with("line "), "{err}");

        let no_batch_dim = CIFAR.replace("[-1, 10]", "[10]");
        let err = ModelConfig::from_toml(&no_batch_dim).unwrap_err();
        assert_eq!(err.field, "outputs[0].dims");

        let typo = CIFAR.replace("max_batch_size", "max_batch");
        let err = ModelConfig::from_toml(&typo).unwrap_err();
        assert!(err.message.contains("max_batch"), "{err}");

        let bad_delay = CIFAR.replace("2ms", "soon");
        let err = ModelConfig::from_toml(&bad_delay).unwrap_err();
        assert!(err.message.contains("500us"), "{err}");

        let bad_pref = CIFAR.replace(
            "max_queue_delay",
            "preferred_batch_sizes = [128]\nmax_queue_delay",
        );
        let err = ModelConfig::from_toml(&bad_pref).unwrap_err();
        assert_eq!(err.field, "preferred_batch_sizes[0]");

        let long_spin = CIFAR.replace("max_queue_delay", "idle_spin = \"1s\"\nmax_queue_delay");
        let err = ModelConfig::from_toml(&long_spin).unwrap_err();
        assert_eq!(err.field, "idle_spin");
        assert!(err.message.contains("10ms"), "{err}");
    }

    #[test]
    fn idle_spin_reads_as_a_duration_and_is_left_out_at_its_default() {
        let config = ModelConfig::from_toml(CIFAR).unwrap();
        assert_eq!(config.idle_spin, DEFAULT_IDLE_SPIN);
        assert!(!config.to_toml().contains("idle_spin"));
        for (text, want) in [
            ("200us", Duration::from_micros(200)),
            ("0us", Duration::ZERO),
        ] {
            let spin = CIFAR.replace(
                "max_queue_delay",
                &format!("idle_spin = \"{text}\"\nmax_queue_delay"),
            );
            let config = ModelConfig::from_toml(&spin).unwrap();
            assert_eq!(config.idle_spin, want);
            assert!(
                config.to_toml().contains("idle_spin"),
                "{text} must be written"
            );
            assert_eq!(ModelConfig::from_toml(&config.to_toml()).unwrap(), config);
        }
    }

    #[test]
    fn intra_op_spinning_reads_words_and_the_old_booleans() {
        let config = ModelConfig::from_toml(CIFAR).unwrap();
        assert_eq!(config.intra_op_spinning, Spinning::InRun);
        assert!(!config.to_toml().contains("intra_op_spinning"));
        for (value, want) in [
            ("\"off\"", Spinning::Off),
            ("\"in-run\"", Spinning::InRun),
            ("\"always\"", Spinning::Always),
            ("false", Spinning::Off),
            ("true", Spinning::Always),
        ] {
            let text = CIFAR.replace(
                "max_queue_delay",
                &format!("intra_op_spinning = {value}\nmax_queue_delay"),
            );
            let config = ModelConfig::from_toml(&text).unwrap();
            assert_eq!(config.intra_op_spinning, want, "{value}");
            assert_eq!(ModelConfig::from_toml(&config.to_toml()).unwrap(), config);
        }
        for bad in ["\"sometimes\"", "1"] {
            let text = CIFAR.replace(
                "max_queue_delay",
                &format!("intra_op_spinning = {bad}\nmax_queue_delay"),
            );
            let err = ModelConfig::from_toml(&text).unwrap_err();
            assert!(err.message.contains("\"in-run\""), "{bad}: {err}");
            assert!(err.field.starts_with("line "), "{bad}: {err}");
        }
    }

    #[test]
    fn image_preprocessing_needs_an_image_shaped_input() {
        let with = CIFAR.replace(
            "dims = [-1, 24, 24, 3]",
            "dims = [-1, 24, 24, 3]\npreprocess = \"cifar10_image\"",
        );
        let config = ModelConfig::from_toml(&with).unwrap();
        assert_eq!(config.inputs[0].preprocess, Some(Preprocess::Cifar10Image));
        assert_eq!(ModelConfig::from_toml(&config.to_toml()).unwrap(), config);

        let flat = with.replace("[-1, 24, 24, 3]", "[-1, 1728]");
        let err = ModelConfig::from_toml(&flat).unwrap_err();
        assert_eq!(err.field, "inputs[0].preprocess");
        assert!(err.message.contains("[-1, height, width, 3]"), "{err}");

        let on_output = CIFAR.replace(
            "dims = [-1, 10]",
            "dims = [-1, 10]\npreprocess = \"inception_image\"",
        );
        let err = ModelConfig::from_toml(&on_output).unwrap_err();
        assert_eq!(err.field, "outputs[0].preprocess");

        let unknown = CIFAR.replace(
            "dims = [-1, 24, 24, 3]",
            "dims = [-1, 24, 24, 3]\npreprocess = \"resnet\"",
        );
        let err = ModelConfig::from_toml(&unknown).unwrap_err();
        assert!(err.message.contains("cifar10_image"), "{err}");
    }

    #[test]
    fn version_labels_parse_round_trip_and_are_checked() {
        let labelled = format!("{CIFAR}\n[version_labels]\nstable = 3\ncanary = 4\n");
        let config = ModelConfig::from_toml(&labelled).unwrap();
        assert_eq!(config.version_labels["stable"], 3);
        assert_eq!(config.version_labels["canary"], 4);
        assert_eq!(ModelConfig::from_toml(&config.to_toml()).unwrap(), config);
        assert!(
            !ModelConfig::from_toml(CIFAR)
                .unwrap()
                .to_toml()
                .contains("version_labels")
        );

        for bad in ["\"7\" = 3", "\"a b\" = 3"] {
            let text = format!("{CIFAR}\n[version_labels]\n{bad}\n");
            let err = ModelConfig::from_toml(&text).unwrap_err();
            assert!(err.field.starts_with("version_labels."), "{err}");
            assert!(err.message.contains("not a valid label"), "{err}");
        }
        let specific = format!(
            "version_policy = {{ specific = [1, 3] }}\n{CIFAR}\n[version_labels]\ncanary = 4\n"
        );
        let err = ModelConfig::from_toml(&specific).unwrap_err();
        assert_eq!(err.field, "version_labels.canary");
        assert!(
            err.message.contains("names version 4") && err.message.contains("[1, 3]"),
            "{err}"
        );
    }

    #[test]
    fn names_are_plain() {
        assert!(is_valid_name("inception_v3"));
        assert!(!is_valid_name("../x"));
        assert!(!is_valid_name(".hidden"));
        assert!(!is_valid_name("a/b"));
    }
}

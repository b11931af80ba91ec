//! Where batches of images are classified. In-process ([`LocalImages`]) the worker threads
//! prepare each image with the serving library's own preprocessing and the engine gets FP32
//! batches; through servers ([`RemoteImages`]) the encoded images are sent as they are and the
//! server runs that same preprocessing. Either way the job sees probabilities `[n, classes]`.

use crate::backend::{block_on, fetch_config, first_http, read_model, runtime_handle};
use anyhow::Context;
use spindle_client::{Client, ClientError, ClientSecurity, InferRequest};
use spindle_core::config::{Preprocess, TensorSpec};
use spindle_core::engine::{Device, EngineChoice, Runner};
use spindle_core::{Tensor, TensorData};
use spindle_server::engines::Engines;
use spindle_server::preprocess::{DEFAULT_MAX_IMAGE_PIXELS, prepare_inputs};
use std::sync::Arc;

/// Classifies batches. One per engine thread; `&mut self`, so it may own a session or a
/// connection without locks.
pub trait Classifier: Send {
    /// Probabilities of a batch, row after row (`[n, classes]` flattened). `input` is what
    /// [`ImageModel::prepare`] made of `n` encoded images.
    fn classify(&mut self, input: Tensor) -> Result<Vec<f32>, ClassifyError>;
}

/// Why a batch was not classified.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// The server refused the batch's contents (HTTP 400): one of its images is bad. The job
    /// sends the images one by one to find which.
    #[error("{0}")]
    Refused(String),
    /// Anything else: the shard fails.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// The model being scored, wherever it runs.
pub trait ImageModel: Sync {
    /// Classes per image.
    fn classes(&self) -> usize;
    /// Class names (`labels.txt`), when the model has them.
    fn labels(&self) -> Option<&[String]>;
    /// The most images one call may carry (the model's `max_batch_size`; 0: no limit).
    fn max_batch(&self) -> usize;
    /// Turns encoded images into what [`Classifier::classify`] takes. Runs on the job's
    /// preparing threads; an error names the one image that failed.
    fn prepare(&self, encoded: Vec<Vec<u8>>) -> Result<Tensor, String>;
    /// Prepares one image alone: `Err` says why it cannot be scored.
    fn check_one(&self, encoded: &[u8]) -> Result<(), String>;
    /// `n` independent classifiers.
    fn classifiers(&self, n: usize) -> anyhow::Result<Vec<Box<dyn Classifier>>>;
    /// For the summary, like `local ort cifar10 v1`.
    fn describe(&self) -> String;
}

fn bytes_tensor(encoded: Vec<Vec<u8>>) -> Tensor {
    Tensor::new(vec![encoded.len()], TensorData::Bytes(encoded)).expect("one element per row")
}

/// Checks the model takes images through a preprocessing step and returns its input spec and
/// class count.
fn image_signature(config: &spindle_core::ModelConfig) -> anyhow::Result<(TensorSpec, usize)> {
    let input = config.inputs.first().context("the model has no input")?;
    if !matches!(
        input.preprocess,
        Some(Preprocess::Cifar10Image | Preprocess::InceptionImage)
    ) {
        anyhow::bail!(
            "model {}: input '{}' has no image preprocessing (preprocess = cifar10_image or inception_image in config.toml), so it cannot score images",
            config.name,
            input.name
        );
    }
    let output = config.outputs.first().context("the model has no output")?;
    let classes = output
        .dims
        .last()
        .copied()
        .filter(|&c| c > 0)
        .with_context(|| {
            format!(
                "model {}: output '{}' has no fixed class dimension ({:?})",
                config.name, output.name, output.dims
            )
        })?;
    Ok((input.clone(), classes as usize))
}

fn parse_labels(text: Option<&str>) -> Option<Vec<String>> {
    text.map(|t| t.lines().map(str::to_string).collect())
}

/// In-process: the model's newest version on an engine of this process.
pub struct LocalImages {
    config: spindle_core::ModelConfig,
    input: TensorSpec,
    classes: usize,
    labels: Option<Vec<String>>,
    onnx: Vec<u8>,
    engines: Engines,
    version: u64,
    intra_op_threads: usize,
}

impl LocalImages {
    /// Loads `model`'s newest complete version from `repo` (a directory or `hdfs://` URL).
    /// Each classifier runs with `intra_op_threads` threads inside one run.
    pub fn open(
        repo: &str,
        model: &str,
        engine: EngineChoice,
        intra_op_threads: usize,
    ) -> anyhow::Result<LocalImages> {
        let (_, read) = block_on(read_model(repo, model))?;
        let (input, classes) = image_signature(&read.config)?;
        Ok(LocalImages {
            input,
            classes,
            labels: parse_labels(read.labels.as_deref()),
            onnx: read.onnx,
            config: read.config,
            engines: Engines::new(engine, Device::Cpu),
            version: read.version,
            intra_op_threads: intra_op_threads.max(1),
        })
    }
}

impl ImageModel for LocalImages {
    fn classes(&self) -> usize {
        self.classes
    }

    fn labels(&self) -> Option<&[String]> {
        self.labels.as_deref()
    }

    fn max_batch(&self) -> usize {
        self.config.max_batch_size
    }

    fn prepare(&self, encoded: Vec<Vec<u8>>) -> Result<Tensor, String> {
        // The serving library's own preprocessing, the code an image sent to a server goes
        // through, with the server's default pixel cap.
        let mut inputs = [bytes_tensor(encoded)];
        prepare_inputs(
            std::slice::from_ref(&self.input),
            &mut inputs,
            DEFAULT_MAX_IMAGE_PIXELS,
            None,
        )
        .map_err(|e| e.message)?;
        let [tensor] = inputs;
        Ok(tensor)
    }

    fn check_one(&self, encoded: &[u8]) -> Result<(), String> {
        self.prepare(vec![encoded.to_vec()]).map(drop)
    }

    fn classifiers(&self, n: usize) -> anyhow::Result<Vec<Box<dyn Classifier>>> {
        let engine = self.engines.for_model(&self.config)?;
        let mut options = self.engines.load_options(engine.as_ref(), &self.config);
        options.instances = n;
        options.intra_op_threads = self.intra_op_threads;
        let runners = engine.load(&self.onnx, &self.config, &options)?;
        let classes = self.classes;
        Ok(runners
            .into_iter()
            .map(|runner| Box::new(LocalClassifier { runner, classes }) as Box<dyn Classifier>)
            .collect())
    }

    fn describe(&self) -> String {
        let engine = self
            .engines
            .for_model(&self.config)
            .map_or("?", |e| e.name());
        format!("local {engine} {} v{}", self.config.name, self.version)
    }
}

struct LocalClassifier {
    runner: Box<dyn Runner>,
    classes: usize,
}

impl Classifier for LocalClassifier {
    fn classify(&mut self, input: Tensor) -> Result<Vec<f32>, ClassifyError> {
        let rows = input.shape[0];
        let mut outputs = self.runner.run(vec![input]).map_err(anyhow::Error::from)?;
        let output = outputs
            .drain(..)
            .next()
            .context("the model returned no output")?;
        probabilities(output.data, rows, self.classes)
    }
}

fn probabilities(data: TensorData, rows: usize, classes: usize) -> Result<Vec<f32>, ClassifyError> {
    match data {
        TensorData::F32(p) if p.len() == rows * classes => Ok(p),
        other => Err(anyhow::anyhow!(
            "the model returned {} {} values for {rows} images; expected FP32 [{rows}, {classes}]",
            other.len(),
            other.dtype()
        )
        .into()),
    }
}

/// Through servers: encoded images go out as BYTES, spread over the servers with the client
/// library's retries and backoff on 429, 503 and connection errors.
pub struct RemoteImages {
    client: Client,
    model: String,
    input: String,
    output: String,
    classes: usize,
    max_batch: usize,
    labels: Option<Vec<String>>,
    handle: tokio::runtime::Handle,
    _runtime: Option<Arc<tokio::runtime::Runtime>>,
}

impl RemoteImages {
    /// Connects to `urls`, reads `model`'s signature, its `max_batch_size` (over HTTP; through
    /// gRPC alone, `max_batch` must say it), and learns its class names.
    ///
    /// Servers give class names only through the classification extension, so one probe
    /// request (a 1x1 PNG, asking for every class) is sent: its answer names each class, or
    /// none when the model has no `labels.txt`.
    pub fn open(
        urls: &[String],
        model: &str,
        max_batch: usize,
        security: ClientSecurity,
    ) -> anyhow::Result<RemoteImages> {
        let (handle, runtime) = runtime_handle()?;
        let client = Client::builder(urls.iter().cloned())
            .security(security)
            .build()?;
        let metadata = handle.block_on(client.model_metadata(model))?;
        let max_batch = match first_http(urls) {
            Some(_) => {
                let config = handle.block_on(fetch_config(&client, model))?;
                let served = config["max_batch_size"].as_u64().unwrap_or(0) as usize;
                match (served, max_batch) {
                    (0, given) => given,
                    (served, 0) => served,
                    (served, given) => served.min(given),
                }
            }
            None => max_batch,
        };
        let input = metadata
            .inputs
            .first()
            .context("the model lists no inputs")?;
        let output = metadata
            .outputs
            .first()
            .context("the model lists no outputs")?;
        let classes = output
            .shape
            .last()
            .copied()
            .filter(|&c| c > 0)
            .with_context(|| {
                format!(
                    "model {model}: output '{}' has no fixed class dimension ({:?})",
                    output.name, output.shape
                )
            })? as usize;
        let probe = crate::images::cifar::to_png(&[128; crate::images::cifar::PIXELS]);
        let request = InferRequest::new(model)
            .input(&input.name, bytes_tensor(vec![probe]))
            .output(&output.name, Some(classes));
        let answer = handle.block_on(client.infer(&request)).with_context(|| {
            format!("model {model} does not take encoded images (a probe PNG was refused)")
        })?;
        let labels = match answer.output(&output.name).map(|t| &t.data) {
            Some(TensorData::Bytes(strings)) => class_names(strings, classes),
            _ => None,
        };
        Ok(RemoteImages {
            model: model.to_string(),
            input: input.name.clone(),
            output: output.name.clone(),
            classes,
            max_batch,
            labels,
            client,
            handle,
            _runtime: runtime,
        })
    }
}

/// Class names from classification strings `score:index[:name]`, when every class has one.
fn class_names(strings: &[Vec<u8>], classes: usize) -> Option<Vec<String>> {
    let mut names = vec![None; classes];
    for s in strings {
        let s = String::from_utf8_lossy(s);
        let mut parts = s.splitn(3, ':');
        let (_, index, name) = (parts.next(), parts.next()?, parts.next()?);
        *names.get_mut(index.parse::<usize>().ok()?)? = Some(name.to_string());
    }
    names.into_iter().collect()
}

impl ImageModel for RemoteImages {
    fn classes(&self) -> usize {
        self.classes
    }

    fn labels(&self) -> Option<&[String]> {
        self.labels.as_deref()
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn prepare(&self, encoded: Vec<Vec<u8>>) -> Result<Tensor, String> {
        Ok(bytes_tensor(encoded))
    }

    fn check_one(&self, encoded: &[u8]) -> Result<(), String> {
        let request = InferRequest::new(&self.model)
            .input(&self.input, bytes_tensor(vec![encoded.to_vec()]))
            .output(&self.output, Some(1));
        match self.handle.block_on(self.client.infer(&request)) {
            Err(ClientError::Server {
                status: 400,
                message,
                ..
            }) => Err(message),
            _ => Ok(()),
        }
    }

    fn classifiers(&self, n: usize) -> anyhow::Result<Vec<Box<dyn Classifier>>> {
        Ok((0..n)
            .map(|_| {
                Box::new(RemoteClassifier {
                    client: self.client.clone(),
                    model: self.model.clone(),
                    input: self.input.clone(),
                    output: self.output.clone(),
                    classes: self.classes,
                    handle: self.handle.clone(),
                }) as Box<dyn Classifier>
            })
            .collect())
    }

    fn describe(&self) -> String {
        format!(
            "remote {} on {}",
            self.model,
            self.client.endpoints().join(", ")
        )
    }
}

struct RemoteClassifier {
    client: Client,
    model: String,
    input: String,
    output: String,
    classes: usize,
    handle: tokio::runtime::Handle,
}

impl Classifier for RemoteClassifier {
    fn classify(&mut self, input: Tensor) -> Result<Vec<f32>, ClassifyError> {
        let rows = input.shape[0];
        let request = InferRequest::new(&self.model)
            .input(&self.input, input)
            .output(&self.output, None);
        let answer = match self.handle.block_on(self.client.infer(&request)) {
            Ok(answer) => answer,
            Err(ClientError::Server {
                status: 400,
                message,
                ..
            }) => {
                return Err(ClassifyError::Refused(message));
            }
            Err(e) => return Err(anyhow::Error::from(e).into()),
        };
        let output = answer
            .outputs
            .into_iter()
            .find(|o| o.name == self.output)
            .with_context(|| format!("the server's answer has no '{}'", self.output))?;
        probabilities(output.tensor.data, rows, self.classes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_need_every_class() {
        let strings = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(
            class_names(&strings(&["0.600000:1:dog", "0.400000:0:cat: tabby"]), 2),
            Some(vec!["cat: tabby".to_string(), "dog".to_string()])
        );
        assert_eq!(class_names(&strings(&["0.6:1", "0.4:0"]), 2), None);
        assert_eq!(class_names(&strings(&["0.6:1:dog"]), 2), None);
    }
}

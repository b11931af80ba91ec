//! Where batches are scored. The scorer only needs "ids in, probabilities out", so local
//! (in-process engine) and remote (servers over the client library) modes are two
//! implementations of [`ScoreBackend`], and the job does not know which it has.

use anyhow::Context;
use spindle_core::engine::{Device, EngineChoice, Runner};
use spindle_core::{Tensor, TensorData};
use spindle_criteo::spec::FeatureSpec;
use spindle_loader::{FEATURES_FILE, HDFS_RETRY, MODEL_FILE, ModelRepository};
use spindle_server::engines::Engines;
use std::sync::Arc;

/// Scores batches of ids. One per worker thread; `&mut self`, so a backend may own a session
/// or a connection without locks.
pub trait ScoreBackend: Send {
    /// Click probabilities of `ids` (INT64 `[rows, F]`), one per row, in order.
    fn score(&mut self, ids: Tensor) -> anyhow::Result<Vec<f32>>;
}

/// Creates the backends of a job: the model's feature spec (so rows are transformed exactly as
/// the model was trained) and one backend per worker.
pub trait BackendFactory {
    /// The feature spec of the model being scored.
    fn spec(&self) -> &FeatureSpec;
    /// `workers` independent backends.
    fn backends(&self, workers: usize) -> anyhow::Result<Vec<Box<dyn ScoreBackend>>>;
    /// A description for the summary, like `local ort criteo_ctr v3`.
    fn describe(&self) -> String;
}

/// Local mode: the model's newest version in a repository, on an in-process engine.
pub struct LocalFactory {
    spec: FeatureSpec,
    onnx: Vec<u8>,
    config: spindle_core::ModelConfig,
    engines: Engines,
    version: u64,
}

impl LocalFactory {
    /// Loads `model`'s newest complete version and its `features.toml` from `repo` (a
    /// directory or `hdfs://` URL).
    pub fn open(repo: &str, model: &str, engine: EngineChoice) -> anyhow::Result<LocalFactory> {
        let (config, version, onnx, text, features) = block_on(read_version(repo, model))?;
        let spec = FeatureSpec::from_toml(&text).with_context(|| format!("in {features}"))?;
        let input = config.inputs.first().context("the model has no input")?;
        if input.dims.get(1) != Some(&(spec.fields() as i64)) {
            anyhow::bail!(
                "{model} version {version}: the model takes {:?} ids per row but its features.toml makes {}; the two must come from the same training run",
                input.dims,
                spec.fields()
            );
        }
        Ok(LocalFactory {
            spec,
            onnx,
            config,
            engines: Engines::new(engine, Device::Cpu),
            version,
        })
    }
}

/// Runs a future to completion from synchronous code: on the current runtime when called from
/// one of its blocking threads, else on a small runtime of its own.
pub(crate) fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(future),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime starts")
            .block_on(future),
    }
}

/// A runtime handle plain threads can block on: the caller's runtime, or, when the caller has
/// none (tests, plain threads), a one-thread runtime kept alive by the returned `Arc`.
pub(crate) fn runtime_handle()
-> anyhow::Result<(tokio::runtime::Handle, Option<Arc<tokio::runtime::Runtime>>)> {
    Ok(match tokio::runtime::Handle::try_current() {
        Ok(handle) => (handle, None),
        Err(_) => {
            let runtime = Arc::new(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?,
            );
            (runtime.handle().clone(), Some(runtime))
        }
    })
}

/// A model version read from a repository: what an in-process engine needs.
pub(crate) struct ModelVersion {
    pub(crate) config: spindle_core::ModelConfig,
    pub(crate) version: u64,
    pub(crate) onnx: Vec<u8>,
    /// `labels.txt`, one class name a line, when the model has one.
    pub(crate) labels: Option<String>,
}

/// The newest complete version of `model` in `repo`, with its repository open.
pub(crate) async fn read_model(
    repo: &str,
    model: &str,
) -> anyhow::Result<(ModelRepository, ModelVersion)> {
    let repository = ModelRepository::open(repo, HDFS_RETRY).await?;
    let entry = repository.model(model).await?;
    let version = entry
        .complete_versions()
        .last()
        .map(|v| v.version)
        .with_context(|| format!("model {model} in {repo} has no complete version"))?;
    let labels = entry.labels_text.clone();
    let config = entry.config.map_err(anyhow::Error::from)?;
    let storage = repository.storage();
    let model_rel = format!("{model}/{version}/{MODEL_FILE}");
    let onnx = storage
        .read(&model_rel)
        .await?
        .with_context(|| format!("{} vanished", storage.display(&model_rel)))?;
    Ok((
        repository,
        ModelVersion {
            config,
            version,
            onnx,
            labels,
        },
    ))
}

/// Config, version, model bytes, `features.toml` text and its display path.
async fn read_version(
    repo: &str,
    model: &str,
) -> anyhow::Result<(spindle_core::ModelConfig, u64, Vec<u8>, String, String)> {
    let (repository, read) = read_model(repo, model).await?;
    let version = read.version;
    let features_rel = format!("{model}/{version}/{FEATURES_FILE}");
    let shown = repository.storage().display(&features_rel);
    let text = repository.read_text(&features_rel).await?.with_context(|| {
        format!(
            "{shown} is missing (scoring raw rows needs the feature spec the model was trained with; `spindle train criteo` writes it)"
        )
    })?;
    Ok((read.config, version, read.onnx, text, shown))
}

impl BackendFactory for LocalFactory {
    fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    fn backends(&self, workers: usize) -> anyhow::Result<Vec<Box<dyn ScoreBackend>>> {
        let engine = self.engines.for_model(&self.config)?;
        let mut options = self.engines.load_options(engine.as_ref(), &self.config);
        // Parallelism comes from one worker per core, each with a single-threaded runner.
        options.instances = workers;
        options.intra_op_threads = 1;
        let runners = engine.load(&self.onnx, &self.config, &options)?;
        Ok(runners
            .into_iter()
            .map(|runner| Box::new(LocalBackend { runner }) as Box<dyn ScoreBackend>)
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

/// One in-process runner.
pub struct LocalBackend {
    runner: Box<dyn Runner>,
}

impl ScoreBackend for LocalBackend {
    fn score(&mut self, ids: Tensor) -> anyhow::Result<Vec<f32>> {
        let rows = ids.shape[0];
        let mut outputs = self.runner.run(vec![ids])?;
        let output = outputs.pop().context("the model returned no output")?;
        match output.data {
            TensorData::F32(p) if p.len() == rows => Ok(p),
            other => anyhow::bail!(
                "the model returned {} {} values for {rows} rows; expected FP32 [rows, 1]",
                other.len(),
                other.dtype()
            ),
        }
    }
}

/// Remote mode: batches of ids go to one or more servers through the client library, spread
/// round-robin, one request in flight per worker (so `--jobs` bounds what is in flight), with
/// the client's retries and backoff on 429, 503 and connection errors. The feature spec comes
/// from the server's own model config (`features.toml` parameter), so rows are transformed
/// exactly as the server would transform them.
pub struct RemoteFactory {
    spec: FeatureSpec,
    client: spindle_client::Client,
    model: String,
    input: String,
    output: String,
    handle: tokio::runtime::Handle,
    // Keeps a runtime alive when the caller had none (tests, plain threads).
    _runtime: Option<Arc<tokio::runtime::Runtime>>,
}

impl RemoteFactory {
    /// Connects to `urls` and reads `model`'s signature and feature spec from the first that
    /// answers.
    pub fn open(urls: &[String], model: &str) -> anyhow::Result<RemoteFactory> {
        let (handle, runtime) = runtime_handle()?;
        let client = spindle_client::Client::builder(urls.iter().cloned()).build()?;
        let http = first_http(urls).with_context(|| {
            "remote scoring reads the model's feature spec over HTTP: give at least one http:// server URL"
        })?;
        let model_name = model.to_string();
        let (metadata, text) = handle.block_on(async {
            let metadata = client.model_metadata(&model_name).await?;
            let text = fetch_features(&http, &model_name).await?;
            anyhow::Ok((metadata, text))
        })?;
        let spec = FeatureSpec::from_toml(&text)
            .with_context(|| format!("the features.toml served by {http} for {model}"))?;
        let input = metadata
            .inputs
            .first()
            .context("the model lists no inputs")?;
        if input.shape.get(1) != Some(&(spec.fields() as i64)) {
            anyhow::bail!(
                "{http}: model {model} takes {:?} ids per row but its features.toml makes {}",
                input.shape,
                spec.fields()
            );
        }
        Ok(RemoteFactory {
            spec,
            model: model.to_string(),
            input: input.name.clone(),
            output: metadata
                .outputs
                .first()
                .context("the model lists no outputs")?
                .name
                .clone(),
            client,
            handle,
            _runtime: runtime,
        })
    }
}

/// `GET /v2/models/{m}/config`: the served model's configuration as JSON.
pub(crate) async fn fetch_config(base: &str, model: &str) -> anyhow::Result<serde_json::Value> {
    use http_body_util::BodyExt;
    let url = format!("{}/v2/models/{model}/config", base.trim_end_matches('/'));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client
        .get(url.parse().with_context(|| format!("{url} is not a URL"))?)
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        anyhow::bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&body));
    }
    serde_json::from_slice(&body).with_context(|| format!("GET {url}: the answer is not JSON"))
}

/// The first `http://` URL of `urls` (a bare `HOST:PORT` counts as one), for the calls the
/// client library does not make (a model's config).
pub(crate) fn first_http(urls: &[String]) -> Option<String> {
    let url = urls.iter().find(|u| !u.starts_with("grpc://"))?;
    Some(if url.contains("://") {
        url.clone()
    } else {
        format!("http://{url}")
    })
}

/// The `features.toml` parameter of a served model's config.
async fn fetch_features(base: &str, model: &str) -> anyhow::Result<String> {
    let config = fetch_config(base, model).await?;
    config["parameters"]["features.toml"]["string_value"]
        .as_str()
        .map(str::to_string)
        .with_context(|| {
            format!("{base}: model {model} has no features.toml parameter: the served model does not take raw Criteo rows")
        })
}

impl BackendFactory for RemoteFactory {
    fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    fn backends(&self, workers: usize) -> anyhow::Result<Vec<Box<dyn ScoreBackend>>> {
        Ok((0..workers)
            .map(|_| {
                Box::new(RemoteBackend {
                    client: self.client.clone(),
                    model: self.model.clone(),
                    input: self.input.clone(),
                    output: self.output.clone(),
                    handle: self.handle.clone(),
                }) as Box<dyn ScoreBackend>
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

/// One worker's view of the servers.
pub struct RemoteBackend {
    client: spindle_client::Client,
    model: String,
    input: String,
    output: String,
    handle: tokio::runtime::Handle,
}

impl ScoreBackend for RemoteBackend {
    fn score(&mut self, ids: Tensor) -> anyhow::Result<Vec<f32>> {
        let rows = ids.shape[0];
        let request = spindle_client::InferRequest::new(&self.model).input(&self.input, ids);
        let answer = self.handle.block_on(self.client.infer(&request))?;
        match answer.output(&self.output).map(|t| &t.data) {
            Some(TensorData::F32(p)) if p.len() == rows => Ok(p.clone()),
            _ => anyhow::bail!(
                "the server's answer has no FP32 '{}' with {rows} values",
                self.output
            ),
        }
    }
}

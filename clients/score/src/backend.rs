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
///
/// Scoring is split into [`ScoreBackend::submit`] and [`Scoring::wait`] so that a backend whose
/// batches travel (servers) can keep several in flight while the worker transforms the next
/// rows; the job keeps at most [`ScoreBackend::depth`] unanswered and waits for them oldest
/// first, so rows are written in their input order.
pub trait ScoreBackend: Send {
    /// Batches worth having in flight at once (1: each is scored before the next is made).
    fn depth(&self) -> usize {
        1
    }

    /// Starts scoring `ids` (INT64 `[rows, F]`); the answer is one click probability per row, in
    /// order.
    fn submit(&mut self, ids: Tensor) -> anyhow::Result<Scoring>;
}

/// One submitted batch's click probabilities, computed already or still on their way. Dropping
/// it unwaited abandons the batch (a request in flight is cancelled), which is what a shard that
/// failed or was stopped wants.
pub struct Scoring(Pending);

enum Pending {
    Done(anyhow::Result<Vec<f32>>),
    InFlight {
        task: tokio::task::JoinHandle<anyhow::Result<Vec<f32>>>,
        handle: tokio::runtime::Handle,
    },
}

impl Scoring {
    /// A batch scored already.
    pub fn done(result: anyhow::Result<Vec<f32>>) -> Scoring {
        Scoring(Pending::Done(result))
    }

    /// Waits for the probabilities (blocking this thread, which must not be a runtime worker).
    pub fn wait(mut self) -> anyhow::Result<Vec<f32>> {
        match std::mem::replace(&mut self.0, Pending::Done(Ok(Vec::new()))) {
            Pending::Done(result) => result,
            Pending::InFlight { task, handle } => handle
                .block_on(task)
                .context("a scoring request's task ended without an answer")?,
        }
    }
}

impl Drop for Scoring {
    fn drop(&mut self) {
        if let Pending::InFlight { task, .. } = &self.0 {
            task.abort();
        }
    }
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

impl LocalBackend {
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

impl ScoreBackend for LocalBackend {
    /// The engine runs on this worker's own thread: nothing to overlap, scored at once.
    fn submit(&mut self, ids: Tensor) -> anyhow::Result<Scoring> {
        Ok(Scoring::done(self.score(ids)))
    }
}

/// Requests in flight per worker in remote mode, unless [`RemoteFactory::in_flight`] says
/// otherwise. With one, a worker's core idled through every round trip and the server's through
/// every transform (0.51-0.63 of local scoring); four keep both busy on a 2-core machine while
/// holding at most four batches of ids (about 1.3 MB each at 4,096 rows) per worker.
pub const DEFAULT_IN_FLIGHT: usize = 4;

/// Remote mode: batches of ids go to one or more servers through the client library, spread
/// round-robin, up to [`DEFAULT_IN_FLIGHT`] requests in flight per worker while the worker
/// transforms the next rows (so `--jobs` times that bounds what is in flight), with the
/// client's retries and backoff on 429, 503 and connection errors. The feature spec comes
/// from the server's own model config (`features.toml` parameter), so rows are transformed
/// exactly as the server would transform them.
pub struct RemoteFactory {
    spec: FeatureSpec,
    client: spindle_client::Client,
    model: String,
    input: String,
    output: String,
    in_flight: usize,
    handle: tokio::runtime::Handle,
    // Keeps a runtime alive when the caller had none (tests, plain threads).
    _runtime: Option<Arc<tokio::runtime::Runtime>>,
}

impl RemoteFactory {
    /// Connects to `urls` and reads `model`'s signature and feature spec from the first that
    /// answers.
    pub fn open(
        urls: &[String],
        model: &str,
        security: spindle_client::ClientSecurity,
    ) -> anyhow::Result<RemoteFactory> {
        let (handle, runtime) = runtime_handle()?;
        let client = spindle_client::Client::builder(urls.iter().cloned())
            .security(security)
            .build()?;
        let http = first_http(urls).with_context(|| {
            "remote scoring reads the model's feature spec over HTTP: give at least one http:// or https:// server URL"
        })?;
        let model_name = model.to_string();
        let (metadata, text) = handle.block_on(async {
            let metadata = client.model_metadata(&model_name).await?;
            let text = fetch_features(&client, &http, &model_name).await?;
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
            in_flight: DEFAULT_IN_FLIGHT,
            handle,
            _runtime: runtime,
        })
    }

    /// Requests each worker keeps in flight (at least 1).
    pub fn in_flight(mut self, requests: usize) -> RemoteFactory {
        self.in_flight = requests.max(1);
        self
    }
}

/// `GET /v2/models/{m}/config` from the client's first HTTP endpoint, with its TLS and token.
pub(crate) async fn fetch_config(
    client: &spindle_client::Client,
    model: &str,
) -> anyhow::Result<serde_json::Value> {
    Ok(client.model_config(model).await?)
}

/// The first `http://` or `https://` URL of `urls` (a bare `HOST:PORT` counts as one), where
/// a model's config is read.
pub(crate) fn first_http(urls: &[String]) -> Option<String> {
    let url = urls
        .iter()
        .find(|u| !u.starts_with("grpc://") && !u.starts_with("grpcs://"))?;
    Some(if url.contains("://") {
        url.clone()
    } else {
        format!("http://{url}")
    })
}

/// The `features.toml` parameter of a served model's config.
async fn fetch_features(
    client: &spindle_client::Client,
    base: &str,
    model: &str,
) -> anyhow::Result<String> {
    let config = fetch_config(client, model).await?;
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
                    output: Arc::from(self.output.as_str()),
                    in_flight: self.in_flight,
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
    output: Arc<str>,
    in_flight: usize,
    handle: tokio::runtime::Handle,
}

impl ScoreBackend for RemoteBackend {
    fn depth(&self) -> usize {
        self.in_flight
    }

    /// Sends the batch from the runtime's threads and returns at once, so the worker goes on
    /// transforming rows during the round trip. Retries happen inside the task, as before.
    fn submit(&mut self, ids: Tensor) -> anyhow::Result<Scoring> {
        let rows = ids.shape[0];
        let request = spindle_client::InferRequest::new(&self.model).input(&self.input, ids);
        let (client, output) = (self.client.clone(), self.output.clone());
        let task = self.handle.spawn(async move {
            let mut answer = client.infer(&request).await?;
            let position = answer.outputs.iter().position(|o| *o.name == *output);
            match position.map(|i| answer.outputs.swap_remove(i).tensor.data) {
                Some(TensorData::F32(p)) if p.len() == rows => Ok(p),
                _ => anyhow::bail!("the server's answer has no FP32 '{output}' with {rows} values"),
            }
        });
        Ok(Scoring(Pending::InFlight {
            task,
            handle: self.handle.clone(),
        }))
    }
}

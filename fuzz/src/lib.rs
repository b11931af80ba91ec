//! The fuzz targets' entry points. Each takes arbitrary bytes and drives them through the
//! server's own code for one kind of input, from what a client sends to what the server would
//! answer: the front end's parser, then the shared pipeline (`infer::run`: the batch limit,
//! image and row preprocessing, the shape checks, the batcher, classification), then the front
//! end's encoder. The models are stand-ins with the zoo's configs whose engine echoes the first
//! input's bytes into every numeric output, so NaNs and infinities a client sends reach
//! classification and the encoders as a real model would pass them on.
//!
//! Every function must return for every input, `true` when some stand-in answered (or the file
//! parsed) and `false` when all refused it: a refusal is the expected answer to garbage; a
//! panic, an abort, a hang or an allocation beyond the fuzzer's `-rss_limit_mb` is a bug. The same functions replay the committed corpus and every past crash on stable in
//! `server/tests/fuzz_corpus.rs` (included there by path, so the two never drift apart).

use serde_json::json;
use spindle_core::batcher::{BatchSettings, Batcher};
use spindle_core::config::ModelConfig;
use spindle_core::dtype::DataType;
use spindle_core::engine::{EngineError, Runner};
use spindle_core::metrics::Metrics;
use spindle_core::tensor::{Tensor, TensorData};
use spindle_criteo::spec::FeatureSpec;
use spindle_criteo::transform::Transformer;
use spindle_proto::prost::Message;
use spindle_server::grpc;
use spindle_server::http;
use spindle_server::infer::{self, InferAnswer, InferRequest, Limits};
use spindle_server::models::LoadedModel;
use std::sync::{Arc, OnceLock};

/// A target's entry point: `true` when the input was answered (or parsed), `false` when refused.
pub type Entry = fn(&[u8]) -> bool;

/// Every target, by the name `cargo fuzz` and `fuzz/corpus/NAME/` know it by.
pub const TARGETS: &[(&str, Entry)] = &[
    ("v2_json", v2_json),
    ("v2_binary", v2_binary),
    ("tf_rest", tf_rest),
    ("grpc_v2", grpc_v2),
    ("grpc_tfserving", grpc_tfserving),
    ("image", image),
    ("criteo_rows", criteo_rows),
    ("config_toml", config_toml),
    ("features_toml", features_toml),
];

/// KServe v2 JSON body (`POST /v2/models/M/infer`), against every stand-in model.
pub fn v2_json(data: &[u8]) -> bool {
    models().iter().fold(false, |answered, model| {
        v2_http(model, data, None) | answered
    })
}

/// KServe v2 binary tensor extension: the first two bytes (little-endian) are the
/// `Inference-Header-Content-Length`, the rest the body (JSON header, then raw tensors).
pub fn v2_binary(data: &[u8]) -> bool {
    let Some((len, body)) = data.split_first_chunk::<2>() else {
        return false;
    };
    let header_len = Some(usize::from(u16::from_le_bytes(*len)));
    models().iter().fold(false, |answered, model| {
        v2_http(model, body, header_len) | answered
    })
}

fn v2_http(model: &Arc<LoadedModel>, body: &[u8], header_len: Option<usize>) -> bool {
    let mut request = match http::codec::parse_request(&model.config, body, header_len) {
        Ok(request) => request,
        Err(e) => {
            explain(&model.name, &e);
            return false;
        }
    };
    let id = request.id.take();
    let Some(answer) = run(model, request) else {
        return false;
    };
    let encoded = http::codec::encode_response(&model.config, 1, id.as_deref(), &answer);
    if let Some(n) = encoded.header_len {
        assert!(n <= encoded.body.len(), "header length past the body");
    }
    true
}

/// TF Serving REST predict body (`POST /v1/models/M:predict`), row or columnar format.
pub fn tf_rest(data: &[u8]) -> bool {
    let mut answered = false;
    for model in models() {
        let Ok((request, columnar)) = http::tfserving::codec::parse_predict(model, data) else {
            continue;
        };
        let Some(answer) = run(model, request) else {
            continue;
        };
        let outputs: Vec<(&str, &Tensor)> = answer
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), &o.tensor))
            .collect();
        let body = if columnar {
            json!({ "outputs": http::tfserving::codec::Columns(&outputs) })
        } else {
            json!({ "predictions": http::tfserving::codec::Rows(&outputs) })
        };
        serde_json::to_vec(&body).expect("a predict response serialises");
        answered = true;
    }
    answered
}

/// A protobuf `inference.ModelInferRequest` (KServe v2 gRPC `ModelInfer`).
pub fn grpc_v2(data: &[u8]) -> bool {
    let Ok(message) = spindle_proto::inference::ModelInferRequest::decode(data) else {
        return false;
    };
    let mut answered = false;
    for model in models() {
        let Ok(mut request) = grpc::codec::parse_request(&model.config, message.clone()) else {
            continue;
        };
        let id = request.id.take();
        if let Some(answer) = run(model, request) {
            grpc::codec::encode_response(&model.config, 1, id, answer).encode_to_vec();
            answered = true;
        }
    }
    answered
}

/// A protobuf `tensorflow.serving.PredictRequest` (TF Serving gRPC `Predict`).
pub fn grpc_tfserving(data: &[u8]) -> bool {
    let Ok(message) = spindle_proto::tensorflow::serving::PredictRequest::decode(data) else {
        return false;
    };
    models().iter().fold(false, |answered, model| {
        grpc::tfserving::parse_predict(model, message.clone())
            .is_ok_and(|request| run(model, request).is_some())
            | answered
    })
}

/// One encoded image (JPEG, PNG or anything else) sent as a BYTES element, shaped `[1]` and
/// `[1, 1]`, to the CIFAR-10 and the Inception v3 stand-ins.
pub fn image(data: &[u8]) -> bool {
    let mut answered = false;
    for model in &models()[..2] {
        for shape in [vec![1], vec![1, 1]] {
            let tensor =
                Tensor::new(shape, TensorData::Bytes(vec![data.to_vec()])).expect("one element");
            answered |= run(model, request_for(model, tensor)).is_some();
        }
    }
    answered
}

/// Raw Criteo TSV rows, one per line, as the BYTES input of the CTR stand-in (transformed by
/// the zoo's `features.toml`); each line also through the transform alone.
pub fn criteo_rows(data: &[u8]) -> bool {
    let model = &models()[2];
    // Lines as in a file: a final newline ends the last row rather than starting an empty one.
    let text = data.strip_suffix(b"\n").unwrap_or(data);
    let rows: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let transformer = model
        .features
        .as_deref()
        .expect("the CTR stand-in has features");
    let mut ids = vec![0; transformer.fields()];
    for row in &rows {
        if transformer.transform(row, &mut ids).is_ok() {
            transformer
                .check_ids(&ids)
                .expect("a transformed row's ids lie in the id space");
        }
    }
    let tensor = Tensor::new(vec![rows.len()], TensorData::Bytes(rows)).expect("one per row");
    run(model, request_for(model, tensor)).is_some()
}

/// A model's `config.toml`. One that parses must serialise (what `spindle zoo` and the config
/// endpoints do) and parse back to itself.
pub fn config_toml(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(config) = ModelConfig::from_toml(text) else {
        return false;
    };
    let written = config.to_toml();
    let again = ModelConfig::from_toml(&written)
        .unwrap_or_else(|e| panic!("a config that parsed does not parse once written: {e}"));
    assert_eq!(again, config, "a config changed on the way through TOML");
    true
}

/// A version's `features.toml`. One that parses must compile into a transformer, which must
/// transform a well-formed and a malformed row without panicking, and serialise and parse back
/// to itself (the trainer writes what the server reads).
pub fn features_toml(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(spec) = FeatureSpec::from_toml(text) else {
        return false;
    };
    let again = FeatureSpec::from_toml(&spec.to_toml())
        .unwrap_or_else(|e| panic!("a spec that parsed does not parse once written: {e}"));
    assert_eq!(
        again, spec,
        "a features.toml changed on the way through TOML"
    );
    let Ok(transformer) = Transformer::new(spec) else {
        return false;
    };
    let mut ids = vec![0; transformer.fields()];
    for row in SAMPLE_ROWS {
        if transformer.transform(row, &mut ids).is_ok() {
            transformer
                .check_ids(&ids)
                .expect("a transformed row's ids lie in the id space");
        }
    }
    true
}

/// A labelled Criteo row, the same without its label, and one with a bad token.
const SAMPLE_ROWS: [&[u8]; 3] = [
    b"1\t5\t110\t\t16\t\t1\t0\t14\t7\t1\t\t306\t\t62770d79\te21f5d58\tafea442f\t945c7fcf\t38b02748\t6fcd6dcb\t3580aa21\t28808903\t46dedfa6\t2e027dc1\t0c7c4231\t95981d1f\t00c5ffb7\tbe4ee537\t8a0b74cc\t4cdc3efa\td20856aa\tb8170bba\t9512c20b\tc38e2f28\t14f65a5d\t25b1b089\td7c1fc0b\t7caf609c\t30436bfc\ted10571d\n",
    b"5\t110\t\t16\t\t1\t0\t14\t7\t1\t\t306\t\t62770d79\te21f5d58\tafea442f\t945c7fcf\t38b02748\t6fcd6dcb\t3580aa21\t28808903\t46dedfa6\t2e027dc1\t0c7c4231\t95981d1f\t00c5ffb7\tbe4ee537\t8a0b74cc\t4cdc3efa\td20856aa\tb8170bba\t9512c20b\tc38e2f28\t14f65a5d\t25b1b089\td7c1fc0b\t7caf609c\t30436bfc\ted10571d",
    b"1\t5\t110\t\t16\t\t1\t0\t14\t7\t1\t\t306\t\tnot-hex!\te21f5d58",
];

/// A request with the model's one input and all its outputs, binary.
fn request_for(model: &LoadedModel, tensor: Tensor) -> InferRequest {
    InferRequest {
        id: None,
        inputs: vec![tensor],
        outputs: infer::all_outputs(&model.config, true),
        timeout: None,
    }
}

/// Runs the shared pipeline on the harness's runtime with the server's default limits.
fn run(model: &Arc<LoadedModel>, request: InferRequest) -> Option<InferAnswer> {
    runtime()
        .block_on(infer::run(model, request, Limits::default()))
        .map_err(|e| explain(&model.name, &e))
        .ok()
}

/// With `SPINDLE_FUZZ_EXPLAIN=1`, prints why the pipeline refused an input (for curating the
/// corpus); silent otherwise, since the fuzzer refuses millions.
fn explain(model: &str, error: &dyn std::fmt::Display) {
    static EXPLAIN: OnceLock<bool> = OnceLock::new();
    if *EXPLAIN.get_or_init(|| std::env::var_os("SPINDLE_FUZZ_EXPLAIN").is_some()) {
        eprintln!("{model}: {error}");
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

/// The stand-ins: CIFAR-10 and Inception v3 (images), the CTR model (Criteo rows), and one
/// with several inputs of other types, a variable inner dimension and BYTES and INT64 outputs.
fn models() -> &'static [Arc<LoadedModel>] {
    static MODELS: OnceLock<Vec<Arc<LoadedModel>>> = OnceLock::new();
    MODELS.get_or_init(|| {
        let _runtime = runtime().enter();
        let features = Arc::new(
            Transformer::new(FeatureSpec::criteo_default()).expect("the default spec compiles"),
        );
        let fields = features.fields();
        vec![
            stand_in(&image_config("cifar10", "cifar10_image", 128, 24, 10), None),
            stand_in(
                &image_config("inception_v3", "inception_image", 16, 299, 1001),
                None,
            ),
            stand_in(
                &format!(
                    "name = \"criteo_ctr\"\nmax_batch_size = 4096\n\
                     [[inputs]]\nname = \"ids\"\ndtype = \"INT64\"\ndims = [-1, {fields}]\n\
                     preprocess = \"criteo_rows\"\n\
                     [[outputs]]\nname = \"ctr\"\ndtype = \"FP32\"\ndims = [-1, 1]\n"
                ),
                Some(features),
            ),
            stand_in(MIXED_CONFIG, None),
        ]
    })
}

fn image_config(name: &str, preprocess: &str, batch: usize, side: usize, classes: usize) -> String {
    format!(
        "name = \"{name}\"\nmax_batch_size = {batch}\n\
         [[inputs]]\nname = \"images\"\ndtype = \"FP32\"\ndims = [-1, {side}, {side}, 3]\n\
         preprocess = \"{preprocess}\"\n\
         [[outputs]]\nname = \"probabilities\"\ndtype = \"FP32\"\ndims = [-1, {classes}]\n"
    )
}

const MIXED_CONFIG: &str = r#"
name = "mixed"
max_batch_size = 4
[[inputs]]
name = "x"
dtype = "FP32"
dims = [-1, -1, 2]
[[inputs]]
name = "n"
dtype = "INT32"
dims = [-1, 3]
[[inputs]]
name = "s"
dtype = "BYTES"
dims = [-1, 1]
[[inputs]]
name = "b"
dtype = "BOOL"
dims = [-1, 2]
[[outputs]]
name = "y"
dtype = "FP32"
dims = [-1, -1]
[[outputs]]
name = "k"
dtype = "INT64"
dims = [-1, 2]
[[outputs]]
name = "label"
dtype = "BYTES"
dims = [-1, 1]
"#;

fn stand_in(config_text: &str, features: Option<Arc<Transformer>>) -> Arc<LoadedModel> {
    let config = ModelConfig::from_toml(config_text).expect("the stand-in's config is valid");
    let settings = BatchSettings {
        max_batch_size: config.max_batch_size,
        preferred_batch_sizes: Vec::new(),
        max_queue_delay: std::time::Duration::ZERO,
        max_queue_size: config.max_queue_size,
        idle_spin: std::time::Duration::ZERO,
    };
    let runner = Echo {
        config: config.clone(),
    };
    let metrics = Metrics::new().for_model(&config.name, 1);
    let batcher = Batcher::start(&config.name, settings, vec![Box::new(runner)], metrics);
    Arc::new(LoadedModel {
        name: config.name.clone(),
        version: 1,
        config,
        labels: None,
        engine: "fuzz-echo",
        device: Default::default(),
        features,
        features_text: None,
        instances: 1,
        batcher,
    })
}

/// The stand-in engine: every output has the batch's rows (variable dimensions 3 long); numeric
/// outputs repeat the first input's little-endian bytes, BOOL and BYTES outputs are false and
/// empty.
struct Echo {
    config: ModelConfig,
}

impl Runner for Echo {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        let rows = inputs.first().map_or(1, Tensor::batch);
        let mut source = Vec::new();
        if let Some(first) = inputs.first() {
            first.write_le_bytes(&mut source);
        }
        if source.is_empty() {
            source.push(0);
        }
        let batched = self.config.max_batch_size > 0;
        Ok(self
            .config
            .outputs
            .iter()
            .map(|spec| {
                let shape: Vec<usize> = spec
                    .dims
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| match (i, d) {
                        (0, _) if batched => rows,
                        (_, -1) => 3,
                        (_, d) => d as usize,
                    })
                    .collect();
                let count = spindle_core::tensor::element_count(&shape);
                let raw: Vec<u8> = match spec.dtype {
                    DataType::Bool => vec![0; count],
                    DataType::Bytes => vec![0; count * 4],
                    other => {
                        let size = other.size().expect("numeric types have a size");
                        source.iter().copied().cycle().take(count * size).collect()
                    }
                };
                Tensor::from_le_bytes(spec.dtype, shape, &raw).expect("sized to the shape")
            })
            .collect())
    }
}

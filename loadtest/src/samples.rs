//! Real samples for `--input-data PATH` instead of generated tensors: encoded images (a JPEG or
//! PNG file, a directory of them, or a `.txt`/`.lst` list of their paths), Criteo TSV rows
//! (`.tsv`, `.tsv.gz`, `.tsv.bz2`), or KServe v2 JSON tensors (`.json`: one
//! `{"inputs": [...]}` request, or an array of them).
//!
//! Every sample is checked against the model before any load is sent: images must decode and
//! need an input declaring image preprocessing; rows need a `criteo_rows` input and must pass
//! the version's own `features.toml` transform (the server's code, `spindle-criteo`); JSON
//! tensors must match the metadata's names, datatypes and shapes. A mismatch is an error naming
//! the file and what the model expects.
//!
//! Samples are cut into requests of `--batch` rows (wrapping around at the end), and the
//! requests are sent in rotation, so every sample is used.

use crate::args::{LoadtestArgs, Protocol};
use crate::element::ElementType;
use crate::grpc::GrpcTemplate;
use crate::metadata::{self, ModelMetadata, TensorMetadata};
use crate::target::Target;
use crate::tensors::{GeneratedInputs, InputTensor};
use anyhow::{Context, anyhow, bail, ensure};
use hyper::StatusCode;
use serde_json::Value;
use spindle_criteo::spec::FeatureSpec;
use spindle_criteo::transform::Transformer;
use spindle_proto::inference as pb;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most samples read from one `--input-data` (rows files can hold millions).
pub const MAX_SAMPLES: usize = 10_000;

/// The preprocessing names the server accepts encoded images for.
const IMAGE_PREPROCESSING: [&str; 2] = ["cifar10_image", "inception_image"];
/// The preprocessing name for raw Criteo TSV rows.
const ROWS_PREPROCESSING: &str = "criteo_rows";

/// What the server's model configuration says about preprocessing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preprocessing {
    /// Input name to preprocessing name (`preprocess.<input>` parameters).
    pub inputs: BTreeMap<String, String>,
    /// The served version's `features.toml`, when it has one.
    pub features: Option<String>,
}

impl Preprocessing {
    /// Reads the Triton-style `parameters` map of a model configuration.
    fn from_parameters<'a>(parameters: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let mut found = Preprocessing::default();
        for (key, value) in parameters {
            if let Some(input) = key.strip_prefix("preprocess.") {
                found.inputs.insert(input.to_string(), value.to_string());
            } else if key == "features.toml" {
                found.features = Some(value.to_string());
            }
        }
        found
    }
}

/// Fetches the model configuration (`GET /v2/models/{m}/config`, or gRPC `ModelConfig`) for
/// its preprocessing parameters.
pub async fn fetch_preprocessing(
    target: &Target,
    protocol: Protocol,
    model: &str,
    version: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Preprocessing> {
    if protocol == Protocol::Grpc {
        let call = async {
            let mut client = GrpcTemplate::client(target).await?;
            let answer = client
                .model_config(pb::ModelConfigRequest {
                    name: model.to_string(),
                    version: version.unwrap_or_default().to_string(),
                })
                .await
                .map_err(|s| anyhow!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            let config = answer.config.unwrap_or_default();
            anyhow::Ok(Preprocessing::from_parameters(
                config
                    .parameters
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.string_value.as_str())),
            ))
        };
        return tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| anyhow!("no answer within {timeout:?}"))?
            .with_context(|| {
                format!(
                    "{}: cannot read the configuration of model '{model}' over gRPC",
                    target.url
                )
            });
    }
    let path = format!("{}/config", metadata::model_path(model, version));
    let (status, body) = metadata::get(target, &path, timeout, "model config").await?;
    ensure!(
        status == StatusCode::OK,
        "{}: GET {path} answered {status}: {} (the server must describe the model's preprocessing for --input-data images or rows)",
        target.url,
        metadata::server_message(&body)
    );
    let config: Value = serde_json::from_slice(&body)
        .with_context(|| format!("{}: GET {path} is not JSON", target.url))?;
    let parameters = config["parameters"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    Ok(Preprocessing::from_parameters(
        parameters
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v["string_value"].as_str()?))),
    ))
}

/// What `--input-data` names, by its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleSource {
    /// Encoded images, in order.
    Images(Vec<PathBuf>),
    /// A file of Criteo TSV rows (plain, gz or bz2).
    Rows(PathBuf),
    /// A file of KServe v2 JSON tensors.
    Json(PathBuf),
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
}

impl SampleSource {
    /// Classifies `path` by what it is: a directory (of images), or a file by its extension.
    pub fn of(path: &Path) -> anyhow::Result<SampleSource> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("--input-data {}: cannot read it", path.display()))?;
        if meta.is_dir() {
            let mut images = Vec::new();
            for entry in std::fs::read_dir(path)
                .with_context(|| format!("--input-data {}: cannot list it", path.display()))?
            {
                let entry = entry?.path();
                let hidden = entry
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_none_or(|n| n.starts_with('.'));
                if hidden || !entry.is_file() {
                    continue;
                }
                ensure!(
                    is_image_name(&entry),
                    "--input-data {}: {} is not a .jpg, .jpeg or .png file (a directory of samples holds only images)",
                    path.display(),
                    entry.display()
                );
                images.push(entry);
            }
            ensure!(
                !images.is_empty(),
                "--input-data {}: the directory holds no .jpg, .jpeg or .png images",
                path.display()
            );
            images.sort();
            return Ok(SampleSource::Images(images));
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if is_image_name(path) {
            Ok(SampleSource::Images(vec![path.to_path_buf()]))
        } else if name.ends_with(".json") {
            Ok(SampleSource::Json(path.to_path_buf()))
        } else if [".tsv", ".tsv.gz", ".tsv.bz2"]
            .iter()
            .any(|e| name.ends_with(e))
        {
            Ok(SampleSource::Rows(path.to_path_buf()))
        } else if name.ends_with(".txt") || name.ends_with(".lst") {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--input-data {}: cannot read it", path.display()))?;
            let dir = path.parent().unwrap_or(Path::new(""));
            let mut images = Vec::new();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let image = dir.join(line);
                ensure!(
                    is_image_name(&image) && image.is_file(),
                    "--input-data {} line {}: '{line}' is not a .jpg, .jpeg or .png file (a list names one image per line, relative to the list)",
                    path.display(),
                    i + 1
                );
                images.push(image);
            }
            ensure!(
                !images.is_empty(),
                "--input-data {}: the list names no images",
                path.display()
            );
            Ok(SampleSource::Images(images))
        } else {
            bail!(
                "--input-data {}: not a kind of sample this tool reads; give a directory of images, an image (.jpg, .jpeg, .png), a list of images (.txt, .lst), Criteo rows (.tsv, .tsv.gz, .tsv.bz2) or KServe v2 tensors (.json)",
                path.display()
            )
        }
    }
}

/// The inputs of the requests to send: generated from the metadata, or read from
/// `--input-data` (whose preprocessing is looked up on `target` first).
pub async fn request_inputs(
    args: &LoadtestArgs,
    target: &Target,
    model: &ModelMetadata,
) -> anyhow::Result<Vec<GeneratedInputs>> {
    let Some(path) = &args.input_data else {
        let inputs = crate::tensors::generate(&model.inputs, args.batch, &args.shape)
            .with_context(|| format!("cannot generate inputs for model '{}'", args.model))?;
        return Ok(vec![inputs]);
    };
    ensure!(
        args.shape.is_empty(),
        "--shape applies to generated inputs; --input-data {} brings its own shapes",
        path.display()
    );
    // Images and rows need the configuration. JSON tensors need it only for BYTES sent to a
    // preprocessed input, so a server without one (not Spindle) still takes plain tensors.
    let version = args.model_version.as_deref();
    let preprocessing =
        fetch_preprocessing(target, args.protocol, &args.model, version, args.timeout);
    let preprocessing = match SampleSource::of(path)? {
        SampleSource::Json(_) => preprocessing.await.unwrap_or_default(),
        _ => preprocessing.await?,
    };
    load(path, model, &preprocessing, args.protocol, args.batch)
}

/// Reads and checks the samples at `path` against `model`, and cuts them into the requests to
/// send in rotation (each of `batch` rows; JSON requests as written).
pub fn load(
    path: &Path,
    model: &ModelMetadata,
    preprocessing: &Preprocessing,
    protocol: Protocol,
    batch: usize,
) -> anyhow::Result<Vec<GeneratedInputs>> {
    let requests = match SampleSource::of(path)? {
        SampleSource::Images(files) => {
            let input = sample_input(model, preprocessing, &IMAGE_PREPROCESSING, "images", path)?;
            let mut images = Vec::with_capacity(files.len().min(MAX_SAMPLES));
            for file in files.iter().take(MAX_SAMPLES) {
                images.push(read_image(file, &input, preprocessing)?);
            }
            let requests = batches(&input, &images, batch);
            check_protocol(protocol, path, &requests)?;
            requests
        }
        SampleSource::Rows(file) => {
            let input = sample_input(model, preprocessing, &[ROWS_PREPROCESSING], "rows", path)?;
            let rows = read_rows(&file, &input, preprocessing)?;
            let requests = batches(&input, &rows, batch);
            check_protocol(protocol, path, &requests)?;
            requests
        }
        SampleSource::Json(file) => {
            ensure!(
                batch == 1,
                "--batch {batch} does not apply to --input-data {}: JSON tensors are sent as written, their shapes set the batch",
                file.display()
            );
            let requests = read_json(&file, model, preprocessing)?;
            check_protocol(protocol, path, &requests)?;
            requests
        }
    };
    Ok(requests)
}

/// The one input of `model` that takes samples preprocessed as one of `kinds`.
fn sample_input(
    model: &ModelMetadata,
    preprocessing: &Preprocessing,
    kinds: &[&str],
    what: &str,
    path: &Path,
) -> anyhow::Result<TensorMetadata> {
    let wanted = kinds
        .iter()
        .map(|k| format!("preprocess = \"{k}\""))
        .collect::<Vec<_>>()
        .join(" or ");
    let Some(input) = model.inputs.iter().find(|i| {
        preprocessing
            .inputs
            .get(&i.name)
            .is_some_and(|p| kinds.contains(&p.as_str()))
    }) else {
        bail!(
            "--input-data {}: model '{}' has no input that takes {what}: its inputs are {}; {what} need an input declaring {wanted}",
            path.display(),
            model.name,
            describe_inputs(model, preprocessing)
        );
    };
    ensure!(
        model.inputs.len() == 1,
        "--input-data {}: model '{}' has {} inputs ({}), and {what} fill only '{}'; give the model's tensors as a .json file instead",
        path.display(),
        model.name,
        model.inputs.len(),
        describe_inputs(model, preprocessing),
        input.name
    );
    ensure!(
        input.shape.first() == Some(&-1),
        "--input-data {}: input '{}' of model '{}' has no batch dimension (shape {:?}), so it cannot take {what}",
        path.display(),
        input.name,
        model.name,
        input.shape
    );
    Ok(input.clone())
}

fn describe_inputs(model: &ModelMetadata, preprocessing: &Preprocessing) -> String {
    model
        .inputs
        .iter()
        .map(|i| {
            let pre = preprocessing
                .inputs
                .get(&i.name)
                .map_or(String::new(), |p| format!(" (preprocess {p})"));
            format!("{} {} {:?}{pre}", i.name, i.datatype, i.shape)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads one image and checks that it decodes as JPEG or PNG.
fn read_image(
    file: &Path,
    input: &TensorMetadata,
    preprocessing: &Preprocessing,
) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(file)
        .with_context(|| format!("--input-data: cannot read {}", file.display()))?;
    let expected = || {
        format!(
            "input '{}' expects an encoded JPEG or PNG image (preprocess {})",
            input.name, preprocessing.inputs[&input.name]
        )
    };
    let format = image::guess_format(&bytes).map_err(|_| {
        anyhow!(
            "--input-data {}: not a JPEG or PNG image (starts with {:02x?}); {}",
            file.display(),
            &bytes[..bytes.len().min(8)],
            expected()
        )
    })?;
    ensure!(
        matches!(format, image::ImageFormat::Jpeg | image::ImageFormat::Png),
        "--input-data {}: a {format:?} image; {}",
        file.display(),
        expected()
    );
    image::load_from_memory_with_format(&bytes, format).map_err(|e| {
        anyhow!(
            "--input-data {}: cannot decode it as {format:?} ({e}); {}",
            file.display(),
            expected()
        )
    })?;
    Ok(bytes)
}

/// Reads up to [`MAX_SAMPLES`] rows and checks each with the version's own transform.
fn read_rows(
    file: &Path,
    input: &TensorMetadata,
    preprocessing: &Preprocessing,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let transformer = preprocessing
        .features
        .as_deref()
        .map(|text| {
            FeatureSpec::from_toml(text)
                .map_err(|e| anyhow!("{e}"))
                .and_then(|spec| Transformer::new(spec).map_err(|e| anyhow!("{e}")))
                .context("the server's features.toml for this model cannot be used")
        })
        .transpose()?;
    let mut reader = spindle_criteo::shard::open_shard(file)
        .with_context(|| format!("--input-data: cannot open {}", file.display()))?;
    let mut ids = vec![0i64; transformer.as_ref().map_or(0, Transformer::fields)];
    let mut rows = Vec::new();
    let mut line = Vec::new();
    let mut number = 0;
    while rows.len() < MAX_SAMPLES {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("--input-data: reading {}", file.display()))?;
        if n == 0 {
            break;
        }
        number += 1;
        let row = line
            .strip_suffix(b"\n")
            .map(|r| r.strip_suffix(b"\r").unwrap_or(r))
            .unwrap_or(&line);
        if row.is_empty() {
            continue;
        }
        if let Some(transformer) = &transformer {
            transformer.transform(row, &mut ids).map_err(|problem| {
                anyhow!(
                    "--input-data {} line {number}: {problem}; input '{}' expects Criteo TSV rows (label optional, 13 integer and 26 categorical columns)",
                    file.display(),
                    input.name
                )
            })?;
        }
        rows.push(row.to_vec());
    }
    ensure!(
        !rows.is_empty(),
        "--input-data {}: no rows in the file",
        file.display()
    );
    Ok(rows)
}

/// Cuts encoded samples into BYTES requests of `batch` elements each, wrapping around so every
/// request is full: as many requests as it takes to send every sample once.
fn batches(input: &TensorMetadata, samples: &[Vec<u8>], batch: usize) -> Vec<GeneratedInputs> {
    let count = samples.len().div_ceil(batch);
    (0..count)
        .map(|r| {
            let mut raw = Vec::new();
            for i in 0..batch {
                let sample = &samples[(r * batch + i) % samples.len()];
                raw.extend_from_slice(&(sample.len() as u32).to_le_bytes());
                raw.extend_from_slice(sample);
            }
            GeneratedInputs {
                tensors: vec![InputTensor {
                    name: input.name.clone(),
                    datatype: "BYTES".into(),
                    element: ElementType::Bytes,
                    shape: vec![batch],
                    raw,
                }],
                rows: batch,
            }
        })
        .collect()
}

/// KServe v2 JSON carries BYTES as strings: binary samples need another protocol.
fn check_protocol(
    protocol: Protocol,
    path: &Path,
    requests: &[GeneratedInputs],
) -> anyhow::Result<()> {
    if protocol != Protocol::HttpJson {
        return Ok(());
    }
    let binary = requests.iter().flat_map(|r| &r.tensors).any(|t| {
        t.element == ElementType::Bytes
            && bytes_elements(&t.raw).any(|e| std::str::from_utf8(e).is_err())
    });
    ensure!(
        !binary,
        "--input-data {}: these samples are binary, and --protocol http-json carries BYTES only as text; use --protocol http-binary, grpc or tf-rest",
        path.display()
    );
    Ok(())
}

/// The elements of a BYTES tensor's raw form (each a 4-byte little-endian length, then bytes).
pub fn bytes_elements(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = (u32::from_le_bytes(*len) as usize).min(tail.len());
        let (element, tail) = tail.split_at(len);
        rest = tail;
        Some(element)
    })
}

/// Reads KServe v2 JSON requests and checks them against the model's metadata.
fn read_json(
    file: &Path,
    model: &ModelMetadata,
    preprocessing: &Preprocessing,
) -> anyhow::Result<Vec<GeneratedInputs>> {
    let text = std::fs::read(file)
        .with_context(|| format!("--input-data: cannot read {}", file.display()))?;
    let value: Value = serde_json::from_slice(&text)
        .with_context(|| format!("--input-data {}: not valid JSON", file.display()))?;
    let requests = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => bail!(
            "--input-data {}: expected a KServe v2 request {{\"inputs\": [...]}} or an array of them",
            file.display()
        ),
    };
    ensure!(
        !requests.is_empty(),
        "--input-data {}: an empty array",
        file.display()
    );
    requests
        .iter()
        .take(MAX_SAMPLES)
        .enumerate()
        .map(|(i, request)| {
            let at = if requests.len() > 1 {
                format!("{} request {i}", file.display())
            } else {
                file.display().to_string()
            };
            json_request(request, model, preprocessing)
                .with_context(|| format!("--input-data {at}"))
        })
        .collect()
}

fn json_request(
    request: &Value,
    model: &ModelMetadata,
    preprocessing: &Preprocessing,
) -> anyhow::Result<GeneratedInputs> {
    let inputs = request["inputs"]
        .as_array()
        .ok_or_else(|| anyhow!("no \"inputs\" array (expected {{\"inputs\": [{{\"name\", \"datatype\", \"shape\", \"data\"}}]}})"))?;
    let mut tensors = Vec::with_capacity(model.inputs.len());
    let mut rows = 1;
    for meta in &model.inputs {
        let given: Vec<&Value> = inputs
            .iter()
            .filter(|t| t["name"] == meta.name.as_str())
            .collect();
        let tensor = match given.as_slice() {
            [one] => *one,
            [] => bail!(
                "no tensor for input '{}' (model '{}' expects {})",
                meta.name,
                model.name,
                describe_inputs(model, preprocessing)
            ),
            _ => bail!("input '{}' is given {} times", meta.name, given.len()),
        };
        let tensor = json_tensor(tensor, meta, preprocessing.inputs.get(&meta.name))?;
        if meta.shape.first() == Some(&-1) {
            rows = tensor.shape[0];
        }
        tensors.push(tensor);
    }
    if let Some(unknown) = inputs
        .iter()
        .find(|t| !model.inputs.iter().any(|m| t["name"] == m.name.as_str()))
    {
        bail!(
            "model '{}' has no input {} (its inputs: {})",
            model.name,
            unknown["name"],
            describe_inputs(model, preprocessing)
        );
    }
    Ok(GeneratedInputs { tensors, rows })
}

/// Checks one JSON tensor against its metadata and encodes its data little-endian.
fn json_tensor(
    tensor: &Value,
    meta: &TensorMetadata,
    preprocess: Option<&String>,
) -> anyhow::Result<InputTensor> {
    let name = &meta.name;
    let datatype = tensor["datatype"]
        .as_str()
        .ok_or_else(|| anyhow!("input '{name}' has no \"datatype\""))?;
    let shape: Vec<usize> = tensor["shape"]
        .as_array()
        .and_then(|dims| {
            dims.iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect()
        })
        .ok_or_else(|| anyhow!("input '{name}': \"shape\" must be a list of whole numbers"))?;
    let expected = match preprocess {
        Some(p) => format!(
            "{} {:?} (or BYTES [n] holding {p} input)",
            meta.datatype, meta.shape
        ),
        None => format!("{} {:?}", meta.datatype, meta.shape),
    };
    let bytes_for_preprocess = datatype == "BYTES" && preprocess.is_some();
    let fits = if bytes_for_preprocess {
        shape.len() == 1 || (shape.len() == 2 && shape[1] == 1)
    } else {
        datatype == meta.datatype
            && shape.len() == meta.shape.len()
            && shape
                .iter()
                .zip(&meta.shape)
                .all(|(&g, &m)| m < 0 || g as i64 == m)
    };
    ensure!(
        fits,
        "input '{name}' is {datatype} {shape:?}, but the model expects {expected}"
    );
    let element = if datatype == "BYTES" {
        ElementType::Bytes
    } else {
        ElementType::parse(datatype, name)?
    };
    let mut flat = Vec::new();
    flatten(&tensor["data"], &mut flat);
    let count: usize = shape.iter().product();
    ensure!(
        tensor["data"].is_array() && flat.len() == count,
        "input '{name}': shape {shape:?} holds {count} values, but \"data\" has {}",
        flat.len()
    );
    let mut raw = Vec::new();
    for (i, value) in flat.iter().enumerate() {
        element.push_json(value, &mut raw).map_err(|why| {
            anyhow!("input '{name}' value {i} ({value}): {why} for datatype {datatype}")
        })?;
    }
    Ok(InputTensor {
        name: name.clone(),
        datatype: datatype.to_string(),
        element,
        shape,
        raw,
    })
}

/// Flattens nested JSON lists (row-major).
fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(inputs: &[(&str, &str, &[i64])]) -> ModelMetadata {
        ModelMetadata {
            name: "m".into(),
            versions: vec!["1".into()],
            inputs: inputs
                .iter()
                .map(|(n, d, s)| TensorMetadata {
                    name: (*n).into(),
                    datatype: (*d).into(),
                    shape: s.to_vec(),
                })
                .collect(),
            outputs: Vec::new(),
        }
    }

    fn preprocessing(pairs: &[(&str, &str)]) -> Preprocessing {
        Preprocessing {
            inputs: pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            features: None,
        }
    }

    fn png(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        image::RgbImage::from_pixel(8, 6, image::Rgb([10, 200, 30]))
            .save(&path)
            .unwrap();
        path
    }

    #[test]
    fn images_become_rotating_bytes_requests() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.png", "b.png", "c.png"] {
            png(dir.path(), name);
        }
        let m = model(&[("x", "FP32", &[-1, 24, 24, 3])]);
        let pre = preprocessing(&[("x", "cifar10_image")]);
        let requests = load(dir.path(), &m, &pre, Protocol::HttpBinary, 2).unwrap();
        assert_eq!(requests.len(), 2, "3 images in batches of 2: 2 requests");
        let first: Vec<&[u8]> = bytes_elements(&requests[0].tensors[0].raw).collect();
        let second: Vec<&[u8]> = bytes_elements(&requests[1].tensors[0].raw).collect();
        let c = std::fs::read(dir.path().join("c.png")).unwrap();
        let a = std::fs::read(dir.path().join("a.png")).unwrap();
        assert_eq!(second, [c.as_slice(), a.as_slice()], "wraps around");
        assert_eq!(first.len(), 2);
        assert_eq!(requests[0].tensors[0].shape, vec![2]);
        assert_eq!(
            (requests[0].rows, requests[0].tensors[0].datatype.as_str()),
            (2, "BYTES")
        );

        let list = dir.path().join("list.txt");
        std::fs::write(&list, "# two images\nb.png\n\nc.png\n").unwrap();
        let requests = load(&list, &m, &pre, Protocol::TfRest, 1).unwrap();
        assert_eq!(requests.len(), 2);
        let body: Value =
            serde_json::from_slice(&crate::payload::encode_tf_rest(&requests[0].tensors).body)
                .unwrap();
        assert!(body["instances"][0]["b64"].is_string(), "{body}");
    }

    #[test]
    fn bad_images_and_models_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let good = png(dir.path(), "good.png");
        let m = model(&[("x", "FP32", &[-1, 24, 24, 3])]);
        let pre = preprocessing(&[("x", "cifar10_image")]);
        let broken = dir.path().join("broken.jpg");
        let mut bytes = std::fs::read(&good).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&broken, &bytes).unwrap();
        let e = format!(
            "{:#}",
            load(dir.path(), &m, &pre, Protocol::HttpBinary, 1).unwrap_err()
        );
        assert!(e.contains("broken.jpg") && e.contains("JPEG or PNG"), "{e}");
        std::fs::remove_file(&broken).unwrap();
        std::fs::write(dir.path().join("notes.md"), "x").unwrap();
        let e = format!(
            "{:#}",
            load(dir.path(), &m, &pre, Protocol::HttpBinary, 1).unwrap_err()
        );
        assert!(e.contains("notes.md"), "{e}");

        let ids = model(&[("ids", "INT64", &[-1, 39])]);
        let e = format!(
            "{:#}",
            load(
                &good,
                &ids,
                &preprocessing(&[("ids", "criteo_rows")]),
                Protocol::HttpBinary,
                1
            )
            .unwrap_err()
        );
        assert!(
            e.contains("good.png")
                && e.contains("no input that takes images")
                && e.contains("ids INT64"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            load(&good, &m, &Preprocessing::default(), Protocol::Grpc, 1).unwrap_err()
        );
        assert!(e.contains("cifar10_image"), "{e}");
        let e = format!(
            "{:#}",
            load(&good, &m, &pre, Protocol::HttpJson, 1).unwrap_err()
        );
        assert!(e.contains("http-json") && e.contains("http-binary"), "{e}");
        let e = format!(
            "{:#}",
            load(&dir.path().join("x.csv"), &m, &pre, Protocol::HttpBinary, 1).unwrap_err()
        );
        assert!(e.contains("x.csv"), "{e}");
        std::fs::write(dir.path().join("x.csv"), "1,2").unwrap();
        let e = format!(
            "{:#}",
            load(&dir.path().join("x.csv"), &m, &pre, Protocol::HttpBinary, 1).unwrap_err()
        );
        assert!(e.contains("not a kind of sample"), "{e}");
    }

    #[test]
    fn json_tensors_are_checked_against_the_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.json");
        let m = model(&[("x", "FP32", &[-1, 2]), ("k", "INT64", &[-1, 1])]);
        let pre = Preprocessing::default();
        let write = |v: Value| std::fs::write(&file, v.to_string()).unwrap();
        write(json!({"inputs": [
            {"name": "k", "datatype": "INT64", "shape": [2, 1], "data": [7, -1]},
            {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[0.5, 1], [2, 3]]},
        ]}));
        let requests = load(&file, &m, &pre, Protocol::HttpJson, 1).unwrap();
        let r = &requests[0];
        assert_eq!(
            (r.rows, r.tensors[0].name.as_str()),
            (2, "x"),
            "metadata order"
        );
        assert_eq!(r.tensors[0].raw[..4], 0.5f32.to_le_bytes());
        assert_eq!(r.tensors[1].raw[8..], (-1i64).to_le_bytes());

        let cases = [
            (
                json!({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [1, 2]},
                                {"name": "k", "datatype": "INT64", "shape": [1, 1], "data": [1]}]}),
                "is FP64 [1, 2], but the model expects FP32 [-1, 2]",
            ),
            (
                json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]},
                                {"name": "k", "datatype": "INT64", "shape": [1, 1], "data": [1]}]}),
                "expects FP32 [-1, 2]",
            ),
            (
                json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1]},
                                {"name": "k", "datatype": "INT64", "shape": [1, 1], "data": [1]}]}),
                "holds 2 values, but \"data\" has 1",
            ),
            (
                json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}),
                "no tensor for input 'k'",
            ),
            (
                json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]},
                                {"name": "k", "datatype": "INT64", "shape": [1, 1], "data": [1.5]}]}),
                "value 0 (1.5)",
            ),
            (
                json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]},
                                {"name": "k", "datatype": "INT64", "shape": [1, 1], "data": [1]},
                                {"name": "z", "datatype": "INT64", "shape": [1], "data": [1]}]}),
                "no input \"z\"",
            ),
            (json!([]), "empty array"),
        ];
        for (value, want) in cases {
            write(value.clone());
            let e = format!(
                "{:#}",
                load(&file, &m, &pre, Protocol::HttpBinary, 1).unwrap_err()
            );
            assert!(e.contains("t.json") && e.contains(want), "{value}: {e}");
        }
        write(json!({"inputs": []}));
        let e = format!(
            "{:#}",
            load(&file, &m, &pre, Protocol::HttpBinary, 4).unwrap_err()
        );
        assert!(e.contains("--batch 4"), "{e}");
    }

    #[test]
    fn preprocessing_comes_from_config_parameters() {
        let p = Preprocessing::from_parameters(
            [
                ("preprocess.images", "inception_image"),
                ("features.toml", "x"),
                ("other", "y"),
            ]
            .into_iter(),
        );
        assert_eq!(p.inputs["images"], "inception_image");
        assert_eq!((p.inputs.len(), p.features.as_deref()), (1, Some("x")));
    }
}

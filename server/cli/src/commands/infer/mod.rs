//! `spindle infer`: a one-line way for a person to try a server: send an image, a JSON tensor
//! or TSV rows, print the answer.

mod repeat;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use spindle_client::{Client, InferRequest, Protocol};
use spindle_core::dtype::DataType;
use spindle_core::tensor::{Tensor, TensorData};
use spindle_deploy::BuildFromYarn;
use std::path::PathBuf;
use std::time::Duration;

/// `spindle infer`.
#[derive(Args, Debug)]
pub struct InferArgs {
    /// Server URL(s), comma separated: http://HOST:PORT (KServe v2 HTTP) or grpc://HOST:PORT;
    /// https:// and grpcs:// with --ca-cert.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8000")]
    pub url: Vec<String>,
    /// TLS and token options.
    #[command(flatten)]
    pub security: spindle_client::ClientSecurityArgs,
    /// Find the servers through YARN instead: the READY containers of the service at
    /// http://RM_HOST:PORT/SERVICE (deployed with `spindle yarn deploy`).
    #[arg(long, conflicts_with = "url")]
    pub yarn_service: Option<String>,
    /// User for the ResourceManager's simple authentication (user.name).
    #[arg(long, requires = "yarn_service")]
    pub yarn_user: Option<String>,
    /// Model name.
    #[arg(long)]
    pub model: String,
    /// Model version (default: the newest ready one).
    #[arg(long)]
    pub model_version: Option<String>,
    /// Encoded JPEG or PNG files, one batch row each (for models that take images).
    #[arg(long, num_args = 1.., conflicts_with_all = ["json", "tsv"])]
    pub image: Vec<PathBuf>,
    /// A JSON file ('-' for stdin) holding KServe v2 inputs: one tensor
    /// {"name", "shape", "datatype", "data"} or a list of them.
    #[arg(long, conflicts_with = "tsv")]
    pub json: Option<PathBuf>,
    /// A text file of TSV rows ('-' for stdin), sent as one BYTES row each (raw-row models).
    #[arg(long)]
    pub tsv: Option<PathBuf>,
    /// Ask for the top K classes of the first output (with labels when the model has them).
    #[arg(long)]
    pub top: Option<usize>,
    /// Per-attempt timeout, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = spindle_core::config::parse_duration)]
    pub timeout: Duration,
    /// Keep sending the request for this long from --callers loops sharing one client, then
    /// print what the callers saw (requests, failures, versions, latencies, per second) as
    /// JSON; exits non-zero if any request failed. A deployment check, not a benchmark.
    #[arg(long, value_parser = spindle_core::config::parse_duration, conflicts_with = "top")]
    pub repeat_for: Option<Duration>,
    /// Concurrent callers with --repeat-for.
    #[arg(long, default_value_t = 1, requires = "repeat_for", value_parser = clap::value_parser!(u16).range(1..))]
    pub callers: u16,
    /// How often the READY containers are listed again with --yarn-service.
    #[arg(long, default_value = "10s", requires = "yarn_service", value_parser = spindle_core::config::parse_duration)]
    pub yarn_refresh: Duration,
    /// With --yarn-service: how long a request waits for a replica when none can be reached
    /// (the service stopped and starting again, restarting, flexed to 0), asking the
    /// ResourceManager again meanwhile, before it fails with the service's state. 0 fails at
    /// once. Errors answered by a replica are retried as usual, not waited for.
    #[arg(long, default_value = "30s", requires = "yarn_service", value_parser = spindle_core::config::parse_duration)]
    pub wait_for_replica: Duration,
}

fn read_input(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading stdin")?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn json_tensor(v: &Value) -> anyhow::Result<(String, Tensor)> {
    let name = v["name"].as_str().context("each tensor needs a \"name\"")?;
    let dtype: DataType = v["datatype"]
        .as_str()
        .with_context(|| format!("tensor '{name}' needs a \"datatype\" such as \"FP32\""))?
        .parse()
        .map_err(|e| anyhow::anyhow!("tensor '{name}': {e}"))?;
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .with_context(|| format!("tensor '{name}' needs a \"shape\" list"))?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize))
        .collect::<Option<_>>()
        .with_context(|| format!("tensor '{name}': shape entries must be whole numbers"))?;
    let flat = spindle_core::tensor::json_leaves(&v["data"]);
    let bad = |i: usize| anyhow::anyhow!("tensor '{name}': element {i} is not a valid {dtype}");
    let num = |i: usize, v: &Value| v.as_f64().ok_or_else(|| bad(i));
    let int = |i: usize, v: &Value| v.as_i64().ok_or_else(|| bad(i));
    let data = match dtype {
        DataType::F32 => TensorData::F32(
            flat.iter()
                .enumerate()
                .map(|(i, v)| num(i, v).map(|x| x as f32))
                .collect::<Result<_, _>>()?,
        ),
        DataType::F64 => TensorData::F64(
            flat.iter()
                .enumerate()
                .map(|(i, v)| num(i, v))
                .collect::<Result<_, _>>()?,
        ),
        DataType::I64 => TensorData::I64(
            flat.iter()
                .enumerate()
                .map(|(i, v)| int(i, v))
                .collect::<Result<_, _>>()?,
        ),
        DataType::I32 => TensorData::I32(
            flat.iter()
                .enumerate()
                .map(|(i, v)| int(i, v).map(|x| x as i32))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Bytes => TensorData::Bytes(
            flat.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(|s| s.as_bytes().to_vec())
                        .ok_or_else(|| bad(i))
                })
                .collect::<Result<_, _>>()?,
        ),
        other => bail!(
            "tensor '{name}': {other} is not supported by --json; use FP32, FP64, INT64, INT32 or BYTES"
        ),
    };
    let tensor = Tensor::new(shape, data).map_err(|e| anyhow::anyhow!("tensor '{name}': {e}"))?;
    Ok((name.to_string(), tensor))
}

/// Runs `spindle infer`.
pub async fn run(args: InferArgs) -> anyhow::Result<()> {
    let builder = Client::builder(args.url.clone())
        .protocol(Protocol::Http)
        .timeout(args.timeout)
        .security(args.security.load()?);
    let client = match &args.yarn_service {
        Some(service) => {
            builder
                .build_yarn_service(
                    service,
                    args.yarn_user.clone(),
                    args.yarn_refresh,
                    args.wait_for_replica,
                )
                .await?
        }
        None => builder.build()?,
    };
    let metadata = client
        .model_metadata(&args.model)
        .await
        .with_context(|| format!("asking for model '{}'", args.model))?;
    let first_input = metadata
        .inputs
        .first()
        .context("the model lists no inputs")?
        .name
        .clone();
    let mut request = InferRequest::new(&args.model);
    if let Some(v) = &args.model_version {
        request = request.version(v.clone());
    }
    let mut row_names: Vec<String> = Vec::new();
    if !args.image.is_empty() {
        let mut elements = Vec::new();
        for path in &args.image {
            elements.push(read_input(path)?);
            row_names.push(path.display().to_string());
        }
        let n = elements.len();
        request = request.input(
            first_input,
            Tensor::new(vec![n], TensorData::Bytes(elements))?,
        );
    } else if let Some(path) = &args.tsv {
        let text = read_input(path)?;
        let rows: Vec<Vec<u8>> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
            .collect();
        if rows.is_empty() {
            bail!("{}: no rows", path.display());
        }
        let n = rows.len();
        request = request.input(first_input, Tensor::new(vec![n], TensorData::Bytes(rows))?);
    } else if let Some(path) = &args.json {
        let value: Value = serde_json::from_slice(&read_input(path)?)
            .with_context(|| format!("{}: not JSON", path.display()))?;
        let list = match &value {
            Value::Array(items) => items.clone(),
            Value::Object(o) if o.contains_key("inputs") => {
                o["inputs"].as_array().cloned().unwrap_or_default()
            }
            other => vec![other.clone()],
        };
        for item in &list {
            let (name, tensor) = json_tensor(item).with_context(|| path.display().to_string())?;
            request = request.input(name, tensor);
        }
    } else {
        bail!("nothing to send: give --image FILE..., --json FILE or --tsv FILE");
    }
    if let Some(k) = args.top {
        let output = metadata
            .outputs
            .first()
            .context("the model lists no outputs")?;
        request = request.output(output.name.clone(), Some(k));
    }
    if let Some(duration) = args.repeat_for {
        let callers = usize::from(args.callers);
        let seen = repeat::repeat(&client, &request, duration, callers).await;
        println!("{seen}");
        let failed = seen["failed"].as_u64().unwrap_or_default();
        if failed > 0 {
            bail!(
                "{failed} of {} requests failed; first errors: {}",
                seen["requests"],
                seen["errors"]
            );
        }
        return Ok(());
    }
    let answer = client.infer(&request).await?;
    if args.top.is_some() {
        let tensor = &answer.outputs[0].tensor;
        let TensorData::Bytes(entries) = &tensor.data else {
            bail!("the server did not return classification strings");
        };
        let per_row = tensor.shape.last().copied().unwrap_or(1).max(1);
        for (row, chunk) in entries.chunks(per_row).enumerate() {
            let name = row_names
                .get(row)
                .cloned()
                .unwrap_or_else(|| format!("row {row}"));
            let classes: Vec<String> = chunk
                .iter()
                .map(|e| {
                    let text = String::from_utf8_lossy(e);
                    let mut parts = text.splitn(3, ':');
                    let score = parts.next().unwrap_or_default();
                    let index = parts.next().unwrap_or_default();
                    match parts.next() {
                        Some(label) => format!("{label} ({score})"),
                        None => format!("class {index} ({score})"),
                    }
                })
                .collect();
            println!("{name}: {}", classes.join(", "));
        }
        return Ok(());
    }
    let outputs: Vec<Value> = answer
        .outputs
        .iter()
        .map(|o| {
            let data = match &o.tensor.data {
                TensorData::F32(v) => json!(v),
                TensorData::F64(v) => json!(v),
                TensorData::I64(v) => json!(v),
                TensorData::I32(v) => json!(v),
                TensorData::I16(v) => json!(v),
                TensorData::I8(v) => json!(v),
                TensorData::U8(v) => json!(v),
                TensorData::Bool(v) => json!(v),
                TensorData::Bytes(v) => json!(v.iter().map(|b| String::from_utf8_lossy(b)).collect::<Vec<_>>()),
            };
            json!({"name": o.name, "datatype": o.tensor.dtype().name(), "shape": o.tensor.shape, "data": data})
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "model_name": answer.model,
            "model_version": answer.version,
            "outputs": outputs,
        }))?
    );
    Ok(())
}

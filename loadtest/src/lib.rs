//! Spindle's load generator: closed-loop concurrency sweeps and open-loop request rates against KServe v2 servers (HTTP with
//! binary or JSON tensors, gRPC) and TF Serving REST, with HDR latency histograms (the start of
//! a perf_analyzer-class tool).
//!
//! A run flows through the modules in this order:
//!
//! - [`args`]: the `spindle loadtest` flags ([`LoadtestArgs`]); [`concurrency`] and [`rates`]
//!   parse the level lists and ranges, and [`options`] holds the plain values the other
//!   modules take (protocol, arrivals, shapes, each level's [`Load`]).
//! - [`target`]: each `--url`, resolved once; opens keep-alive HTTP/1 connections (TCP_NODELAY).
//! - [`metadata`]: `GET /v2/models/{model}` on every target before any load, so an unreachable
//!   server or unknown model fails fast with the server's message.
//! - [`tensors`]: concrete input shapes and deterministic pseudo-random values, per datatype
//!   as [`element`] defines them, ids of transformed Criteo rows from each feature's slice
//!   ([`id_slices`], from the server's model configuration or `--features`); or [`samples`]: real images, Criteo rows or JSON tensors
//!   from `--input-data`, checked against the model's metadata and configuration. Either way
//!   the result is [`inputs`]: each request's tensors as little-endian bytes.
//! - [`payload`]: the HTTP request, encoded once (binary tensor extension, JSON, or TF
//!   Serving rows; request line and headers included) and shared by every request as `Bytes`; [`grpc`] prepares `ModelInfer`
//!   messages and fetches metadata over gRPC.
//! - [`level`]: one concurrency level: spawns the workers, warms up, measures windows until three
//!   agree on throughput (or `--max-windows`, or `--max-requests`).
//! - [`worker`]: a closed loop on one connection: send, read, classify, record, repeat; HTTP
//!   requests go through [`http1`], a lean client that writes each pre-encoded request in one
//!   buffer and reads the answer into a reused one.
//! - [`tally`]: per-worker counts, error classes and the latency histogram, merged per window.
//! - [`open_loop`]: one `--rate` level: a dispatcher thread sends on schedule (constant or
//!   Poisson gaps from [`rates`]) within `--max-in-flight`, counting late requests.
//! - [`server_stats`]: the servers' Triton statistics, read before and after each level; their
//!   deltas fill the server queue and compute columns (response headers when unavailable).
//! - [`report`]: [`Report`] and [`LevelResult`], the console table, CSV and JSON output;
//!   [`chart`] draws throughput and latency against the levels as SVG.
//!
//! Closed-loop workers run on `--threads` threads of their own, each a single-threaded tokio
//! runtime (the caller's runtime only coordinates); each worker owns its connection and its
//! tally, so the only shared state on the hot path is a stop flag and the optional request
//! budget.
//!
//! Imports point one way, so each module can be read (and tested) knowing only those above it.
//! Each line uses only lines above it; the first imports nothing from the crate:
//!
//! 1. [`options`], [`element`], [`tally`], [`target`], [`http1`], [`id_slices`], `range` (the
//!    level-list syntax).
//! 2. [`concurrency`], [`rates`] (range); [`inputs`] (element); [`metadata`] (target).
//! 3. [`args`] (options, concurrency, rates); [`tensors`]; [`payload`] (http1); [`grpc`] (inputs,
//!    metadata, tally).
//! 4. [`samples`] (grpc, metadata, inputs); [`server_stats`] (grpc, metadata); [`worker`]
//!    (grpc, http1, payload, tally).
//! 5. [`report`] (server_stats, tally; not args); [`level`] (report, server_stats, worker).
//! 6. [`open_loop`] (level, rates); [`chart`] (report).
//! 7. [`run`], here: the only code that reads [`LoadtestArgs`] beyond parsing it.

pub mod args;
pub mod chart;
pub mod concurrency;
pub mod element;
pub mod grpc;
pub mod http1;
pub mod id_slices;
pub mod inputs;
pub mod level;
pub mod metadata;
pub mod open_loop;
pub mod options;
pub mod payload;
mod range;
pub mod rates;
pub mod report;
pub mod samples;
pub mod server_stats;
pub mod tally;
pub mod target;
pub mod tensors;
pub mod worker;

pub use args::LoadtestArgs;
pub use concurrency::ConcurrencyLevels;
pub use options::{Arrivals, Load, Protocol, ShapeOverride};
pub use rates::RateLevels;
pub use report::{LevelResult, Report, WindowResult};
pub use tally::ErrorCounts;

use anyhow::{Context, bail, ensure};
use id_slices::{CRITEO_ROWS, IdSlices};
use inputs::{GeneratedInputs, InputTensor};
use level::{LevelSettings, Targets};
use metadata::ModelMetadata;
use payload::RequestTemplate;
use samples::SampleSource;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::Arc;
use target::Target;
use worker::Template;

/// Runs the sweep: checks every target, then measures each concurrency level in turn, printing
/// progress and a final table; writes `--csv` and `--json` when asked. A level whose every
/// request failed ends the sweep, and the run is an error that says so (after the files are
/// written).
pub async fn run(args: LoadtestArgs) -> anyhow::Result<Report> {
    args.validate()?;
    // Open the output files first, so an unwritable path fails before minutes of load.
    let csv = args
        .csv
        .as_ref()
        .map(|p| File::create(p).with_context(|| format!("cannot create {}", p.display())))
        .transpose()?;
    let chart = args
        .chart
        .as_ref()
        .map(|p| File::create(p).with_context(|| format!("cannot create {}", p.display())))
        .transpose()?;
    let json = args
        .json
        .as_ref()
        .map(|p| File::create(p).with_context(|| format!("cannot create {}", p.display())))
        .transpose()?;

    let credentials = args.security.load()?.load()?;
    let mut servers = Vec::with_capacity(args.url.len());
    let mut described_models = Vec::with_capacity(args.url.len());
    for url in &args.url {
        let target = Target::resolve(url, &credentials).await?;
        let version = args.model_version.as_deref();
        described_models.push(match args.protocol {
            Protocol::Grpc => {
                grpc::fetch_metadata(&target, &args.model, version, args.timeout).await?
            }
            _ => metadata::fetch(&target, &args.model, version, args.timeout).await?,
        });
        servers.push(target);
    }
    metadata::check_consistent(&servers, &described_models)?;
    let model = &described_models[0];
    let requests = request_inputs(&args, &servers[0], model).await?;
    let inputs = &requests[0];
    let outputs: Vec<String> = model.outputs.iter().map(|o| o.name.clone()).collect();
    let payloads: Vec<payload::Payload> = requests
        .iter()
        .map(|r| payload::encode(args.protocol, &r.tensors, &outputs))
        .collect();
    let payload = &payloads[0];
    let version = args.model_version.as_deref();
    let infer_path = match args.protocol {
        Protocol::TfRest => match version {
            Some(v) => format!("/v1/models/{}/versions/{v}:predict", args.model),
            None => format!("/v1/models/{}:predict", args.model),
        },
        _ => format!("{}/infer", metadata::model_path(&args.model, version)),
    };
    let templates = servers
        .iter()
        .map(|s| match args.protocol {
            Protocol::Grpc => {
                let inputs: Vec<&[InputTensor]> =
                    requests.iter().map(|r| r.tensors.as_slice()).collect();
                grpc::GrpcTemplate::rotating(s, &args.model, version, &inputs)
                    .map(|t| Template::Grpc(Arc::new(t)))
            }
            _ => RequestTemplate::rotating(s, &infer_path, &payloads)
                .map(|t| Template::Http(Arc::new(t))),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let targets = Targets {
        servers: servers.into_iter().map(Arc::new).collect(),
        templates,
    };

    let described: Vec<String> = inputs
        .tensors
        .iter()
        .map(|t| format!("{} {} {:?}", t.name, t.datatype, t.shape))
        .collect();
    let samples = match (&args.input_data, requests.len()) {
        (Some(path), n) => format!(" from {} ({n} distinct requests)", path.display()),
        (None, _) => String::new(),
    };
    println!(
        "Load test of model '{}' on {} ({}, {} bytes per request; inputs{samples}: {})",
        args.model,
        args.url.join(", "),
        args.protocol,
        payload.body.len(),
        described.join(", ")
    );
    let settings = LevelSettings {
        warmup: args.warmup,
        window: args.window,
        max_windows: args.max_windows,
        stability: args.stability,
        max_requests: args.max_requests,
        timeout: args.timeout,
        threads: args.threads,
        rows: inputs.rows,
        verbose: args.verbose,
        stats: None,
    };
    // Read the statistics once up front: a server without them (not Spindle or Triton) gets the
    // header-based columns, and the user is told which they are looking at.
    let probe = server_stats::StatsProbe::new(
        targets.servers.clone(),
        args.protocol,
        &args.model,
        version,
        args.timeout,
    );
    let settings = match probe.read().await {
        Ok(_) => LevelSettings {
            stats: Some(Arc::new(probe)),
            ..settings
        },
        Err(e) => {
            println!(
                "Server statistics are unavailable ({e:#}); the server queue and compute columns come from x-spindle-* response headers instead"
            );
            settings
        }
    };
    let loads = args.loads();
    println!("{}", report::table_header(args.rate.is_some()));
    let mut levels = Vec::with_capacity(loads.len());
    let mut failed = None;
    for load in loads {
        let level = match load {
            Load::Concurrency(c) => level::run_level(c, &targets, &settings).await,
            Load::Rate { .. } => open_loop::run_rate_level(load, &targets, &settings).await,
        };
        println!("{}", report::table_row(&level));
        // A level whose every request was refused would have the next ones refused too: stop,
        // and fail the run after writing what was measured (the first error is the diagnosis).
        failed = report::all_failed(&level);
        levels.push(level);
        if failed.is_some() {
            break;
        }
    }

    let report = Report {
        model: args.model.clone(),
        model_version: args.model_version.clone(),
        urls: targets.servers.iter().map(|s| s.url.clone()).collect(),
        protocol: args.protocol,
        rows_per_request: inputs.rows,
        levels,
    };
    println!();
    if let Some(failed) = &failed {
        println!("FAILED: {failed}");
    }
    report::print_table(&report);
    if let (Some(file), Some(path)) = (csv, &args.csv) {
        let mut out = BufWriter::new(file);
        report::write_csv(&report, &mut out)
            .and_then(|()| out.flush())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let (Some(file), Some(path)) = (json, &args.json) {
        let mut out = BufWriter::new(file);
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)
            .and_then(|()| out.flush())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let (Some(file), Some(path)) = (chart, &args.chart) {
        let mut out = BufWriter::new(file);
        out.write_all(chart::render(&report).as_bytes())
            .and_then(|()| out.flush())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(failed) = failed {
        bail!(
            "model '{}' on {}: {failed}",
            report.model,
            report.urls.join(", ")
        );
    }
    Ok(report)
}

/// The inputs of the requests to send: generated from the metadata, or read from
/// `--input-data` (whose preprocessing is looked up on `target` first).
async fn request_inputs(
    args: &LoadtestArgs,
    target: &Target,
    model: &ModelMetadata,
) -> anyhow::Result<Vec<GeneratedInputs>> {
    let Some(path) = &args.input_data else {
        let ids = generated_id_slices(args, target, model).await?;
        if let Some(ids) = &ids {
            println!(
                "Input '{}': each position's ids drawn from its feature's slice of the id space ({} features, features.toml from {})",
                ids.input,
                ids.fields.len(),
                ids.source
            );
        }
        let inputs = tensors::generate(&model.inputs, args.batch, &args.shape, ids.as_ref())
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
        samples::fetch_preprocessing(target, args.protocol, &args.model, version, args.timeout);
    let preprocessing = match SampleSource::of(path)? {
        SampleSource::Json(_) => preprocessing.await.unwrap_or_default(),
        _ => preprocessing.await?,
    };
    samples::load(path, model, &preprocessing, args.protocol, args.batch)
}

/// For generated inputs of a model with INT64 inputs: the id slices of the input that takes
/// transformed Criteo rows, from `--features` or else the server's model configuration. `None`
/// when neither describes one (plain integer inputs then get small values, see
/// [`element::ElementType`]).
async fn generated_id_slices(
    args: &LoadtestArgs,
    target: &Target,
    model: &ModelMetadata,
) -> anyhow::Result<Option<IdSlices>> {
    let int64: Vec<&str> = model
        .inputs
        .iter()
        .filter(|i| i.datatype == "INT64")
        .map(|i| i.name.as_str())
        .collect();
    if int64.is_empty() {
        if let Some(path) = &args.features {
            bail!(
                "--features {}: model '{}' has no INT64 input to take ids",
                path.display(),
                args.model
            );
        }
        return Ok(None);
    }
    let version = args.model_version.as_deref();
    // A server that is not Spindle (MLServer, Ray Serve) has no model configuration: then
    // only --features says where ids belong.
    let described =
        samples::fetch_preprocessing(target, args.protocol, &args.model, version, args.timeout)
            .await;
    let (declared, server_features) = match &described {
        Ok(p) => (
            p.inputs
                .iter()
                .find(|(_, pre)| pre.as_str() == CRITEO_ROWS)
                .map(|(input, _)| input.clone()),
            p.features.clone(),
        ),
        Err(_) => (None, None),
    };
    let Some(path) = &args.features else {
        return match (declared, server_features, described) {
            (Some(input), Some(text), _) => {
                IdSlices::from_features(&text, &input, "the server's model configuration").map(Some)
            }
            (_, _, Err(e)) => {
                println!(
                    "Note: {} does not describe model '{}' ({e:#}), so INT64 inputs get values 0..=100; if they are ids checked per feature, give the model's --features FEATURES.toml",
                    target.url, args.model
                );
                Ok(None)
            }
            _ => Ok(None),
        };
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--features {}: cannot read it", path.display()))?;
    let input = match (declared, int64.as_slice()) {
        (Some(input), _) => input,
        (None, [only]) => only.to_string(),
        (None, several) => bail!(
            "--features {}: model '{}' has several INT64 inputs ({}) and the server does not say which takes the ids",
            path.display(),
            args.model,
            several.join(", ")
        ),
    };
    if server_features.is_some_and(|served| served != text) {
        println!(
            "Note: --features {} differs from the features.toml {} serves; ids follow --features, and the server refuses those outside its own slices",
            path.display(),
            target.url
        );
    }
    IdSlices::from_features(&text, &input, &format!("--features {}", path.display())).map(Some)
}

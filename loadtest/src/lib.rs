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
//!   as [`element`] defines them; or [`samples`]: real images, Criteo rows or JSON tensors
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
//! 1. [`options`], [`element`], [`tally`], [`target`], [`http1`], `range` (the level-list
//!    syntax).
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

use anyhow::{Context, ensure};
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
/// progress and a final table; writes `--csv` and `--json` when asked.
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
    for load in loads {
        let level = match load {
            Load::Concurrency(c) => level::run_level(c, &targets, &settings).await,
            Load::Rate { .. } => open_loop::run_rate_level(load, &targets, &settings).await,
        };
        println!("{}", report::table_row(&level));
        levels.push(level);
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
        let inputs = tensors::generate(&model.inputs, args.batch, &args.shape)
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

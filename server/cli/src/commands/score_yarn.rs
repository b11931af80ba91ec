//! `spindle score --yarn RM --executors N`: images or Criteo rows scored as a YARN job, the way
//! the seed ran `spark-submit --master yarn --num-executors N`.
//!
//! The job is a YARN service (YARN Services REST API) with one component of N containers that
//! run once (restart policy NEVER). Each container unpacks the same tarball `spindle yarn
//! deploy` uploads (this binary and the ONNX Runtime library) and runs `spindle score --local
//! --executor I/N` on its share of the shards, writing parts into the HDFS output directory and
//! its summary to `_summary/executor-I.json`. This command follows the parts and the
//! containers, merges the executors' summaries, writes `_SUCCESS` when every shard is scored,
//! and destroys the service and removes the tarball however the job ended. An executor that
//! ends without a summary (killed, out of memory, lost with its node) is named with the shards
//! of its share that have no part, and the job fails. A rerun scores only the shards whose part
//! is missing; when none is, it submits nothing. With `--server` or `--yarn-service` the
//! executors run `spindle score --server` instead, sending their batches to those servers,
//! with the client TLS files and token localized into each container.

use super::{ScoreArgs, outcome, print_image_summary, print_score_summary, write_summary};
use anyhow::Context;
use clap::Args;
use spindle_core::UsageError;
use spindle_core::engine::EngineChoice;
use spindle_deploy::yarn::package;
use spindle_deploy::yarn::rm::{ContainerInstance, ResourceManager, YarnError};
use spindle_deploy::yarn::spec;
use spindle_deploy::yarn::tls::ContainerFiles;
use spindle_score::ScoreSummary;
use spindle_score::images::InputFormat;
use spindle_score::images::input::{Io, expand};
use spindle_score::images::job::{ImageSummary, part_names};
use spindle_score::images::output::{Output, SUMMARY_DIR, Share, executor_summary};
use std::time::{Duration, Instant};

/// The component whose containers are the executors: `score-0`, `score-1`, ...
const COMPONENT: &str = "score";
/// How often the job's progress is polled.
const POLL: Duration = Duration::from_secs(1);
/// Container states after which a run-once container does nothing more.
const FINISHED: [&str; 3] = ["SUCCEEDED", "FAILED", "STOPPED"];

/// `spindle score --yarn ...`: where the executors run.
#[derive(Args, Debug)]
pub struct YarnJobArgs {
    /// Score as a YARN job: ResourceManager web address (http://rm:8088). Needs --input and
    /// --output on HDFS; each executor runs the model in-process in its container (from
    /// --repo, on HDFS), or, with --server or --yarn-service, sends its batches to those
    /// servers. Their --ca-cert, --client-cert, --client-key and --token-file are then URIs
    /// every node can reach: hdfs://nn:port/path (localized into each container) or
    /// file:///path (at that path on every node).
    #[arg(long, value_name = "RM")]
    pub yarn: Option<String>,
    /// --yarn: executors (containers); executor I scores the shards at positions I, I+N, ...
    #[arg(long, default_value_t = 2, allow_negative_numbers = true)]
    pub executors: i64,
    /// --yarn: YARN queue, e.g. CPU_Q.
    #[arg(long)]
    pub queue: Option<String>,
    /// --yarn: node partition (node label) the executors run in, e.g. CPU.
    #[arg(long)]
    pub node_partition: Option<String>,
    /// --yarn and --yarn-service: user for simple authentication (`user.name`) and, with
    /// --yarn, for the executors' HDFS writes; default $HADOOP_USER_NAME, then $USER, then
    /// $LOGNAME.
    #[arg(long)]
    pub yarn_user: Option<String>,
    /// --yarn: vcores per executor; also its preparing threads and engine threads unless
    /// --jobs and --intra-op-threads say otherwise.
    #[arg(long, default_value_t = 2)]
    pub executor_cpus: u32,
    /// --yarn: memory per executor, MB.
    #[arg(long, default_value_t = 2048)]
    pub executor_memory: u64,
    /// --yarn: the service's name (default spindle-score- and six digits of the clock).
    #[arg(long)]
    pub yarn_name: Option<String>,
    /// --yarn: HDFS directory for the tarball (default /user/USER/.spindle on the output's
    /// NameNode); removed after the job.
    #[arg(long)]
    pub staging: Option<String>,
    /// --yarn: give up (and destroy the service) after this long, e.g. 30m.
    #[arg(long, default_value = "24h")]
    pub yarn_timeout: String,
}

/// Runs the job and follows it to the end: images of `format`, or Criteo rows (`None`).
pub fn run(args: &ScoreArgs, format: Option<InputFormat>) -> anyhow::Result<()> {
    let job = &args.yarn_job;
    let rm_url = job.yarn.as_deref().expect("called with --yarn");
    let through_servers = !args.server.is_empty();
    let repo = match (args.repo.as_deref(), through_servers) {
        (Some(repo), false) => Some(("--repo", repo)),
        (None, false) => {
            return Err(UsageError(
                "--yarn: say what the executors score with: --repo hdfs://... (in-process), or --server URL / --yarn-service RM/NAME".into(),
            )
            .into());
        }
        (_, true) => None,
    };
    let locations = [("--input", args.input.as_str()), ("--output", &args.output)];
    for (flag, value) in repo.into_iter().chain(locations) {
        if !spindle_loader::is_hdfs(value) {
            return Err(UsageError(format!(
                "{flag} {value}: the executors run in YARN containers on other nodes and cannot reach a local path; give hdfs://namenode:port/path"
            ))
            .into());
        }
    }
    let usage = |e: spec::SpecError| UsageError(e.to_string());
    let executors = spec::check_replicas("--executors", job.executors, false).map_err(usage)?;
    let timeout = spindle_core::config::parse_duration(&job.yarn_timeout)
        .map_err(|e| UsageError(format!("--yarn-timeout {}: {e}", job.yarn_timeout)))?;
    let name = job.yarn_name.clone().unwrap_or_else(default_name);
    spec::check_name("--yarn-name", &name, spec::MAX_SERVICE_NAME).map_err(usage)?;
    let rm = ResourceManager::new(rm_url, job.yarn_user.clone().or_else(default_user))
        .map_err(|e| UsageError(format!("--yarn: {e}")))?;
    let user = rm.user().unwrap_or("spindle").to_string();

    let io = Io::new()?;
    let shards = expand(&args.input, &io).map_err(|e| UsageError(format!("--input: {e:#}")))?;
    let parts = part_names(&shards);
    let shards: Vec<String> = shards.into_iter().map(|s| s.display).collect();
    let output = Output::open(&args.output, &io)?;
    if count_present(&output, &parts)? == parts.len() {
        output.write(spindle_score::SUCCESS, b"")?;
        println!(
            "{}: all {} parts are complete already; nothing to submit",
            args.output,
            parts.len()
        );
        return Ok(());
    }
    // Summaries of an earlier run would be taken for this one's, and its marker for a
    // complete output.
    output.remove(SUMMARY_DIR)?;
    output.remove(spindle_score::SUCCESS)?;

    let staging = staging_dir(job.staging.as_deref(), &args.output, &user);
    let artifact = format!("{staging}/{}", package::tarball_name(&name));
    let ort = spindle_engine_ort::find_library().ok();
    let ort_name = ort
        .as_deref()
        .and_then(|p| p.file_name())
        .map(|f| f.to_string_lossy().into_owned());
    let service = service_spec(args, format, &name, executors, &artifact, ort_name, &user)?;
    spec::validate(&service).map_err(usage)?;

    let handle = tokio::runtime::Handle::current();
    handle.block_on(rm.version())?;
    if handle.block_on(rm.exists(&name))? {
        return Err(UsageError(format!(
            "--yarn-name {name}: a service of that name exists on {} (choose another, or remove it with `spindle yarn destroy {name} --rm {}`)",
            rm.base(),
            rm.base()
        ))
        .into());
    }
    let tarball = package::build(ort.as_deref()).context("packaging spindle")?;
    handle.block_on(package::upload(&staging, &name, &tarball))?;
    if !args.quiet {
        eprintln!("uploaded {artifact} ({} bytes)", tarball.len());
    }
    let started = Instant::now();
    let submitted = handle.block_on(rm.create(&service));
    let followed = submitted.map_err(anyhow::Error::new).and_then(|()| {
        println!(
            "{name}: {executors} executor(s) submitted to {} over {} shard(s)",
            rm.base(),
            parts.len()
        );
        let follow = Follow {
            rm: &rm,
            name: &name,
            output: &output,
            shards: &shards,
            parts: &parts,
            executors: executors as usize,
            quiet: args.quiet,
        };
        follow.until_done(&handle, started + timeout)
    });
    // However the job went: its containers and tarball are not left behind.
    let destroyed = handle.block_on(rm.destroy(&name));
    let removed = handle.block_on(package::remove(&staging, &name));
    let finished = followed?;
    if let Err(e) = destroyed {
        eprintln!(
            "destroying the service {name} failed: {e}; remove it with `spindle yarn destroy {name} --rm {}`",
            rm.base()
        );
    }
    if let Err(e) = removed {
        eprintln!("removing {artifact} failed: {e:#}; remove it with `hdfs dfs -rm {artifact}`");
    }
    match format {
        Some(_) => conclude::<ImageSummary>(args, &output, &parts, finished, started),
        None => conclude::<ScoreSummary>(args, &output, &parts, finished, started),
    }
}

/// An executor's summary, of an image or a Criteo job.
trait ExecutorSummary: serde::Serialize + serde::de::DeserializeOwned {
    /// What the outcome calls a bad input.
    const BAD: &'static str;
    /// The job's summary from its executors'.
    fn merge(backend: String, executors: &[Self]) -> Self;
    fn print(&self);
    /// Adds shards no executor reported on, and marks the job incomplete.
    fn fail(&mut self, shards: Vec<String>);
    fn stopped(&self) -> bool;
    fn failed(&self) -> usize;
    fn complete(&self) -> bool;
}

/// Both summaries name these fields alike.
macro_rules! executor_summary {
    ($summary:ty, $bad:literal, $merge:path, $print:path) => {
        impl ExecutorSummary for $summary {
            const BAD: &'static str = $bad;
            fn merge(backend: String, executors: &[Self]) -> Self {
                $merge(backend, executors)
            }
            fn print(&self) {
                $print(self);
            }
            fn fail(&mut self, shards: Vec<String>) {
                self.complete = false;
                self.shards_failed.extend(shards);
            }
            fn stopped(&self) -> bool {
                self.stopped_on_errors
            }
            fn failed(&self) -> usize {
                self.shards_failed.len()
            }
            fn complete(&self) -> bool {
                self.complete
            }
        }
    };
}

executor_summary!(
    ImageSummary,
    "bad records",
    spindle_score::images::output::merge_summaries,
    print_image_summary
);
executor_summary!(
    ScoreSummary,
    "malformed rows",
    spindle_score::merge_summaries,
    print_score_summary
);

/// The executors' merged summary, written and judged.
fn conclude<S: ExecutorSummary>(
    args: &ScoreArgs,
    output: &Output,
    parts: &[String],
    finished: Finished,
    started: Instant,
) -> anyhow::Result<()> {
    let mut summaries = Vec::new();
    for (i, bytes) in &finished.summaries {
        let summary: S = serde_json::from_slice(bytes).with_context(|| {
            format!(
                "{} is not an executor summary",
                output.display(&executor_summary(*i))
            )
        })?;
        summaries.push(summary);
    }
    let mut merged = S::merge(
        format!("{} executor(s) on YARN", summaries.len()),
        &summaries,
    );
    let unscored: Vec<String> = finished
        .lost
        .iter()
        .flat_map(|lost| &lost.shards)
        .cloned()
        .collect();
    if !finished.lost.is_empty() {
        merged.fail(unscored);
    }
    merged.print();
    let present = count_present(output, parts)?;
    println!(
        "parts: {present} of {} present; job took {:.1}s from submission",
        parts.len(),
        started.elapsed().as_secs_f64()
    );
    for lost in &finished.lost {
        println!("  failed executor: {}", lost.why);
    }
    let complete = finished.lost.is_empty() && merged.complete() && present == parts.len();
    if !complete {
        merged.fail(Vec::new());
    }
    write_summary(args, &merged)?;
    if complete {
        output.write(spindle_score::SUCCESS, b"")?;
    }
    if !finished.lost.is_empty() {
        anyhow::bail!(
            "{} executor(s) ended without a summary (listed above with the shards they left unscored); the parts finished are kept, and a rerun scores only what is missing",
            finished.lost.len()
        );
    }
    outcome(args, merged.stopped(), merged.failed(), S::BAD)?;
    if !complete {
        anyhow::bail!(
            "{} of {} parts are missing; a rerun scores only those",
            parts.len() - present,
            parts.len()
        );
    }
    Ok(())
}

/// What the executors left.
struct Finished {
    /// Each executor's summary (JSON) that was written, by executor number.
    summaries: Vec<(usize, Vec<u8>)>,
    /// Executors that ended without a summary.
    lost: Vec<Lost>,
}

/// An executor that ended without a summary.
struct Lost {
    /// Which, its container's state and node.
    why: String,
    /// The shards of its share that have no part, each with why.
    shards: Vec<String>,
}

/// Following a submitted job.
struct Follow<'a> {
    rm: &'a ResourceManager,
    name: &'a str,
    output: &'a Output,
    /// Every shard of the job (full paths), in order.
    shards: &'a [String],
    /// Their parts.
    parts: &'a [String],
    executors: usize,
    quiet: bool,
}

impl Follow<'_> {
    /// Polls until every executor has left its summary, or every container has ended, or the
    /// service is gone or finished; prints a line whenever the picture changes.
    fn until_done(
        &self,
        handle: &tokio::runtime::Handle,
        deadline: Instant,
    ) -> anyhow::Result<Finished> {
        let mut last = String::new();
        loop {
            let summaries = self.summaries()?;
            let (state, containers) = match handle.block_on(self.rm.service(self.name)) {
                Ok(service) => containers_of(&service),
                Err(YarnError::NotFound { .. }) => ("GONE".to_string(), Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let done = summaries.iter().flatten().count();
            let ended = containers.len() >= self.executors
                && containers
                    .iter()
                    .all(|c| FINISHED.contains(&c.state.as_deref().unwrap_or("")));
            let over = ["FAILED", "SUCCEEDED", "STOPPED", "GONE"].contains(&state.as_str());
            if done == self.executors || ended || over {
                // An executor writes its summary before it exits: one missing now is lost.
                return self.finish(self.summaries()?, &containers);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the job did not finish within --yarn-timeout ({done} of {} executors done); the service was destroyed",
                    self.executors
                );
            }
            let present = count_present(self.output, self.parts)?;
            let line = format!(
                "service {state}: parts {present}/{}, executors done {done}/{}; {}",
                self.parts.len(),
                self.executors,
                describe(&containers)
            );
            if line != last && !self.quiet {
                println!("{line}");
                last = line;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Each executor's summary (JSON), where it has written one.
    fn summaries(&self) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
        (0..self.executors)
            .map(|i| self.output.read(&executor_summary(i)))
            .collect()
    }

    /// The shards of executor `index`'s share whose part is missing.
    fn unscored(&self, index: usize) -> anyhow::Result<Vec<String>> {
        let share = Share {
            index,
            count: self.executors,
        };
        let mut unscored = Vec::new();
        for (position, (shard, part)) in self.shards.iter().zip(self.parts).enumerate() {
            if share.takes(position) && !self.output.has(part)? {
                unscored.push(format!(
                    "{shard}: executor {index} ended without scoring it"
                ));
            }
        }
        Ok(unscored)
    }

    fn finish(
        &self,
        summaries: Vec<Option<Vec<u8>>>,
        containers: &[ContainerInstance],
    ) -> anyhow::Result<Finished> {
        let mut found = Vec::new();
        let mut lost = Vec::new();
        for (i, summary) in summaries.into_iter().enumerate() {
            match summary {
                Some(s) => found.push((i, s)),
                None => {
                    let instance = format!("{COMPONENT}-{i}");
                    let container = containers
                        .iter()
                        .find(|c| c.component_instance_name == instance);
                    let why = match container {
                        Some(c) => format!(
                            "{i} (container {}, {}, on {}): no {} was written; see the container's log on its NodeManager",
                            c.id,
                            c.state.as_deref().unwrap_or("state unknown"),
                            c.bare_host.as_deref().unwrap_or("an unknown node"),
                            self.output.display(&executor_summary(i)),
                        ),
                        None => format!(
                            "{i}: never got a container (no node of the partition had room, or the service ended first)"
                        ),
                    };
                    let shards = self.unscored(i)?;
                    lost.push(Lost { why, shards });
                }
            }
        }
        Ok(Finished {
            summaries: found,
            lost,
        })
    }
}

/// The service's state and its executors' containers.
fn containers_of(service: &serde_json::Value) -> (String, Vec<ContainerInstance>) {
    let state = service["state"].as_str().unwrap_or("UNKNOWN").to_string();
    let containers = service["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == COMPONENT)
        .flat_map(|c| {
            serde_json::from_value::<Vec<ContainerInstance>>(c["containers"].clone())
                .unwrap_or_default()
        })
        .collect();
    (state, containers)
}

fn describe(containers: &[ContainerInstance]) -> String {
    if containers.is_empty() {
        return "no container yet".into();
    }
    let mut sorted: Vec<_> = containers.iter().collect();
    sorted.sort_by(|a, b| a.component_instance_name.cmp(&b.component_instance_name));
    sorted
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c.component_instance_name,
                c.state.as_deref().unwrap_or("-")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn count_present(output: &Output, parts: &[String]) -> anyhow::Result<usize> {
    let mut present = 0;
    for part in parts {
        present += usize::from(output.has(part)?);
    }
    Ok(present)
}

/// The service: one component of `executors` run-once containers.
fn service_spec(
    args: &ScoreArgs,
    format: Option<InputFormat>,
    name: &str,
    executors: u32,
    artifact: &str,
    ort_library: Option<String>,
    user: &str,
) -> anyhow::Result<serde_json::Value> {
    use serde_json::json;
    let job = &args.yarn_job;
    let mut env = json!({ "HADOOP_USER_NAME": user });
    if let Some(lib) = ort_library {
        env["ORT_DYLIB_PATH"] = json!(format!("lib/{lib}"));
    }
    let mut files = ContainerFiles::default();
    let security = &args.security;
    for (flag, path, name) in [
        ("--ca-cert", &security.ca_cert, "spindle-ca.pem"),
        ("--client-cert", &security.client_cert, "spindle-client.pem"),
        ("--client-key", &security.client_key, "spindle-client.key"),
        ("--token-file", &security.token_file, "spindle-token"),
    ] {
        if let Some(path) = path {
            files
                .add(flag, &path.to_string_lossy(), name)
                .map_err(|e| UsageError(e.to_string()))?;
        }
    }
    let mut component = json!({
        "name": COMPONENT,
        "number_of_containers": executors,
        "artifact": { "id": artifact, "type": "TARBALL" },
        "launch_command": launch_command(args, format, executors)?,
        "resource": { "cpus": job.executor_cpus, "memory": job.executor_memory.to_string() },
        // Run once: a failed executor is reported, not retried behind the user's back; the
        // rerun retries only its missing shards.
        "restart_policy": "NEVER",
        "configuration": { "env": env },
    });
    files.apply_to(&mut component);
    if let Some(partition) = &job.node_partition {
        // Affinity to the partition alone (no tags): any node in it, several executors per node
        // allowed (they bind no port).
        component["placement_policy"] = json!({ "constraints": [{
            "type": "AFFINITY",
            "scope": "NODE",
            "target_tags": [],
            "node_partitions": [partition],
        }]});
    }
    let mut service = json!({
        "name": name,
        "version": env!("CARGO_PKG_VERSION"),
        "description": format!("spindle score: {} over {} into {}", args.model, args.input, args.output),
        "components": [component],
    });
    if let Some(queue) = &job.queue {
        service["queue"] = json!(queue);
    }
    Ok(service)
}

/// The executors' command line. The NodeManager runs it as `bash -c "COMMAND"` after YARN has
/// put the instance's number in place of `${COMPONENT_ID}`; values are single-quoted, so they
/// may hold no quote, `$`, backslash or backquote.
fn launch_command(
    args: &ScoreArgs,
    format: Option<InputFormat>,
    executors: u32,
) -> anyhow::Result<String> {
    let job = &args.yarn_job;
    let engine = match args.engine {
        EngineChoice::Auto => "auto",
        EngineChoice::Ort => "ort",
        EngineChoice::Tract => "tract",
    };
    let servers = args.server.join(",");
    let (mut command, scorer) = if args.server.is_empty() {
        let repo = args.repo.as_deref().unwrap_or_default();
        (
            "exec lib/spindle score --local --quiet".to_string(),
            ("--repo", repo),
        )
    } else {
        // The servers the submitter listed (with --yarn-service, once, as `score` does).
        (
            "exec lib/spindle score --quiet".to_string(),
            ("--server", servers.as_str()),
        )
    };
    for (flag, value) in [
        scorer,
        ("--model", &args.model),
        ("--input", &args.input),
        ("--output", &args.output),
    ] {
        if value.contains(['\'', '"', '$', '\\', '`', '\n']) {
            return Err(UsageError(format!(
                "{flag} {value}: a --yarn job passes it through the container's shell, so it may not hold quotes, $, \\ or `"
            ))
            .into());
        }
        command.push_str(&format!(" {flag} '{value}'"));
    }
    let jobs = args.jobs.unwrap_or(job.executor_cpus as usize);
    let threads = args
        .intra_op_threads
        .unwrap_or((job.executor_cpus as usize / args.engines.unwrap_or(1)).max(1));
    let format = format.map_or_else(|| "criteo".to_string(), |f| f.to_string());
    command.push_str(&format!(
        " --format {format} --top {} --max-errors {} --jobs {jobs} --executor ${{COMPONENT_ID}}/{executors}",
        args.top, args.max_errors
    ));
    if args.server.is_empty() {
        command.push_str(&format!(" --engine {engine} --intra-op-threads {threads}"));
    }
    if let Some(batch) = args.batch {
        command.push_str(&format!(" --batch {batch}"));
    }
    if let Some(engines) = args.engines {
        command.push_str(&format!(" --engines {engines}"));
    }
    Ok(command)
}

/// The tarball's directory: given, or `/user/USER/.spindle` on the output's NameNode.
fn staging_dir(given: Option<&str>, output: &str, user: &str) -> String {
    if let Some(dir) = given {
        return dir.trim_end_matches('/').to_string();
    }
    let (scheme, rest) = output.split_once("://").unwrap_or(("hdfs", output));
    let authority = rest.split('/').next().unwrap_or_default();
    format!("{scheme}://{authority}/user/{user}/.spindle")
}

fn default_user() -> Option<String> {
    spindle_deploy::yarn::rm::default_user()
}

/// `spindle-score-` and six digits of the clock: unique enough for jobs started by hand.
fn default_name() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("spindle-score-{:06}", micros % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn score_args(argv: &[&str]) -> ScoreArgs {
        let full = ["spindle", "score"].iter().chain(argv).copied();
        match crate::Cli::try_parse_from(full)
            .unwrap_or_else(|e| panic!("{e}"))
            .command
        {
            crate::Command::Score(args) => args,
            _ => panic!("not a score command line: {argv:?}"),
        }
    }

    const JOB: [&str; 8] = [
        "--yarn",
        "http://rm:8088",
        "--model",
        "criteo_ctr",
        "--input",
        "hdfs://nn:8020/rows",
        "--output",
        "hdfs://nn:8020/scores",
    ];

    fn spec_of(extra: &[&str]) -> anyhow::Result<serde_json::Value> {
        let args = score_args(&[&JOB[..], extra].concat());
        let spec = service_spec(
            &args,
            None,
            "job",
            2,
            "hdfs://nn:8020/s.tar.gz",
            None,
            "ann",
        )?;
        spec::validate(&spec)?;
        Ok(spec)
    }

    #[test]
    fn executors_through_servers_get_the_client_tls_files_localized() {
        let spec = spec_of(&[
            "--server",
            "https://127.0.0.2:8443,https://127.0.0.4:8443",
            "--ca-cert",
            "hdfs://nn:8020/tls/ca.pem",
            "--client-cert",
            "file:///etc/spindle/client.pem",
            "--client-key",
            "hdfs://nn:8020/tls/client.key",
            "--token-file",
            "hdfs://nn:8020/tls/token",
        ])
        .unwrap();
        let component = &spec["components"][0];
        let launch = component["launch_command"].as_str().unwrap();
        assert!(
            launch.starts_with(
                "exec lib/spindle score --quiet --server 'https://127.0.0.2:8443,https://127.0.0.4:8443' --model 'criteo_ctr'"
            ),
            "{launch}"
        );
        assert!(
            launch.ends_with(
                " --ca-cert spindle-ca.pem --client-cert /etc/spindle/client.pem --client-key spindle-client.key --token-file spindle-token"
            ),
            "{launch}"
        );
        assert!(
            !launch.contains("--repo") && !launch.contains("--engine"),
            "{launch}"
        );
        assert_eq!(
            component["configuration"]["files"],
            serde_json::json!([
                {"type": "STATIC", "src_file": "hdfs://nn:8020/tls/ca.pem", "dest_file": "spindle-ca.pem"},
                {"type": "STATIC", "src_file": "hdfs://nn:8020/tls/client.key", "dest_file": "spindle-client.key"},
                {"type": "STATIC", "src_file": "hdfs://nn:8020/tls/token", "dest_file": "spindle-token"},
            ])
        );
    }

    #[test]
    fn in_process_executors_and_unusable_client_files() {
        let spec = spec_of(&["--repo", "hdfs://nn:8020/models"]).unwrap();
        let launch = spec["components"][0]["launch_command"].as_str().unwrap();
        assert!(
            launch.starts_with(
                "exec lib/spindle score --local --quiet --repo 'hdfs://nn:8020/models'"
            ),
            "{launch}"
        );
        assert!(spec["components"][0]["configuration"]["files"].is_null());
        // A path on the submitting machine: the containers run elsewhere.
        let e = spec_of(&["--server", "https://h:1", "--ca-cert", "/home/ann/ca.pem"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--ca-cert") && e.contains("hdfs://"), "{e}");
    }

    #[test]
    fn staging_defaults_to_the_users_directory_on_the_outputs_namenode() {
        assert_eq!(
            staging_dir(None, "hdfs://nn:8020/data/out", "alice"),
            "hdfs://nn:8020/user/alice/.spindle"
        );
        assert_eq!(
            staging_dir(Some("hdfs://nn:8020/tmp/x/"), "hdfs://other/out", "alice"),
            "hdfs://nn:8020/tmp/x"
        );
    }
}

//! `spindle yarn`: run spindle replicas as a YARN service (Hadoop 3.1+ YARN Services).
//!
//! - [`spec`]: the service specification and its validation against the API's field rules.
//! - [`package`]: the tarball (binary + ONNX Runtime library) and its upload to HDFS.
//! - [`rm`]: the ResourceManager's YARN Services REST client.
//! - this module: the subcommands, on top of [`rm::ResourceManager`].

pub mod package;
pub mod rm;
pub mod spec;
mod spnego;
pub mod tls;

use anyhow::Context;
use clap::{Args, Subcommand};
use rm::{ResourceManager, YarnError};
use spec::{COMPONENT, SpecParams};
use spindle_core::UsageError;

/// `spindle yarn` subcommands.
#[derive(Subcommand, Debug)]
pub enum YarnCommand {
    /// Print the YARN Services specification `deploy` would submit.
    Spec(SpecArgs),
    /// Package spindle, upload it to HDFS and submit the service to the ResourceManager.
    Deploy(DeployArgs),
    /// Set the number of replicas of a running service.
    Flex(FlexArgs),
    /// Show a service's state and its containers (hosts, states).
    Status(NameArgs),
    /// Stop a service's containers, keeping its definition.
    Stop(NameArgs),
    /// Start a stopped service again.
    Start(NameArgs),
    /// Stop a service and remove its definition.
    Destroy(NameArgs),
}

/// How to reach the ResourceManager.
#[derive(Args, Debug, Clone)]
pub struct RmArgs {
    /// ResourceManager web address, e.g. http://rm:8088.
    #[arg(long, env = "SPINDLE_YARN_RM")]
    pub rm: String,
    /// User for simple authentication (`user.name`); default $HADOOP_USER_NAME, then $USER,
    /// then $LOGNAME.
    #[arg(long)]
    pub user: Option<String>,
}

impl RmArgs {
    fn user(&self) -> Option<String> {
        self.user
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(rm::default_user)
    }

    fn client(&self) -> anyhow::Result<ResourceManager> {
        ResourceManager::new(&self.rm, self.user()).map_err(|e| UsageError(e.to_string()).into())
    }
}

/// What the service runs and where; shared by `spec` and `deploy`.
#[derive(Args, Debug, Clone)]
pub struct ServiceArgs {
    /// Service name: lower-case letters, digits and '-', starting with a letter, at most 63.
    #[arg(long)]
    pub name: String,
    /// Number of replicas (containers), one per node.
    #[arg(long, default_value_t = 2, allow_negative_numbers = true)]
    pub replicas: i64,
    /// Model repository the replicas serve (hdfs://namenode:port/path).
    #[arg(long)]
    pub repo: String,
    /// YARN queue, e.g. CPU_Q or GPU_Q.
    #[arg(long)]
    pub queue: Option<String>,
    /// Node partition (node label), e.g. CPU or GPU.
    #[arg(long)]
    pub node_partition: Option<String>,
    /// GPUs per replica (yarn.io/gpu); > 0 serves on CUDA with the ort engine.
    #[arg(long, default_value_t = 0)]
    pub gpus: u32,
    /// Vcores per replica.
    #[arg(long, default_value_t = 4)]
    pub cpus: u32,
    /// Memory per replica, MB.
    #[arg(long, default_value_t = 4096)]
    pub memory: u64,
    /// HTTP port of every replica (gRPC uses the next port).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Repository poll interval of the replicas.
    #[arg(long, default_value = "30s")]
    pub poll_interval: String,
}

/// The service's own Kerberos identity, for a secured cluster.
#[derive(Args, Debug, Clone, Default)]
pub struct ServiceKerberosArgs {
    /// Kerberos principal the service runs as on a secured (Kerberos) cluster, in the
    /// NAME/HOST@REALM form YARN Services requires, e.g. spindle/gateway.example.com@EXAMPLE.COM
    /// (with --yarn-keytab; _HOST is not accepted). The service AM logs in with it (YARN
    /// Services' kerberos_principal; `spindle yarn status` reaches the AM only then) and so
    /// does every replica, which then renews its own tickets to read the repository instead
    /// of relying on the delegation tokens YARN hands it at launch (they expire, 7 days by
    /// default). Not the same as --principal, which is this command's own login.
    #[arg(long, value_name = "NAME", requires = "yarn_keytab")]
    pub yarn_principal: Option<String>,
    /// Keytab of --yarn-principal, as a URI YARN can reach from every node: hdfs://nn:port/path
    /// (localized for the AM and the replicas; keep it readable by its owner only) or
    /// file:///path (present at that path on every node).
    #[arg(long, value_name = "URI", requires = "yarn_principal")]
    pub yarn_keytab: Option<String>,
}

impl ServiceKerberosArgs {
    /// The validated identity, if one was given.
    fn identity(&self) -> Result<Option<spec::ServiceKerberos>, UsageError> {
        let (Some(principal), Some(keytab)) = (&self.yarn_principal, &self.yarn_keytab) else {
            return Ok(None);
        };
        spec::ServiceKerberos::new(principal, keytab)
            .map(Some)
            .map_err(|e| UsageError(format!("{}: {}", e.field, e.message)))
    }
}

/// `spindle yarn spec`.
#[derive(Args, Debug)]
pub struct SpecArgs {
    /// The service.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The tarball's URI (default: where `deploy` would upload it).
    #[arg(long)]
    pub artifact: Option<String>,
    /// Staging directory on HDFS for the tarball (default: /user/USER/.spindle on the
    /// repository's NameNode).
    #[arg(long)]
    pub staging: Option<String>,
    /// The service's Kerberos identity.
    #[command(flatten)]
    pub kerberos: ServiceKerberosArgs,
    /// The replicas' TLS and tokens.
    #[command(flatten)]
    pub tls: tls::ServiceTlsArgs,
}

/// `spindle yarn deploy`.
#[derive(Args, Debug)]
pub struct DeployArgs {
    /// The ResourceManager.
    #[command(flatten)]
    pub rm: RmArgs,
    /// The service.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Staging directory on HDFS for the tarball (default: /user/USER/.spindle on the
    /// repository's NameNode).
    #[arg(long)]
    pub staging: Option<String>,
    /// ONNX Runtime library to package (default: the one `spindle serve` would find; none
    /// found means the replicas run on tract).
    #[arg(long)]
    pub ort_lib: Option<std::path::PathBuf>,
    /// The service's Kerberos identity.
    #[command(flatten)]
    pub kerberos: ServiceKerberosArgs,
    /// The replicas' TLS and tokens.
    #[command(flatten)]
    pub tls: tls::ServiceTlsArgs,
}

/// `spindle yarn flex`.
#[derive(Args, Debug)]
pub struct FlexArgs {
    /// The ResourceManager.
    #[command(flatten)]
    pub rm: RmArgs,
    /// Service name.
    pub name: String,
    /// New number of replicas (0 keeps the service but runs no container).
    #[arg(long, allow_negative_numbers = true)]
    pub replicas: i64,
}

/// A subcommand that names one service.
#[derive(Args, Debug)]
pub struct NameArgs {
    /// The ResourceManager.
    #[command(flatten)]
    pub rm: RmArgs,
    /// Service name.
    pub name: String,
}

/// Runs a `spindle yarn` subcommand.
pub async fn run(command: YarnCommand) -> anyhow::Result<()> {
    match command {
        YarnCommand::Spec(args) => {
            let user = RmArgs {
                rm: String::new(),
                user: None,
            }
            .user();
            let staging = staging_dir(&args.service.repo, args.staging.as_deref(), user)?;
            let artifact = args.artifact.unwrap_or_else(|| {
                format!("{staging}/{}", package::tarball_name(&args.service.name))
            });
            let ort = spindle_engine_ort::find_library().ok();
            let params = params(&args.service, artifact, ort.as_deref())?;
            let mut spec = spec::build(&params);
            if let Some(kerberos) = args.kerberos.identity()? {
                spec::add_kerberos(&mut spec, &kerberos);
            }
            args.tls
                .apply(&mut spec)
                .map_err(|e| UsageError(e.to_string()))?;
            spec::validate(&spec).map_err(|e| UsageError(e.to_string()))?;
            println!("{}", serde_json::to_string_pretty(&spec)?);
            Ok(())
        }
        YarnCommand::Deploy(args) => deploy(args).await,
        YarnCommand::Flex(args) => {
            let n = spec::check_replicas("--replicas", args.replicas, true)
                .map_err(|e| UsageError(e.to_string()))?;
            let rm = args.rm.client()?;
            rm.flex(&args.name, COMPONENT, n).await?;
            println!("{}: {COMPONENT} flexing to {n} replicas", args.name);
            Ok(())
        }
        YarnCommand::Status(args) => status(args).await,
        YarnCommand::Stop(args) => {
            args.rm.client()?.set_state(&args.name, "STOPPED").await?;
            println!("{}: stopping", args.name);
            Ok(())
        }
        YarnCommand::Start(args) => {
            args.rm.client()?.set_state(&args.name, "STARTED").await?;
            println!("{}: starting", args.name);
            Ok(())
        }
        YarnCommand::Destroy(args) => {
            args.rm.client()?.destroy(&args.name).await?;
            println!("{}: destroyed", args.name);
            Ok(())
        }
    }
}

/// The staging directory: given, or `/user/USER/.spindle` on the repository's NameNode.
fn staging_dir(repo: &str, given: Option<&str>, user: Option<String>) -> anyhow::Result<String> {
    if let Some(dir) = given {
        return Ok(dir.trim_end_matches('/').to_string());
    }
    let rest = repo.strip_prefix("hdfs://").ok_or_else(|| {
        UsageError(format!(
            "--repo {repo}: a YARN deployment serves from HDFS; give hdfs://namenode:port/path"
        ))
    })?;
    let authority = rest.split('/').next().unwrap_or_default();
    let user = user.unwrap_or_else(|| "spindle".into());
    Ok(format!("hdfs://{authority}/user/{user}/.spindle"))
}

fn params(
    args: &ServiceArgs,
    artifact: String,
    ort: Option<&std::path::Path>,
) -> anyhow::Result<SpecParams> {
    let usage = |e: spec::SpecError| UsageError(e.to_string());
    spec::check_name("--name", &args.name, spec::MAX_SERVICE_NAME).map_err(usage)?;
    let replicas = spec::check_replicas("--replicas", args.replicas, false).map_err(usage)?;
    spindle_core::config::parse_duration(&args.poll_interval)
        .map_err(|e| UsageError(format!("--poll-interval {}: {e}", args.poll_interval)))?;
    if !spindle_loader::is_hdfs(&args.repo) {
        return Err(UsageError(format!(
            "--repo {}: YARN containers run on other nodes and cannot read a local directory; publish it to HDFS (`spindle zoo --out hdfs://...` or `spindle repo publish`)",
            args.repo
        ))
        .into());
    }
    Ok(SpecParams {
        name: args.name.clone(),
        replicas,
        repo: args.repo.clone(),
        artifact,
        queue: args.queue.clone(),
        node_partition: args.node_partition.clone(),
        gpus: args.gpus,
        cpus: args.cpus,
        memory_mb: args.memory,
        port: args.port,
        poll_interval: args.poll_interval.clone(),
        ort_library: ort
            .and_then(|p| p.file_name())
            .map(|f| f.to_string_lossy().into_owned()),
    })
}

async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let rm = args.rm.client()?;
    let staging = staging_dir(&args.service.repo, args.staging.as_deref(), args.rm.user())?;
    let artifact = format!("{staging}/{}", package::tarball_name(&args.service.name));
    let ort = match &args.ort_lib {
        Some(path) => Some(path.clone()),
        None => spindle_engine_ort::find_library().ok(),
    };
    let params = params(&args.service, artifact.clone(), ort.as_deref())?;
    let mut spec = spec::build(&params);
    let kerberos = args.kerberos.identity()?;
    if let Some(kerberos) = &kerberos {
        spec::add_kerberos(&mut spec, kerberos);
    }
    args.tls
        .apply(&mut spec)
        .map_err(|e| UsageError(e.to_string()))?;
    spec::validate(&spec).map_err(|e| UsageError(e.to_string()))?;

    // Checks before anything is written: the RM serves the Services API, the name is free
    // (which also checks that calls carry a user: without one every call is "Null user"),
    // GPUs asked for can be scheduled, the repo exists.
    rm.version().await?;
    if kerberos.is_none() && rm.negotiated() {
        return Err(UsageError(format!(
            "{}: this ResourceManager is secured with Kerberos (it asked for SPNEGO): give the service an identity with --yarn-principal NAME --yarn-keytab hdfs://.../NAME.keytab; without one its AM holds no keytab, `spindle yarn status` cannot reach it, and the replicas lose HDFS when their delegation tokens expire",
            rm.base()
        ))
        .into());
    }
    if rm.exists(&params.name).await? {
        return Err(UsageError(format!(
            "{}: service name '{}' is taken (choose another --name, or remove it with `spindle yarn destroy {} --rm {}`)",
            rm.url(&format!("/{}", params.name), &[]),
            params.name,
            params.name,
            rm.base()
        ))
        .into());
    }
    check_gpus(&rm, params.gpus, params.node_partition.as_deref()).await?;
    package::check_repo(&params.repo).await?;

    let tarball = package::build(ort.as_deref()).context("packaging spindle")?;
    let size = tarball.len();
    package::upload(&staging, &params.name, &tarball).await?;
    eprintln!("uploaded {artifact} ({size} bytes)");

    match rm.create(&spec).await {
        Ok(()) => {
            println!(
                "{}: submitted {} replicas to {}; follow with `spindle yarn status {} --rm {}`",
                params.name,
                params.replicas,
                rm.base(),
                params.name,
                rm.base()
            );
            Ok(())
        }
        Err(e) => {
            // An unanswered submission may still have been accepted: keep the tarball it
            // would need and say how to check; a refused one leaves only the tarball.
            let maybe_submitted = matches!(e, YarnError::Unreachable { .. });
            let left = if maybe_submitted {
                format!(
                    "left behind: the tarball {artifact}, and perhaps the service (check `spindle yarn status {n} --rm {rm}`; remove it with `spindle yarn destroy {n} --rm {rm}`, then `hdfs dfs -rm {artifact}`)",
                    n = params.name,
                    rm = rm.base()
                )
            } else {
                match package::remove(&staging, &params.name).await {
                    Ok(()) => format!(
                        "nothing is left behind (the uploaded tarball {artifact} was removed)"
                    ),
                    Err(re) => format!(
                        "left behind: the tarball {artifact} (removing it failed: {re}; remove it with `hdfs dfs -rm {artifact}`)"
                    ),
                }
            };
            Err(anyhow::Error::new(e).context(format!(
                "submitting service '{}' failed; {left}",
                params.name
            )))
        }
    }
}

/// The resource type of GPUs in YARN (Hadoop 3.1+ GPU scheduling).
const GPU: &str = "yarn.io/gpu";

/// Refuses `--gpus` a cluster cannot schedule, from the RM's node list. Without GPU scheduling
/// Hadoop still accepts such a service, and its AM then fails at every attempt
/// (`ResourceNotFoundException: ... yarn.io/gpu`, seen on Hadoop 3.4.2), so it never starts.
async fn check_gpus(
    rm: &ResourceManager,
    gpus: u32,
    partition: Option<&str>,
) -> anyhow::Result<()> {
    if gpus == 0 {
        return Ok(());
    }
    let nodes = rm.nodes().await?;
    let running: Vec<&rm::Node> = nodes.iter().filter(|n| n.state == "RUNNING").collect();
    if !running.iter().any(|n| n.resource(GPU).is_some()) {
        let types = running
            .first()
            .map(|n| n.resource_names().join(", "))
            .unwrap_or_else(|| "none: no RUNNING node".into());
        return Err(UsageError(format!(
            "--gpus {gpus}: the ResourceManager at {} does not schedule {GPU} (its nodes offer {types}); GPU scheduling needs {GPU} in resource-types.xml and yarn.nodemanager.resource-plugins=yarn.io/gpu on the NodeManagers. A service asking for GPUs here would be accepted and never start. Deploy with --gpus 0, or on a cluster with GPU scheduling",
            rm.base()
        ))
        .into());
    }
    let most = running
        .iter()
        .filter(|n| partition.is_none_or(|p| n.node_labels.iter().any(|l| l == p)))
        .filter_map(|n| n.resource(GPU))
        .max()
        .unwrap_or(0);
    if most < i64::from(gpus) {
        let place = partition.map_or("".to_string(), |p| format!(" in partition {p}"));
        return Err(UsageError(format!(
            "--gpus {gpus}: no RUNNING node{place} offers {gpus} {GPU} (the most is {most}), so no replica could be placed; ask for fewer GPUs or another --node-partition"
        ))
        .into());
    }
    Ok(())
}

async fn status(args: NameArgs) -> anyhow::Result<()> {
    let rm = args.rm.client()?;
    let service = rm.service(&args.name).await?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    println!(
        "service {} ({}) state {} queue {}",
        args.name,
        text(&service["id"]),
        text(&service["state"]),
        text(&service["queue"])
    );
    let port = rm::port_of(&service).map_or("?".to_string(), |p| p.to_string());
    let scheme = tls::scheme_of(&service);
    for component in service["components"].as_array().into_iter().flatten() {
        let containers: Vec<rm::ContainerInstance> =
            serde_json::from_value(component["containers"].clone()).unwrap_or_default();
        let requested = component["number_of_containers"].as_u64().unwrap_or(0);
        println!(
            "component {} state {}: {} of {requested} containers",
            text(&component["name"]),
            text(&component["state"]),
            containers.len(),
        );
        // The address is the one discovery connects to (rm::ContainerInstance::address); the
        // hostname and node are shown for reference.
        for c in &containers {
            println!(
                "  {:<16} {:<20} {}:{port}  ({scheme}; hostname {}, node {})",
                c.component_instance_name,
                c.state.as_deref().unwrap_or("-"),
                c.address().unwrap_or("-"),
                c.hostname.as_deref().unwrap_or("-"),
                c.bare_host.as_deref().unwrap_or("-"),
            );
        }
        let missing = requested.saturating_sub(containers.len() as u64);
        if missing > 0 {
            let partitions: Vec<String> = component["placement_policy"]["constraints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["node_partitions"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect();
            let place = if partitions.is_empty() {
                String::new()
            } else {
                format!(" in partition {}", partitions.join(","))
            };
            println!(
                "  {missing} waiting for a node: each replica needs a node of its own{place} (anti-affinity: they share one port) with room for it; they start when such a node has room"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

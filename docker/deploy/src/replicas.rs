//! `spindle replicas`: N local `spindle serve` processes on their own ports, optionally pinned
//! to cores, for testing and benchmarking a multi-replica deployment on one machine. Prints
//! each replica's URL once it is ready; on Ctrl-C or SIGTERM stops them all (SIGTERM, so each
//! drains) and exits.

use anyhow::Context;
use clap::Args;
use spindle_core::UsageError;
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// `spindle replicas`.
#[derive(Args, Debug)]
pub struct ReplicasArgs {
    /// Number of replicas.
    #[arg(long)]
    pub n: usize,
    /// Cores per replica: `split` divides the available cores evenly, or one `taskset` list
    /// per replica separated by `/`, e.g. `0-3/4-7`. Default: no pinning.
    #[arg(long)]
    pub cores: Option<String>,
    /// Address every replica listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// First HTTP port; replica i uses base+2i for HTTP and base+2i+1 for gRPC. 0 picks free
    /// ports.
    #[arg(long, default_value_t = 0)]
    pub base_port: u16,
    /// How long each replica may take to become ready.
    #[arg(long, default_value = "120s", value_parser = spindle_core::config::parse_duration)]
    pub ready_timeout: Duration,
    /// Arguments for every `spindle serve`, after `--` (e.g. `-- --repo DIR --engine tract`).
    #[arg(last = true, required = true)]
    pub serve_args: Vec<String>,
}

/// Parses `--cores`: `split` over `available` cores, or explicit `/`-separated lists.
pub fn core_layout(layout: &str, n: usize, available: usize) -> Result<Vec<String>, String> {
    if layout == "split" {
        if n > available {
            return Err(format!(
                "--cores split: {n} replicas but only {available} cores; give fewer replicas or an explicit layout like 0/0/1"
            ));
        }
        let per = available / n;
        return Ok((0..n)
            .map(|i| format!("{}-{}", i * per, i * per + per - 1))
            .collect());
    }
    let lists: Vec<String> = layout.split('/').map(|s| s.trim().to_string()).collect();
    if lists.len() != n {
        return Err(format!(
            "--cores {layout}: {} core lists for {n} replicas (give one per replica, separated by '/')",
            lists.len()
        ));
    }
    for list in &lists {
        let valid = !list.is_empty()
            && list.split(',').all(|part| {
                part.split('-')
                    .all(|c| c.parse::<usize>().is_ok_and(|c| c < available))
            });
        if !valid {
            return Err(format!(
                "--cores {layout}: '{list}' is not a core list like 0-3 or 0,2 within 0-{}",
                available - 1
            ));
        }
    }
    Ok(lists)
}

fn free_port(host: IpAddr) -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind((host, 0))
        .with_context(|| format!("finding a free port on {host}"))?
        .local_addr()?
        .port())
}

/// Runs the replicas until `stop` resolves (the caller's SIGTERM or Ctrl-C), then stops them
/// all.
pub async fn run(
    args: ReplicasArgs,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if args.n == 0 {
        return Err(UsageError("--n 0: give at least one replica".into()).into());
    }
    if args
        .serve_args
        .iter()
        .any(|a| a.starts_with("--http-addr") || a.starts_with("--grpc-addr"))
    {
        return Err(UsageError(
            "spindle replicas assigns --http-addr and --grpc-addr itself; use --host and --base-port".into(),
        )
        .into());
    }
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores = match &args.cores {
        Some(layout) => Some(core_layout(layout, args.n, available).map_err(UsageError)?),
        None => None,
    };
    let exe = std::env::current_exe().context("finding the spindle binary")?;
    let mut children: Vec<(String, Child)> = Vec::with_capacity(args.n);
    let result = async {
        for i in 0..args.n {
            let (http, grpc) = if args.base_port == 0 {
                (free_port(args.host)?, free_port(args.host)?)
            } else {
                let base = usize::from(args.base_port) + 2 * i;
                let http = u16::try_from(base)
                    .ok()
                    .filter(|p| *p < u16::MAX)
                    .ok_or_else(|| {
                        UsageError(format!(
                            "--base-port {}: replica {i} would need port {base}",
                            args.base_port
                        ))
                    })?;
                (http, http + 1)
            };
            let mut command = match &cores {
                Some(lists) => {
                    let mut c = Command::new("taskset");
                    c.arg("-c").arg(&lists[i]).arg(&exe);
                    c
                }
                None => Command::new(&exe),
            };
            command
                .arg("serve")
                .arg("--http-addr")
                .arg(SocketAddr::new(args.host, http).to_string())
                .arg("--grpc-addr")
                .arg(SocketAddr::new(args.host, grpc).to_string())
                .args(&args.serve_args)
                .stdin(Stdio::null())
                .kill_on_drop(true);
            let child = command.spawn().with_context(|| {
                if cores.is_some() {
                    "starting a replica under taskset (install util-linux, or drop --cores)"
                        .to_string()
                } else {
                    format!("starting {}", exe.display())
                }
            })?;
            children.push((
                format!("http://{}", SocketAddr::new(args.host, http)),
                child,
            ));
        }
        for (url, child) in &mut children {
            wait_ready(url, child, args.ready_timeout).await?;
            println!("{url}");
        }
        eprintln!("{} replicas ready; Ctrl-C or SIGTERM stops them", args.n);
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = result {
        stop_all(&mut children).await;
        return Err(e);
    }
    // A replica that dies is reported and the others keep serving (losing one is what this
    // command exists to test); when none is left there is nothing to serve, so exit non-zero.
    let mut stop = std::pin::pin!(stop);
    let mut alive: Vec<(String, Child)> = children;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            index = wait_any_exit(&mut alive) => {
                let (url, mut child) = alive.remove(index);
                let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
                tracing::warn!(%url, %status, left = alive.len(), "a replica exited");
                eprintln!("replica {url} exited ({status}); {} left", alive.len());
                if alive.is_empty() {
                    anyhow::bail!("every replica exited");
                }
            }
        }
    }
    stop_all(&mut alive).await;
    Ok(())
}

/// The index of the first child that has exited.
async fn wait_any_exit(children: &mut [(String, Child)]) -> usize {
    loop {
        for (i, (_, child)) in children.iter_mut().enumerate() {
            if !matches!(child.try_wait(), Ok(None)) {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_ready(url: &str, child: &mut Child, limit: Duration) -> anyhow::Result<()> {
    let client = spindle_client::Client::builder([url.to_string()])
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("replica {url} exited before it was ready ({status}); its log is above");
        }
        if matches!(client.ready().await.first(), Some(Ok(true))) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("replica {url} not ready within {limit:?} (raise --ready-timeout)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM to every replica (so each drains), then waits; a replica still running after 30 s
/// is killed.
async fn stop_all(children: &mut [(String, Child)]) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id() {
            // std has no SIGTERM and unsafe code is forbidden: the kill(1) command sends it.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
    for (url, child) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(%url, "replica did not stop within 30s; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::core_layout;

    #[test]
    fn core_layouts_split_or_follow_the_lists() {
        assert_eq!(core_layout("split", 2, 8).unwrap(), vec!["0-3", "4-7"]);
        assert_eq!(
            core_layout("split", 3, 8).unwrap(),
            vec!["0-1", "2-3", "4-5"]
        );
        assert_eq!(core_layout("0-1/2,3", 2, 4).unwrap(), vec!["0-1", "2,3"]);
        for (layout, n) in [
            ("split", 9),
            ("0/1", 3),
            ("0/x", 2),
            ("0/8", 2),
            ("0//1", 3),
        ] {
            let e = core_layout(layout, n, 8).unwrap_err();
            assert!(e.contains(layout), "{e}");
        }
    }
}

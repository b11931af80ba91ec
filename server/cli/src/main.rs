//! The `spindle` binary: parse arguments, set up logging, run the command.

use clap::Parser;
use spindle_cli::{Cli, Command, EXIT_USAGE, UsageError, run};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            std::process::exit(EXIT_USAGE);
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            return;
        }
    };
    // Before any thread starts: what the process needs in its environment (read by libraries at
    // load time) comes through one re-execution of the program.
    if let Err(e) = reexec_with_env(&cli) {
        eprintln!("error: cannot re-execute spindle with the environment it needs: {e}");
        std::process::exit(1);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files (YARN, docker).
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command {
        // The server's runtime carries only the front ends; its engines have their own threads.
        builder.worker_threads(args.io_threads());
    }
    let runtime = builder
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        let usage = e.downcast_ref::<UsageError>().is_some();
        std::process::exit(if usage { EXIT_USAGE } else { 1 });
    }
}

/// Re-executes this program (the same process id, arguments and standard streams) with the
/// environment it needs, once; returns when nothing is missing. An environment cannot be
/// changed safely once threads run, and glibc reads its malloc settings only at start-up, hence
/// a new image rather than `set_var`.
/// - `--keytab`: MIT Kerberos' variables (`KerberosArgs::exec_env`).
/// - `serve`: `MALLOC_ARENA_MAX`, one arena per core, unless the user set it. glibc gives each
///   new thread an arena of its own (up to 8 per core) and keeps freed memory in it, so images
///   decoded on many blocking threads in turn leave each thread's peak behind, and the process
///   grows past `--max-decode-bytes` by up to 36 MB per thread that ever decoded.
fn reexec_with_env(cli: &Cli) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut env = cli.kerberos.exec_env()?;
    if matches!(cli.command, Command::Serve(_)) && std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        env.push(("MALLOC_ARENA_MAX", cores.to_string().into()));
    }
    if env.is_empty() {
        return Ok(());
    }
    Err(std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .envs(env)
        .exec())
}

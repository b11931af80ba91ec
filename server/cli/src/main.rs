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
    // Before any thread starts: a keytab login re-executes the program with its environment.
    if let Err(e) = cli.kerberos.reexec_with_keytab() {
        eprintln!("error: --keytab: cannot re-execute spindle with the keytab's environment: {e}");
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

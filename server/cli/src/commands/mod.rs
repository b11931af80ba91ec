//! One module per subcommand. Each turns its arguments into calls of the libraries (the serving
//! library, the loader, the clients, loadtest, deployment) and prints what a person reads; no
//! command module imports another.

pub mod bench;
pub mod data;
pub mod import;
pub mod infer;
pub mod loadtest;
pub mod replicas;
pub mod repo;
pub mod score;
pub mod serve;
pub mod train;
pub mod yarn;
pub mod zoo;

use crate::args::{BenchCommand, Cli, Command};

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    cli.kerberos.apply()?;
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Zoo(args) => zoo::run(args).await,
        Command::Infer(args) => infer::run(args).await,
        Command::Repo(command) => repo::run(command).await,
        Command::Import(command) => import::run(command).await,
        Command::Yarn(command) => yarn::run(command).await,
        Command::Replicas(args) => replicas::run(args).await,
        Command::Loadtest(args) => loadtest::run(args).await,
        // The blocking commands run on a thread of their own, off the async workers.
        Command::Bench(BenchCommand::Engine(args)) => {
            tokio::task::spawn_blocking(move || bench::engine::run(&args)).await??;
            Ok(())
        }
        Command::Bench(BenchCommand::Preprocess(args)) => {
            tokio::task::spawn_blocking(move || bench::preprocess::run(&args)).await??;
            Ok(())
        }
        Command::Data(command) => {
            tokio::task::spawn_blocking(move || data::run(command)).await??;
            Ok(())
        }
        Command::Train(train::TrainCommand::Criteo(args)) => {
            tokio::task::spawn_blocking(move || train::train_criteo(args)).await??;
            Ok(())
        }
        Command::Score(args) => {
            tokio::task::spawn_blocking(move || score::run(args)).await??;
            Ok(())
        }
    }
}

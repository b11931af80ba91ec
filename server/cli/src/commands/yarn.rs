//! `spindle yarn`: replicas as a YARN service. The arguments and the work live in the
//! deployment crate (`spindle_deploy::yarn`), beside the ResourceManager client they drive.

pub use spindle_deploy::yarn::YarnCommand;

/// Runs a `spindle yarn` subcommand.
pub async fn run(command: YarnCommand) -> anyhow::Result<()> {
    spindle_deploy::yarn::run(command).await
}

//! `spindle replicas`: N local `spindle serve` processes until Ctrl-C or SIGTERM
//! (`spindle_deploy::replicas`).

use anyhow::Context;
use spindle_deploy::replicas::ReplicasArgs;

/// Runs `spindle replicas`: the replica set stops on the same signals `spindle serve` drains on.
pub async fn run(args: ReplicasArgs) -> anyhow::Result<()> {
    let stop = spindle_server::serve::stop_signal()
        .context("installing the SIGTERM and Ctrl-C handlers")?;
    spindle_deploy::replicas::run(args, stop).await
}

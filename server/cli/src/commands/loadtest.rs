//! `spindle loadtest`: the load generator (`spindle-loadtest`) against running servers. With
//! `--yarn-service` the servers are the READY containers of a YARN service, listed once before
//! any load (`spindle_deploy::discovery`), so every level of a sweep measures the same replicas.

use anyhow::Context;
use spindle_deploy::YarnService;
use spindle_loadtest::LoadtestArgs;

/// Runs `spindle loadtest`.
pub async fn run(mut args: LoadtestArgs) -> anyhow::Result<()> {
    args.validate()?;
    if let Some(service) = args.yarn_service.take() {
        let found = YarnService::resolve(&service, args.yarn_user.take())
            .await
            .with_context(|| format!("--yarn-service {service}"))?;
        args.url = found
            .require_endpoints()
            .await
            .with_context(|| format!("--yarn-service {service}"))?;
        println!(
            "{service}: {} READY replica(s): {}",
            args.url.len(),
            args.url.join(", ")
        );
    }
    spindle_loadtest::run(args).await?;
    Ok(())
}

//! `--yarn-service`: the servers under test are the READY containers of a YARN service, found
//! through the client library's discovery and listed once, before any load, so every level of
//! a sweep measures the same replicas.

use crate::LoadtestArgs;
use anyhow::Context;
use spindle_client::discovery::YarnService;

/// Fills `args.url` from `--yarn-service` when it is given (and says what was found).
pub async fn list_yarn_replicas(args: &mut LoadtestArgs) -> anyhow::Result<()> {
    let Some(service) = &args.yarn_service else {
        return Ok(());
    };
    let found = YarnService::resolve(service, args.yarn_user.clone())
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
    Ok(())
}

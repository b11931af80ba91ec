//! `yarn-rm-standin ADDR SERVICE PORT HOST...`: a stand-in for a YARN ResourceManager, for
//! benchmarks on machines where no YARN can be installed. It is the in-test ResourceManager
//! (`spindle_tests::yarn_rm`) listening on ADDR, holding one service, SERVICE, submitted as
//! `spindle yarn spec` would write it (replicas on PORT), whose containers on HOST... are
//! listed as READY. It answers the YARN Services endpoints the client library's discovery
//! calls, as the documentation describes them; it starts, places and restarts nothing: the
//! replicas are started separately (bench/deploy.sh starts them). Runs until killed.

use spindle_deploy::yarn::rm::ResourceManager;
use spindle_deploy::yarn::spec::{SpecParams, build};
use spindle_tests::yarn_rm::FakeRm;
use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: yarn-rm-standin ADDR SERVICE PORT HOST... (e.g. 127.0.0.1:18410 bench 18420 127.0.0.2 127.0.0.3)";
    let [addr, service, port, hosts @ ..] = args.as_slice() else {
        anyhow::bail!("{usage}");
    };
    anyhow::ensure!(!hosts.is_empty(), "{usage}");
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| anyhow::anyhow!("ADDR '{addr}': {e} ({usage})"))?;
    let port: u16 = port
        .parse()
        .map_err(|e| anyhow::anyhow!("PORT '{port}': {e} ({usage})"))?;
    let rm = FakeRm::start_on(addr, None).await?;
    let spec = build(&SpecParams {
        name: service.clone(),
        replicas: hosts.len() as u32,
        repo: "hdfs://namenode:8020/models".into(),
        artifact: "hdfs://namenode:8020/user/spindle/.spindle/spindle.tar.gz".into(),
        queue: None,
        node_partition: None,
        gpus: 0,
        cpus: 1,
        memory_mb: 2048,
        port,
        poll_interval: "30s".into(),
        ort_library: None,
    });
    ResourceManager::new(&rm.url(), None)?.create(&spec).await?;
    let names: Vec<String> = (0..hosts.len()).map(|i| format!("spindle-{i}")).collect();
    let containers: Vec<(&str, &str, &str)> = names
        .iter()
        .zip(hosts)
        .map(|(name, host)| (name.as_str(), host.as_str(), "READY"))
        .collect();
    rm.set_containers(service, &containers);
    println!("{}/{service}", rm.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

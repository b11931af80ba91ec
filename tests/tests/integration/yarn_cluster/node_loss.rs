//! A NodeManager lost under load, in the replicated deployment: the node and the replica it
//! ran vanish at once, as when a machine dies.

use super::{Callers, READY_WITHIN, both_ready, http_get, ready_at};
use spindle_deploy::yarn::rm::ResourceManager;
use spindle_tests::hadoop3::{CPU_NODE, CPU_NODE_2, Hadoop3, Service, spindle};
use std::time::{Duration, Instant};

/// The NodeManager of the CPU node that does not run the service's AM is SIGKILLed with its
/// containers (`scripts/hadoop.sh kill-nodemanager`) while callers find the replicas through
/// the RM: no caller request fails (the client retries onto the other replica while the RM
/// still lists the lost one), the RM marks the node LOST once it has missed heartbeats for
/// `yarn.nm.liveness-monitor.expiry-interval-ms` (20 s in scripts/hadoop.sh), and `spindle
/// yarn status` then shows the lost node's replica FAILED (or waiting for a node:
/// anti-affinity leaves its replacement nowhere to go) beside the READY one. The NodeManager
/// started again, a replica is placed on it and serves. The caller needs the cluster alone ([`Hadoop3::exclusive`]).
pub(super) fn lose_a_node_under_callers(
    cluster: &Hadoop3,
    service: &Service,
    rm_args: &[&str],
    input: &str,
    port: u16,
) {
    // Losing the AM's node would restart the AM too; that is YARN's AM recovery, not the
    // replica's: lose the other one.
    let am = am_host(cluster, service);
    let (victim, survivor, nm) = if am == CPU_NODE {
        (CPU_NODE_2, CPU_NODE, "3")
    } else {
        (CPU_NODE, CPU_NODE_2, "1")
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rm = ResourceManager::new(&cluster.rm, Some(cluster.user.clone())).unwrap();
    let node_state = || {
        let nodes = runtime.block_on(rm.nodes()).expect("the RM's node list");
        nodes
            .into_iter()
            .find(|n| n.id.starts_with(&format!("{victim}:")))
            .map(|n| n.state)
    };

    let callers = Callers::start("while a node is lost", rm_args, input, 30);
    std::thread::sleep(Duration::from_secs(2));
    let killed = Instant::now();
    cluster.script(&["kill-nodemanager", nm]);
    // The shared cluster gets its NodeManager back even when a check below fails.
    let mut restart = RestartOnDrop(Some((cluster, nm)));
    let deadline = killed + Duration::from_secs(60);
    while node_state().as_deref() != Some("LOST") {
        assert!(
            Instant::now() < deadline,
            "the RM did not mark {victim} LOST within 60 s: {:?}",
            node_state()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "{victim} LOST {:?} after its NodeManager was killed",
        killed.elapsed()
    );
    // Seen on Hadoop 3.4.2: the lost node's container turns FAILED and the component FLEXING
    // while the AM asks for a replacement, which anti-affinity leaves nowhere to go.
    let lost_line = |s: &str| {
        s.lines()
            .any(|l| l.contains(&format!(" {victim}:{port} ")) && l.contains(" FAILED "))
    };
    let status = service
        .wait_status(Duration::from_secs(60), |s| {
            ready_at(s, survivor, port)
                && !ready_at(s, victim, port)
                && (lost_line(s) || s.contains("1 waiting for a node"))
        })
        .unwrap_or_else(|last| panic!("the lost replica is not reported: {last}"));
    eprintln!("reported {:?} after the kill: {status}", killed.elapsed());
    callers.none_failed();

    // The node back: the waiting replica lands on it.
    let back = Instant::now();
    restart.now();
    service
        .wait_status(READY_WITHIN, |s| both_ready(s, port))
        .unwrap_or_else(|last| {
            panic!("no replica READY on {victim} after its node came back: {last}")
        });
    eprintln!(
        "{victim}'s replica READY {:?} after its NodeManager was started",
        back.elapsed()
    );
    let url = format!("http://{victim}:{port}");
    let (ok, out, err) = spindle(
        &[
            "infer", "--url", &url, "--model", "cifar10", "--json", input,
        ],
        Duration::from_secs(60),
    );
    assert!(
        ok && !out.trim().is_empty(),
        "the replaced replica: {out} {err}"
    );
}

/// The host the service's AM runs on (from the RM's application report).
fn am_host(cluster: &Hadoop3, service: &Service) -> String {
    let (ok, out, err) = service.yarn("status", &[]);
    assert!(ok, "{err}");
    // "service NAME (application_...) state ..."
    let app = out
        .split(['(', ')'])
        .nth(1)
        .filter(|id| id.starts_with("application_"))
        .unwrap_or_else(|| panic!("no application id in the status: {out}"));
    let (host, port) = cluster
        .rm
        .trim_start_matches("http://")
        .split_once(':')
        .expect("RM host:port");
    let report = http_get(
        host,
        port.parse().unwrap(),
        &format!("/ws/v1/cluster/apps/{app}"),
    )
    .unwrap_or_else(|| panic!("the RM's report of {app}"));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    report["app"]["amHostHttpAddress"]
        .as_str()
        .and_then(|a| a.split(':').next())
        .unwrap_or_else(|| panic!("no AM host in {report}"))
        .to_string()
}

/// Starts NodeManager N again when dropped, unless [`RestartOnDrop::now`] did.
struct RestartOnDrop<'a>(Option<(&'a Hadoop3, &'a str)>);

impl RestartOnDrop<'_> {
    fn now(&mut self) {
        if let Some((cluster, nm)) = self.0.take() {
            cluster.script(&["start-nodemanager", nm]);
        }
    }
}

impl Drop for RestartOnDrop<'_> {
    fn drop(&mut self) {
        if let Some((cluster, nm)) = self.0.take() {
            // Not cluster.script: a second panic while unwinding would abort the tests.
            let restart = || cluster.script(&["start-nodemanager", nm]);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(restart));
        }
    }
}

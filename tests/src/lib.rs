//! Spindle integration tests: real servers on port 0, real clients. Shared fixtures live here;
//! the tests are in `tests/tests/integration/`.

pub mod hadoop3;
pub mod hdfs;
pub mod yarn_rm;

use spindle_core::engine::{Device, EngineChoice};
use spindle_server::serve::{Listeners, ServeConfig, Server};
use spindle_zoo::ZooModel;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::sync::oneshot;

/// A server running on a loopback port in the test's runtime.
pub struct TestServer {
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// Its gRPC address.
    pub grpc_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _repo: Option<tempfile::TempDir>,
}

impl TestServer {
    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Keeps `repo` until the server is dropped (for repositories a test wrote itself).
    pub fn keep(&mut self, repo: tempfile::TempDir) {
        self._repo = Some(repo);
    }

    /// Sends the stop signal and waits for the server to finish draining.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().expect("stopped once").send(());
        self.task.take().expect("running").await?
    }
}

/// Default test settings for a repository.
pub fn serve_config(repo: &Path) -> ServeConfig {
    ServeConfig {
        repo: repo.display().to_string(),
        poll_interval: Duration::ZERO,
        cache_dir: None,
        model_control: spindle_server::repository::ModelControl::Poll,
        engine: EngineChoice::Auto,
        device: Device::Cpu,
        max_body: 64 << 20,
        shutdown_grace: Duration::from_secs(5),
        grpc_max_message: 64 << 20,
        max_image_pixels: spindle_server::preprocess::DEFAULT_MAX_IMAGE_PIXELS,
        decode: Default::default(),
        connections: Default::default(),
        security: Default::default(),
    }
}

/// Loads `config` and serves it on 127.0.0.1:0.
pub async fn start(config: ServeConfig) -> anyhow::Result<TestServer> {
    let server = Server::load(config).await?;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = http.local_addr()?;
    let grpc_addr = grpc.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let listeners = Listeners {
        http,
        grpc: Some(grpc),
    };
    let task = tokio::spawn(server.run(listeners, async move {
        let _ = stopped.await;
    }));
    Ok(TestServer {
        addr,
        grpc_addr,
        stop: Some(stop),
        task: Some(task),
        _repo: None,
    })
}

/// Writes the given zoo models into a fresh temporary repository.
pub fn zoo_repo(models: &[ZooModel]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    spindle_zoo::write_zoo(dir.path(), 7, models).expect("writing the zoo");
    dir
}

/// A server over a fresh repository holding `models`; the repository lives as long as it does.
pub async fn start_zoo(models: &[ZooModel]) -> anyhow::Result<TestServer> {
    let repo = zoo_repo(models);
    let mut server = start(serve_config(repo.path())).await?;
    server._repo = Some(repo);
    Ok(server)
}

/// The sum of a server's Prometheus samples whose line starts with `prefix` (a metric name, or
/// a name and its first labels: spindle writes labels sorted), from `{base_url}/metrics`.
pub async fn metric_sum(base_url: &str, prefix: &str) -> f64 {
    let text = reqwest::get(format!("{base_url}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("a /metrics body");
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The release (or debug) `spindle` binary beside this test's executable. `cargo test
/// --workspace` builds it (the cli package has integration tests); run alone, build it
/// first with `cargo build --release --bin spindle`.
pub fn spindle_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/spindle
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("spindle"))
        .expect("target directory");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --release --bin spindle` (or run `cargo test --workspace`)",
        bin.display()
    );
    bin
}

/// A `spindle serve` child process; killed when dropped.
pub struct ServeProcess {
    /// The process.
    pub child: std::process::Child,
    /// Its HTTP URL.
    pub url: String,
}

impl ServeProcess {
    /// Starts `spindle serve --repo REPO --http-addr ADDR --no-grpc` (tract: no native
    /// library needed, and one engine per core keeps several replicas light) and waits until
    /// it is ready.
    pub async fn start(repo: &Path, addr: SocketAddr) -> anyhow::Result<ServeProcess> {
        Self::start_with(repo, addr, &[]).await
    }

    /// [`ServeProcess::start`] with `extra` flags after the usual ones.
    pub async fn start_with(
        repo: &Path,
        addr: SocketAddr,
        extra: &[&str],
    ) -> anyhow::Result<ServeProcess> {
        let child = std::process::Command::new(spindle_binary())
            .args([
                "serve",
                "--poll-interval",
                "0",
                "--engine",
                "tract",
                "--no-grpc",
            ])
            .arg("--repo")
            .arg(repo)
            .arg("--http-addr")
            .arg(addr.to_string())
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut process = ServeProcess {
            child,
            url: format!("http://{addr}"),
        };
        process.wait_ready(Duration::from_secs(60)).await?;
        Ok(process)
    }

    /// Waits until `/v2/health/ready` answers 200.
    pub async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let client = spindle_client::Client::builder([self.url.clone()])
            .timeout(Duration::from_secs(1))
            .build()?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("spindle serve at {} exited early: {status}", self.url);
            }
            if matches!(client.ready().await.first(), Some(Ok(true))) {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "spindle serve at {} not ready within {limit:?}",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `url` and parses the JSON answer (panicking, with the URL, when there is none).
pub async fn get_json(url: &str) -> serde_json::Value {
    let response = reqwest::get(url).await.expect(url);
    response.json().await.expect(url)
}

/// POSTs `body` as JSON to `url`: the status and the JSON answer.
pub async fn post_json(
    url: &str,
    body: &serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .expect(url);
    let status = response.status();
    (status, response.json().await.expect(url))
}

/// The message of a server's refusal with `status`, or a panic naming `what` and what came
/// instead: the tests' one way to say "this call must fail with that code".
pub fn refusal<T: std::fmt::Debug>(
    result: Result<T, spindle_client::ClientError>,
    status: u16,
    what: &str,
) -> String {
    match result {
        Err(spindle_client::ClientError::Server {
            status: got,
            message,
            ..
        }) if got == status => message,
        other => panic!("{what}: expected a {status}, got {other:?}"),
    }
}

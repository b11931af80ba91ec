//! The arguments of `spindle loadtest` and the parsers for their simple values (counts,
//! durations). The values they hold are defined where they are used: level lists in
//! [`crate::concurrency`] and [`crate::rates`], the rest in [`crate::options`].

use crate::concurrency::ConcurrencyLevels;
use crate::options::{Arrivals, Load, Protocol, ShapeOverride};
use crate::rates::RateLevels;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// The concurrency levels used when neither `--concurrency` nor `--rate` is given.
pub const DEFAULT_CONCURRENCY: [usize; 4] = [1, 4, 16, 64];

/// Measure a KServe v2 HTTP server's throughput and latency at several concurrency levels.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct LoadtestArgs {
    /// Server base URL(s), comma-separated (http://host:port; https://host:port with
    /// --ca-cert; grpc:// or grpcs:// with --protocol grpc). Each connection is pinned to one
    /// URL, assigned round-robin.
    #[arg(long, value_delimiter = ',', required_unless_present = "yarn_service")]
    pub url: Vec<String>,
    /// Find the servers through YARN instead: the READY containers of the service at
    /// http://RM_HOST:PORT/SERVICE (deployed with `spindle yarn deploy`), listed once before
    /// the load starts.
    #[arg(long, conflicts_with = "url")]
    pub yarn_service: Option<String>,
    /// User for the ResourceManager's simple authentication (user.name).
    #[arg(long, requires = "yarn_service")]
    pub yarn_user: Option<String>,
    /// TLS and token options: the token is sent with every request, encoded once.
    #[command(flatten)]
    pub security: spindle_client::ClientSecurityArgs,
    /// Model to load-test.
    #[arg(long)]
    pub model: String,
    /// Model version (default: the server's choice).
    #[arg(long)]
    pub model_version: Option<String>,
    /// Closed-loop concurrency levels: a list (1,4,16,64), a range with a factor (1:64:x2) or a
    /// step (1:10:+3), or a mix of these, comma-separated. Default 1,4,16,64 unless --rate.
    #[arg(long, conflicts_with = "rate")]
    pub concurrency: Option<ConcurrencyLevels>,
    /// Open-loop request rates (requests/s): a list (100,200), a range (100:1000:x2,
    /// 100:500:+100) or a mix. Latency includes waiting to be sent; late requests are counted.
    #[arg(long)]
    pub rate: Option<RateLevels>,
    /// Spacing of open-loop send times.
    #[arg(long, value_enum, default_value_t = Arrivals::Constant, requires = "rate")]
    pub arrivals: Arrivals,
    /// Open loop: requests in flight at most (and connections per run at most); a request due
    /// while all are busy waits, and is reported as late.
    #[arg(long, default_value_t = 128, value_parser = parse_positive, requires = "rate")]
    pub max_in_flight: usize,
    /// Request encoding.
    #[arg(long, value_enum, default_value_t = Protocol::HttpBinary)]
    pub protocol: Protocol,
    /// Rows per request (the size of the batch dimension).
    #[arg(long, default_value_t = 1, value_parser = parse_positive)]
    pub batch: usize,
    /// Fixed dimensions (without the batch dimension) for inputs with variable dims, e.g.
    /// `--shape tokens:128`. Repeat for several inputs.
    #[arg(long, value_name = "NAME:D1,D2,..")]
    pub shape: Vec<ShapeOverride>,
    /// Real samples instead of generated inputs: a directory of JPEG/PNG images, one image, a
    /// .txt/.lst list of images, Criteo TSV rows (.tsv, .tsv.gz, .tsv.bz2), or KServe v2 JSON
    /// tensors (.json, one request or an array). Checked against the model before any load is
    /// sent; requests take the samples in turn, --batch per request.
    #[arg(long, value_name = "PATH")]
    pub input_data: Option<PathBuf>,
    /// The model's features.toml, for generated ids of transformed Criteo rows (each position
    /// drawn from its feature's slice of the id space) when the server does not describe the
    /// model's configuration (a peer such as MLServer); Spindle's own is read from the server.
    #[arg(long, value_name = "FEATURES.toml", conflicts_with = "input_data")]
    pub features: Option<PathBuf>,
    /// Load sent before each level's measurement starts (discarded).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Length of one measurement window.
    #[arg(long, default_value = "2s", value_parser = parse_nonzero_duration)]
    pub window: Duration,
    /// Windows measured per level at most; a level that is not stable by then is reported as
    /// unstable.
    #[arg(long, default_value_t = 10, value_parser = parse_positive)]
    pub max_windows: usize,
    /// Stability threshold in percent: a level ends once 3 consecutive windows' throughputs are
    /// each within this of their mean.
    #[arg(long, default_value_t = 10.0)]
    pub stability: f64,
    /// Hard cap on the requests sent per level, warmup included.
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Per-request timeout (connecting included).
    #[arg(long, default_value = "10s", value_parser = parse_nonzero_duration)]
    pub timeout: Duration,
    /// Threads the closed-loop connections are spread over, each an event loop of its own (as
    /// wrk's -t). One drives about 50,000 small requests/s on a 2-core box; more only help when
    /// that thread is saturated, and every one takes CPU from a server on the same machine.
    #[arg(long, default_value_t = 1, value_parser = parse_positive)]
    pub threads: usize,
    /// Write the results as CSV with perf_analyzer's columns.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write the full report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a chart (SVG) of throughput and p50/p90/p99 latency against concurrency or rate.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Print one line per measurement window.
    #[arg(long)]
    pub verbose: bool,
}

impl LoadtestArgs {
    /// Arguments for one server and model with every other flag at its default.
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> Self {
        LoadtestArgs {
            url: vec![url.into()],
            yarn_service: None,
            yarn_user: None,
            security: spindle_client::ClientSecurityArgs::default(),
            model: model.into(),
            model_version: None,
            concurrency: None,
            rate: None,
            arrivals: Arrivals::Constant,
            max_in_flight: 128,
            protocol: Protocol::HttpBinary,
            batch: 1,
            shape: Vec::new(),
            input_data: None,
            features: None,
            warmup: Duration::from_secs(2),
            window: Duration::from_secs(2),
            max_windows: 10,
            stability: 10.0,
            max_requests: None,
            timeout: Duration::from_secs(10),
            threads: 1,
            csv: None,
            json: None,
            chart: None,
            verbose: false,
        }
    }

    /// Checks what the value parsers cannot (the struct may be built without clap).
    pub fn validate(&self) -> anyhow::Result<()> {
        match (&self.yarn_service, self.url.is_empty()) {
            (None, true) => anyhow::bail!("give at least one --url, or --yarn-service"),
            (Some(_), false) => anyhow::bail!(
                "--url and --yarn-service exclude each other: give the servers or the service"
            ),
            _ => {}
        }
        anyhow::ensure!(
            self.yarn_user.is_none() || self.yarn_service.is_some(),
            "--yarn-user is the ResourceManager user: it needs --yarn-service"
        );
        match (&self.concurrency, &self.rate) {
            (Some(_), Some(_)) => anyhow::bail!(
                "--concurrency (closed loop) and --rate (open loop) exclude each other: give one"
            ),
            (Some(levels), None) => {
                anyhow::ensure!(
                    !levels.0.is_empty(),
                    "give at least one --concurrency level"
                );
                anyhow::ensure!(
                    levels.0.iter().all(|&c| c > 0),
                    "concurrency levels must be at least 1, got {levels}"
                );
            }
            (None, Some(rates)) => {
                anyhow::ensure!(!rates.0.is_empty(), "give at least one --rate");
                anyhow::ensure!(
                    rates.0.iter().all(|r| r.is_finite() && *r > 0.0),
                    "request rates must be above 0, got {rates}"
                );
                anyhow::ensure!(self.max_in_flight > 0, "--max-in-flight must be at least 1");
            }
            (None, None) => {}
        }
        anyhow::ensure!(self.batch > 0, "--batch must be at least 1");
        anyhow::ensure!(!self.window.is_zero(), "--window must be longer than zero");
        anyhow::ensure!(
            !self.timeout.is_zero(),
            "--timeout must be longer than zero"
        );
        anyhow::ensure!(self.max_windows > 0, "--max-windows must be at least 1");
        anyhow::ensure!(self.threads > 0, "--threads must be at least 1");
        anyhow::ensure!(
            self.stability.is_finite() && self.stability > 0.0,
            "--stability is a percentage above zero, got {}",
            self.stability
        );
        Ok(())
    }
}

impl LoadtestArgs {
    /// The levels to measure, in order: `--rate` levels, `--concurrency` levels, or the default
    /// concurrency sweep.
    pub fn loads(&self) -> Vec<Load> {
        match (&self.rate, &self.concurrency) {
            (Some(rates), _) => rates
                .0
                .iter()
                .map(|&rps| Load::Rate {
                    rps,
                    arrivals: self.arrivals,
                    max_in_flight: self.max_in_flight,
                })
                .collect(),
            (None, Some(levels)) => levels.0.iter().copied().map(Load::Concurrency).collect(),
            (None, None) => DEFAULT_CONCURRENCY.map(Load::Concurrency).to_vec(),
        }
    }
}

fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

fn parse_nonzero_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("'{text}' is not a duration like 500ms or 2s: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadtestArgs,
    }

    #[test]
    fn rate_and_concurrency_exclude_each_other() {
        let base = ["loadtest", "--url", "http://h:1", "--model", "m"];
        let with = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra));
        let a = with(&[
            "--rate",
            "100:400:x2",
            "--arrivals",
            "poisson",
            "--max-in-flight",
            "8",
        ])
        .unwrap()
        .args;
        assert_eq!(
            a.loads(),
            [100.0, 200.0, 400.0].map(|rps| Load::Rate {
                rps,
                arrivals: Arrivals::Poisson,
                max_in_flight: 8
            })
        );
        assert!(with(&["--rate", "100", "--concurrency", "4"]).is_err());
        assert!(
            with(&["--arrivals", "poisson"]).is_err(),
            "--arrivals needs --rate"
        );
        let c = with(&[]).unwrap().args;
        assert_eq!(c.loads(), DEFAULT_CONCURRENCY.map(Load::Concurrency));
        let mut both = c.clone();
        both.concurrency = Some(ConcurrencyLevels(vec![1]));
        both.rate = Some(RateLevels(vec![5.0]));
        let e = both.validate().unwrap_err().to_string();
        assert!(e.contains("exclude each other"), "{e}");
    }

    #[test]
    fn servers_come_from_urls_or_a_yarn_service() {
        let base = ["loadtest", "--model", "m"];
        let with = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra));
        let a = with(&["--yarn-service", "http://rm:8088/s", "--yarn-user", "ann"])
            .unwrap()
            .args;
        assert!(a.url.is_empty());
        assert_eq!(a.yarn_service.as_deref(), Some("http://rm:8088/s"));
        a.validate().unwrap();
        assert!(with(&[]).is_err(), "neither --url nor --yarn-service");
        assert!(with(&["--url", "http://h:1", "--yarn-service", "http://rm:8088/s"]).is_err());
        let stray_user = with(&["--url", "http://h:1", "--yarn-user", "ann"])
            .map_err(|e| e.to_string())
            .and_then(|cli| cli.args.validate().map_err(|e| e.to_string()));
        assert!(stray_user.unwrap_err().contains("--yarn-service"));
        let mut both = LoadtestArgs::new("http://h:1", "m");
        both.yarn_service = Some("http://rm:8088/s".into());
        let e = both.validate().unwrap_err().to_string();
        assert!(e.contains("exclude each other"), "{e}");
    }

    #[test]
    fn clap_defaults_match_new() {
        let cli = Cli::parse_from(["loadtest", "--url", "http://h:1", "--model", "m"]);
        assert_eq!(cli.args, LoadtestArgs::new("http://h:1", "m"));
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::parse_from([
            "loadtest",
            "--url",
            "http://a:1,http://b:2",
            "--model",
            "m",
            "--concurrency",
            "1:64:x2",
            "--protocol",
            "http-json",
            "--batch",
            "8",
            "--warmup",
            "500ms",
            "--window",
            "1s",
            "--max-requests",
            "1000",
            "--timeout",
            "250ms",
            "--shape",
            "x:3,4",
        ]);
        let a = cli.args;
        assert_eq!(a.url, vec!["http://a:1", "http://b:2"]);
        assert_eq!(a.concurrency.unwrap().0, vec![1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(a.protocol, Protocol::HttpJson);
        assert_eq!((a.batch, a.max_requests), (8, Some(1000)));
        assert_eq!(
            (a.warmup, a.window, a.timeout),
            (
                Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_millis(250)
            )
        );
        assert_eq!(a.shape[0].dims, vec![3, 4]);
        assert!(
            Cli::try_parse_from([
                "loadtest",
                "--url",
                "http://h:1",
                "--model",
                "m",
                "--window",
                "0s"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "loadtest",
                "--url",
                "http://h:1",
                "--model",
                "m",
                "--batch",
                "0"
            ])
            .is_err()
        );
    }
}

//! Repository metrics: load durations, versions served, poll errors, bytes downloaded. Load
//! failures by reason use the core's `spindle_model_load_failures_total`.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

/// Metric handles of the repository watcher.
#[derive(Clone)]
pub struct RepositoryMetrics {
    /// Seconds from the start of a version's download to it serving, by model.
    pub load_duration: HistogramVec,
    /// The newest version serving, by model (0: none).
    pub current_version: IntGaugeVec,
    /// Polls that failed (repository unreachable or unreadable).
    pub poll_errors: IntCounter,
    /// Bytes downloaded from the repository into the cache.
    pub bytes_downloaded: IntCounter,
    /// 1 while serving copies from the cache because the repository was unreachable at startup.
    pub serving_from_cache: IntGauge,
}

impl RepositoryMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> RepositoryMetrics {
        let metrics = RepositoryMetrics {
            load_duration: HistogramVec::new(
                HistogramOpts::new(
                    "spindle_model_load_duration_seconds",
                    "Time to download, load and warm up a model version, by model.",
                )
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
                &["model"],
            )
            .expect("valid histogram"),
            current_version: IntGaugeVec::new(
                Opts::new(
                    "spindle_model_current_version",
                    "The newest version of each model that is serving (0: none).",
                ),
                &["model"],
            )
            .expect("valid gauge"),
            poll_errors: IntCounter::new(
                "spindle_repository_poll_errors_total",
                "Repository polls that failed (unreachable or unreadable storage).",
            )
            .expect("valid counter"),
            bytes_downloaded: IntCounter::new(
                "spindle_repository_bytes_downloaded_total",
                "Bytes downloaded from the model repository into the local cache.",
            )
            .expect("valid counter"),
            serving_from_cache: IntGauge::new(
                "spindle_repository_serving_from_cache",
                "1 while serving cached copies because the repository was unreachable at startup.",
            )
            .expect("valid gauge"),
        };
        for collector in [
            Box::new(metrics.load_duration.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.current_version.clone()),
            Box::new(metrics.poll_errors.clone()),
            Box::new(metrics.bytes_downloaded.clone()),
            Box::new(metrics.serving_from_cache.clone()),
        ] {
            registry
                .register(collector)
                .expect("repository metrics are registered once");
        }
        metrics
    }
}

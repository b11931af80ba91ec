//! Repository metrics: load durations, versions served, poll errors, bytes downloaded. Load
//! failures by reason use the core's `spindle_model_load_failures_total`; the load-duration
//! buckets are declared with the core's histograms, since the registry fixes them when it is built.

use spindle_core::metrics::{Family, Histogram, IntCounter, IntGauge, Registry};

/// Metric handles of the repository watcher.
#[derive(Clone)]
pub struct RepositoryMetrics {
    /// Seconds from the start of a version's download to it serving, by model.
    pub load_duration: Family<Histogram>,
    /// The newest version serving, by model (0: none).
    pub current_version: Family<IntGauge>,
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
        RepositoryMetrics {
            load_duration: registry.histogram_family(
                "spindle_model_load_duration_seconds",
                "Time to download, load and warm up a model version, by model.",
                &["model"],
            ),
            current_version: registry.gauge_family(
                "spindle_model_current_version",
                "The newest version of each model that is serving (0: none).",
                &["model"],
            ),
            poll_errors: registry.counter(
                "spindle_repository_poll_errors_total",
                "Repository polls that failed (unreachable or unreadable storage).",
            ),
            bytes_downloaded: registry.counter(
                "spindle_repository_bytes_downloaded_total",
                "Bytes downloaded from the model repository into the local cache.",
            ),
            serving_from_cache: registry.gauge(
                "spindle_repository_serving_from_cache",
                "1 while serving cached copies because the repository was unreachable at startup.",
            ),
        }
    }
}

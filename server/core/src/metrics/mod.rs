//! Prometheus metrics: names, help texts and buckets live here, in one place.
//!
//! Label lookups hash and lock, so per-model handles are resolved once ([`ModelMetrics`]) when a
//! model version is loaded and the hot path only touches atomics. How metrics are stored and
//! rendered is [`Registry`]'s business.

mod registry;

pub use registry::{Family, Histogram, IntCounter, IntGauge, Registry};

/// Latency buckets from 50 us to 10 s: the fast end matters for small models on CPU.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A version's download, load and warm-up: from a small model on local disk to a large one
/// over HDFS.
const LOAD_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Every histogram in the registry with its buckets. The exporter fixes bucket layouts when the
/// registry is built, before the repository watcher registers its metrics, so its load-duration
/// histogram is declared here too.
const HISTOGRAMS: &[(&str, &[f64])] = &[
    ("spindle_request_duration_seconds", LATENCY_BUCKETS),
    ("spindle_queue_duration_seconds", LATENCY_BUCKETS),
    ("spindle_compute_duration_seconds", LATENCY_BUCKETS),
    ("spindle_batch_size", BATCH_BUCKETS),
    ("spindle_model_load_duration_seconds", LOAD_BUCKETS),
];

/// Every metric the server exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: Family<IntCounter>,
    request_duration: Family<Histogram>,
    queue_duration: Family<Histogram>,
    compute_duration: Family<Histogram>,
    batch_size: Family<Histogram>,
    queue_depth: Family<IntGauge>,
    in_flight: Family<IntGauge>,
    inferences: Family<IntCounter>,
    executions: Family<IntCounter>,
    /// Model versions currently loaded and serving.
    pub models_loaded: IntGauge,
    /// Model loads that failed, by model and reason.
    pub load_failures: Family<IntCounter>,
}

const MODEL_VERSION: &[&str] = &["model", "version"];

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let registry = Registry::new(HISTOGRAMS);
        let histogram = |name, help| registry.histogram_family(name, help, MODEL_VERSION);
        Metrics {
            requests: registry.counter_family(
                "spindle_requests_total",
                "Inference requests by model, version and outcome (success or an error class).",
                &["model", "version", "outcome"],
            ),
            request_duration: histogram(
                "spindle_request_duration_seconds",
                "Time from a request's arrival at the batcher to its answer.",
            ),
            queue_duration: histogram(
                "spindle_queue_duration_seconds",
                "Time a request waited in its model's queue before its batch started.",
            ),
            compute_duration: histogram(
                "spindle_compute_duration_seconds",
                "Engine time per batch, including joining inputs and splitting outputs.",
            ),
            batch_size: histogram("spindle_batch_size", "Rows per batch handed to an engine."),
            queue_depth: registry.gauge_family(
                "spindle_queue_depth",
                "Requests waiting in a model's queue.",
                MODEL_VERSION,
            ),
            in_flight: registry.gauge_family(
                "spindle_requests_in_flight",
                "Requests inside the core: queued or computing.",
                MODEL_VERSION,
            ),
            inferences: registry.counter_family(
                "spindle_inference_count_total",
                "Rows inferred (a request of batch 4 counts 4).",
                MODEL_VERSION,
            ),
            executions: registry.counter_family(
                "spindle_execution_count_total",
                "Engine executions (batches run).",
                MODEL_VERSION,
            ),
            models_loaded: registry.gauge(
                "spindle_models_loaded",
                "Model versions loaded and serving.",
            ),
            load_failures: registry.counter_family(
                "spindle_model_load_failures_total",
                "Model loads that failed, by model and reason.",
                &["model", "reason"],
            ),
            registry,
        }
    }

    /// The registry, for front ends that add their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        self.registry.render()
    }

    /// Handles for one model version.
    pub fn for_model(&self, model: &str, version: u64) -> ModelMetrics {
        let version = version.to_string();
        let labels = [model, version.as_str()];
        ModelMetrics {
            model: model.to_string(),
            version: version.clone(),
            requests: self.requests.clone(),
            successes: self
                .requests
                .with_label_values(&[model, version.as_str(), "success"]),
            request_duration: self.request_duration.with_label_values(&labels),
            queue_duration: self.queue_duration.with_label_values(&labels),
            compute_duration: self.compute_duration.with_label_values(&labels),
            batch_size: self.batch_size.with_label_values(&labels),
            queue_depth: self.queue_depth.with_label_values(&labels),
            in_flight: self.in_flight.with_label_values(&labels),
            inferences: self.inferences.with_label_values(&labels),
            executions: self.executions.with_label_values(&labels),
            stats: Default::default(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Pre-resolved metric handles of one model version.
#[derive(Clone)]
pub struct ModelMetrics {
    model: String,
    version: String,
    requests: Family<IntCounter>,
    // The one outcome counted on every good request, resolved once (see the module doc).
    successes: IntCounter,
    /// End-to-end time in the core.
    pub request_duration: Histogram,
    /// Queue wait.
    pub queue_duration: Histogram,
    /// Engine time per batch.
    pub compute_duration: Histogram,
    /// Rows per batch.
    pub batch_size: Histogram,
    /// Requests queued now.
    pub queue_depth: IntGauge,
    /// Requests queued or computing now.
    pub in_flight: IntGauge,
    /// Rows inferred.
    pub inferences: IntCounter,
    /// Batches executed.
    pub executions: IntCounter,
    /// Triton-style cumulative statistics of this version.
    pub stats: std::sync::Arc<crate::statistics::ModelStats>,
}

impl ModelMetrics {
    /// Counts one request with its outcome label (`success`, or an error class label).
    pub fn count_request(&self, outcome: &str) {
        if outcome == "success" {
            self.successes.inc();
            return;
        }
        self.requests
            .with_label_values(&[self.model.as_str(), self.version.as_str(), outcome])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_names_and_labels() {
        let metrics = Metrics::new();
        let m = metrics.for_model("cifar10", 1);
        m.count_request("success");
        m.batch_size.observe(4.0);
        metrics.models_loaded.set(2);
        let text = metrics.render();
        assert!(
            text.contains(
                r#"spindle_requests_total{model="cifar10",outcome="success",version="1"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("spindle_batch_size_bucket"), "{text}");
        assert!(text.contains("spindle_models_loaded 2"), "{text}");
    }
}

//! Prometheus metrics: names, help texts and buckets live here, in one place.
//!
//! Label lookups hash and lock, so per-model handles are resolved once ([`ModelMetrics`]) when a
//! model version is loaded and the hot path only touches atomics.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Latency buckets from 50 us to 10 s: the fast end matters for small models on CPU.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Every metric the server exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    queue_duration: HistogramVec,
    compute_duration: HistogramVec,
    batch_size: HistogramVec,
    queue_depth: IntGaugeVec,
    in_flight: IntGaugeVec,
    inferences: IntCounterVec,
    executions: IntCounterVec,
    /// Model versions currently loaded and serving.
    pub models_loaded: IntGauge,
    /// Model loads that failed, by model and reason.
    pub load_failures: IntCounterVec,
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        &["model", "version"],
    )
    .expect("valid histogram definition")
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter definition")
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let metrics = Metrics {
            requests: counter(
                "spindle_requests_total",
                "Inference requests by model, version and outcome (success or an error class).",
                &["model", "version", "outcome"],
            ),
            request_duration: histogram(
                "spindle_request_duration_seconds",
                "Time from a request's arrival at the batcher to its answer.",
                LATENCY_BUCKETS,
            ),
            queue_duration: histogram(
                "spindle_queue_duration_seconds",
                "Time a request waited in its model's queue before its batch started.",
                LATENCY_BUCKETS,
            ),
            compute_duration: histogram(
                "spindle_compute_duration_seconds",
                "Engine time per batch, including joining inputs and splitting outputs.",
                LATENCY_BUCKETS,
            ),
            batch_size: histogram(
                "spindle_batch_size",
                "Rows per batch handed to an engine.",
                BATCH_BUCKETS,
            ),
            queue_depth: IntGaugeVec::new(
                Opts::new(
                    "spindle_queue_depth",
                    "Requests waiting in a model's queue.",
                ),
                &["model", "version"],
            )
            .expect("valid gauge definition"),
            in_flight: IntGaugeVec::new(
                Opts::new(
                    "spindle_requests_in_flight",
                    "Requests inside the core: queued or computing.",
                ),
                &["model", "version"],
            )
            .expect("valid gauge definition"),
            inferences: counter(
                "spindle_inference_count_total",
                "Rows inferred (a request of batch 4 counts 4).",
                &["model", "version"],
            ),
            executions: counter(
                "spindle_execution_count_total",
                "Engine executions (batches run).",
                &["model", "version"],
            ),
            models_loaded: IntGauge::new(
                "spindle_models_loaded",
                "Model versions loaded and serving.",
            )
            .expect("valid gauge definition"),
            load_failures: counter(
                "spindle_model_load_failures_total",
                "Model loads that failed, by model and reason.",
                &["model", "reason"],
            ),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.requests.clone()),
            Box::new(metrics.request_duration.clone()),
            Box::new(metrics.queue_duration.clone()),
            Box::new(metrics.compute_duration.clone()),
            Box::new(metrics.batch_size.clone()),
            Box::new(metrics.queue_depth.clone()),
            Box::new(metrics.in_flight.clone()),
            Box::new(metrics.inferences.clone()),
            Box::new(metrics.executions.clone()),
            Box::new(metrics.models_loaded.clone()),
            Box::new(metrics.load_failures.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        metrics
    }

    /// The registry, for front ends that add their own metrics and for `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut out)
            .expect("text encoding into a String cannot fail");
        out
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
    requests: IntCounterVec,
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

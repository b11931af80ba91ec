//! Where metrics are registered and rendered: a `metrics` recorder of its own per [`Registry`],
//! rendered in the Prometheus text format by `metrics-exporter-prometheus`.
//!
//! The recorder is never installed as the process-wide one: several servers can run in one
//! process (the integration tests start many), and each must report only its own numbers.
//! Handles are registered once and kept by whoever records, so recording touches atomics only;
//! they keep the integer API the call sites count in (the exporter keeps gauges as `f64`, exact
//! for every integer below 2^53).

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// How often histogram samples, which the exporter buffers as they are recorded, are folded
/// into their buckets; without it a server nobody scrapes would buffer every sample.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

// The exporter ignores metadata; the `Recorder` methods still take some.
const METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// A set of metrics rendered together on one `/metrics`. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    histograms: Vec<&'static str>,
    // Dropped with the last clone of the registry, which stops the upkeep thread.
    _stop_upkeep: mpsc::Sender<()>,
}

impl Registry {
    /// A registry whose histograms are the ones named, each with its bucket bounds: the exporter
    /// fixes bucket layouts when the recorder is built, so every histogram is declared up front.
    pub(super) fn new(histograms: &[(&'static str, &[f64])]) -> Registry {
        let mut builder = PrometheusBuilder::new();
        for &(name, bounds) in histograms {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.to_string()), bounds)
                .expect("bucket bounds are not empty");
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let (stop, stopped) = mpsc::channel::<()>();
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("spindle-metrics".to_string())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(UPKEEP_INTERVAL)
                {
                    upkeep.run_upkeep();
                }
            })
            .expect("spawning the metrics upkeep thread");
        Registry {
            inner: Arc::new(Inner {
                recorder,
                handle,
                histograms: histograms.iter().map(|&(name, _)| name).collect(),
                _stop_upkeep: stop,
            }),
        }
    }

    /// A counter without labels.
    pub fn counter(&self, name: &'static str, help: &'static str) -> IntCounter {
        self.inner
            .recorder
            .describe_counter(name.into(), None, help.into());
        self.register_counter(&Key::from_static_name(name))
    }

    /// A gauge without labels.
    pub fn gauge(&self, name: &'static str, help: &'static str) -> IntGauge {
        self.inner
            .recorder
            .describe_gauge(name.into(), None, help.into());
        self.register_gauge(&Key::from_static_name(name))
    }

    /// Counters that differ by the values of `labels`.
    pub fn counter_family(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[&'static str],
    ) -> Family<IntCounter> {
        self.inner
            .recorder
            .describe_counter(name.into(), None, help.into());
        self.family(name, labels, Registry::register_counter)
    }

    /// Gauges that differ by the values of `labels`.
    pub fn gauge_family(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[&'static str],
    ) -> Family<IntGauge> {
        self.inner
            .recorder
            .describe_gauge(name.into(), None, help.into());
        self.family(name, labels, Registry::register_gauge)
    }

    /// Histograms that differ by the values of `labels`; `name` must be one of the histograms
    /// the registry was built with, or it would be rendered as a summary without buckets.
    pub fn histogram_family(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[&'static str],
    ) -> Family<Histogram> {
        assert!(
            self.inner.histograms.contains(&name),
            "histogram {name} has no buckets: add it to the registry's histograms"
        );
        self.inner
            .recorder
            .describe_histogram(name.into(), None, help.into());
        self.family(name, labels, Registry::register_histogram)
    }

    /// Every metric in the Prometheus text format: families sorted by name, and the series of a
    /// counter or gauge sorted by their labels (the exporter's own order changes per call).
    pub fn render(&self) -> String {
        sorted(&self.inner.handle.render())
    }

    fn family<M>(
        &self,
        name: &'static str,
        labels: &[&'static str],
        register: fn(&Registry, &Key) -> M,
    ) -> Family<M> {
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.sort_by_key(|&i| labels[i]);
        Family {
            registry: self.clone(),
            name,
            labels: labels.to_vec(),
            order,
            register,
        }
    }

    fn register_counter(&self, key: &Key) -> IntCounter {
        IntCounter(self.inner.recorder.register_counter(key, &METADATA))
    }

    fn register_gauge(&self, key: &Key) -> IntGauge {
        IntGauge(self.inner.recorder.register_gauge(key, &METADATA))
    }

    fn register_histogram(&self, key: &Key) -> Histogram {
        Histogram(self.inner.recorder.register_histogram(key, &METADATA))
    }
}

/// Metrics of one name that differ by their label values; each set of values is one series.
#[derive(Clone)]
pub struct Family<M> {
    registry: Registry,
    name: &'static str,
    labels: Vec<&'static str>,
    // Labels are rendered sorted by name, as the Prometheus client this replaced did, so series
    // read the same whatever order a family lists its labels in.
    order: Vec<usize>,
    register: fn(&Registry, &Key) -> M,
}

impl<M> Family<M> {
    /// The series with these label values, given in the family's label order. It hashes and
    /// locks: resolve it once where the same series is recorded often.
    pub fn with_label_values(&self, values: &[&str]) -> M {
        assert_eq!(
            values.len(),
            self.labels.len(),
            "{} takes the labels {:?}",
            self.name,
            self.labels
        );
        let labels: Vec<Label> = self
            .order
            .iter()
            .map(|&i| Label::new(self.labels[i], values[i].to_string()))
            .collect();
        (self.register)(&self.registry, &Key::from_parts(self.name, labels))
    }
}

/// A counter series.
#[derive(Clone)]
pub struct IntCounter(metrics::Counter);

impl IntCounter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.increment(1);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.increment(n);
    }
}

/// A gauge series.
#[derive(Clone)]
pub struct IntGauge(metrics::Gauge);

impl IntGauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.increment(1.0);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.0.decrement(1.0);
    }

    /// Subtracts `n`.
    pub fn sub(&self, n: i64) {
        self.0.decrement(n as f64);
    }

    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.set(value as f64);
    }
}

/// A histogram series.
#[derive(Clone)]
pub struct Histogram(metrics::Histogram);

impl Histogram {
    /// Records one sample.
    pub fn observe(&self, value: f64) {
        self.0.record(value);
    }
}

/// The exporter's text with families in name order and the series of each counter and gauge in
/// label order. A histogram's lines keep their order: buckets ascending, then sum and count.
fn sorted(text: &str) -> String {
    let mut families: Vec<Vec<&str>> = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| block.lines().collect())
        .collect();
    for lines in &mut families {
        let head = lines.iter().take_while(|l| l.starts_with('#')).count();
        let kind = lines[..head]
            .iter()
            .find_map(|l| l.strip_prefix("# TYPE "))
            .and_then(|l| l.split(' ').nth(1));
        if matches!(kind, Some("counter" | "gauge")) {
            lines[head..].sort_unstable();
        }
    }
    families.sort_by_key(|lines| {
        lines
            .first()
            .and_then(|l| l.split(' ').nth(2))
            .map(str::to_string)
    });
    let mut out = String::with_capacity(text.len());
    for lines in families {
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_in_name_order_and_series_in_label_order() {
        let registry = Registry::new(&[("t_seconds", &[0.5, 1.0])]);
        let gauges = registry.gauge_family("t_b", "Gauges.", &["z", "a"]);
        gauges.with_label_values(&["2", "x"]).set(3);
        gauges.with_label_values(&["1", "y"]).inc();
        registry.counter("t_a_total", "A counter.").inc_by(7);
        registry
            .histogram_family("t_seconds", "A histogram.", &["m"])
            .with_label_values(&["one"])
            .observe(0.75);
        let text = registry.render();
        let b = [
            "# HELP t_b Gauges.",
            "# TYPE t_b gauge",
            r#"t_b{a="x",z="2"} 3"#,
            r#"t_b{a="y",z="1"} 1"#,
        ]
        .join("\n");
        let histogram = [
            r#"t_seconds_bucket{m="one",le="0.5"} 0"#,
            r#"t_seconds_bucket{m="one",le="1"} 1"#,
            r#"t_seconds_bucket{m="one",le="+Inf"} 1"#,
            r#"t_seconds_sum{m="one"} 0.75"#,
            r#"t_seconds_count{m="one"} 1"#,
        ]
        .join("\n");
        let a = text.find("t_a_total 7").expect(&text);
        assert!(a < text.find(&b).expect(&text), "{text}");
        assert!(text.find(&b).unwrap() < text.find(&histogram).expect(&text));
    }

    #[test]
    #[should_panic(expected = "no buckets")]
    fn a_histogram_needs_its_buckets_declared() {
        Registry::new(&[]).histogram_family("t_undeclared_seconds", "Nope.", &[]);
    }
}

//! The server's own timings, from its Triton-style statistics (`GET /v2/models/{m}/stats`, or
//! gRPC `ModelStatistics`): cumulative counts and nanoseconds of queue, compute-input,
//! compute-infer and compute-output per request. A level reads them from every target before
//! and after it measures and divides the deltas, as perf_analyzer does, so the columns cover
//! exactly the measured requests' server-side stages rather than what response headers say.

use crate::grpc::GrpcTemplate;
use crate::metadata::{self, model_path};
use crate::options::Protocol;
use crate::target::Target;
use anyhow::{Context, bail};
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use spindle_proto::inference as pb;
use std::sync::Arc;
use std::time::Duration;

/// One `{count, ns}` pair.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatDuration {
    /// Events.
    #[serde(default)]
    pub count: u64,
    /// Their summed nanoseconds.
    #[serde(default)]
    pub ns: u64,
}

impl StatDuration {
    fn add(self, other: StatDuration) -> StatDuration {
        StatDuration {
            count: self.count + other.count,
            ns: self.ns + other.ns,
        }
    }

    /// `self - earlier`, saturating (a restarted server resets its counters).
    fn since(self, earlier: StatDuration) -> StatDuration {
        StatDuration {
            count: self.count.saturating_sub(earlier.count),
            ns: self.ns.saturating_sub(earlier.ns),
        }
    }

    /// Mean microseconds per event, 0 without events.
    fn mean_us(self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.ns as f64 / self.count as f64 / 1000.0
        }
    }
}

/// The cumulative per-request statistics of the model, summed over its versions and targets.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InferStats {
    /// Successful requests.
    #[serde(default)]
    pub success: StatDuration,
    /// Time queued.
    #[serde(default)]
    pub queue: StatDuration,
    /// Preparing inputs.
    #[serde(default)]
    pub compute_input: StatDuration,
    /// The engine.
    #[serde(default)]
    pub compute_infer: StatDuration,
    /// Preparing outputs.
    #[serde(default)]
    pub compute_output: StatDuration,
}

impl InferStats {
    fn add(self, o: InferStats) -> InferStats {
        InferStats {
            success: self.success.add(o.success),
            queue: self.queue.add(o.queue),
            compute_input: self.compute_input.add(o.compute_input),
            compute_infer: self.compute_infer.add(o.compute_infer),
            compute_output: self.compute_output.add(o.compute_output),
        }
    }

    /// Per-request means of what happened between `earlier` and `self`.
    pub fn breakdown_since(&self, earlier: &InferStats) -> ServerBreakdown {
        ServerBreakdown {
            requests: self.success.since(earlier.success).count,
            queue_us: self.queue.since(earlier.queue).mean_us(),
            compute_input_us: self.compute_input.since(earlier.compute_input).mean_us(),
            compute_infer_us: self.compute_infer.since(earlier.compute_infer).mean_us(),
            compute_output_us: self.compute_output.since(earlier.compute_output).mean_us(),
        }
    }
}

/// Mean server-side microseconds per request over a level's measurement.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerBreakdown {
    /// Successful requests the servers counted in that time (every client's).
    pub requests: u64,
    /// Queue wait.
    pub queue_us: f64,
    /// Preparing inputs (joining the batch).
    pub compute_input_us: f64,
    /// The engine.
    pub compute_infer_us: f64,
    /// Preparing outputs (splitting the batch).
    pub compute_output_us: f64,
}

/// Where a report's server columns come from.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TimingSource {
    /// The server's statistics endpoint, read before and after each level.
    Statistics,
    /// `x-spindle-queue-us` and `x-spindle-compute-us` response headers (compute reported as
    /// Compute Infer; input and output read 0).
    #[default]
    Headers,
}

/// Reads the model's statistics from every target.
#[derive(Debug)]
pub struct StatsProbe {
    targets: Vec<Arc<Target>>,
    protocol: Protocol,
    model: String,
    version: Option<String>,
    timeout: Duration,
}

#[derive(Deserialize)]
struct StatsBody {
    model_stats: Vec<ModelStats>,
}

#[derive(Deserialize)]
struct ModelStats {
    name: String,
    inference_stats: InferStats,
}

impl StatsProbe {
    /// A probe of `model` (or one version of it) on `targets`, over `protocol`'s transport.
    pub fn new(
        targets: Vec<Arc<Target>>,
        protocol: Protocol,
        model: &str,
        version: Option<&str>,
        timeout: Duration,
    ) -> Self {
        StatsProbe {
            targets,
            protocol,
            model: model.to_string(),
            version: version.map(str::to_string),
            timeout,
        }
    }

    /// The statistics summed over every target; an error names the target and why.
    pub async fn read(&self) -> anyhow::Result<InferStats> {
        let mut sum = InferStats::default();
        for target in &self.targets {
            let one = match self.protocol {
                Protocol::Grpc => self.read_grpc(target).await?,
                _ => self.read_http(target).await?,
            };
            sum = sum.add(one);
        }
        Ok(sum)
    }

    async fn read_http(&self, target: &Target) -> anyhow::Result<InferStats> {
        let path = format!("{}/stats", model_path(&self.model, self.version.as_deref()));
        let (status, body) = metadata::get(target, &path, self.timeout, "statistics").await?;
        if status != StatusCode::OK {
            bail!(
                "{}: GET {path} answered {status}: {}",
                target.url,
                metadata::server_message(&body)
            );
        }
        let parsed: StatsBody = serde_json::from_slice(&body).with_context(|| {
            format!(
                "{}: GET {path} is not Triton model statistics ({{\"model_stats\": [...]}})",
                target.url
            )
        })?;
        Ok(parsed
            .model_stats
            .into_iter()
            .filter(|m| m.name == self.model)
            .fold(InferStats::default(), |sum, m| sum.add(m.inference_stats)))
    }

    async fn read_grpc(&self, target: &Target) -> anyhow::Result<InferStats> {
        let call = async {
            let mut client = GrpcTemplate::client(target).await?;
            let question = pb::ModelStatisticsRequest {
                name: self.model.clone(),
                version: self.version.clone().unwrap_or_default(),
            };
            let answer = client
                .model_statistics(GrpcTemplate::request(target, question)?)
                .await
                .map_err(|s| {
                    anyhow::anyhow!(
                        "{}: ModelStatistics: {:?}: {}",
                        target.url,
                        s.code(),
                        s.message()
                    )
                })?
                .into_inner();
            let pair = |d: Option<pb::StatisticDuration>| {
                d.map_or_else(StatDuration::default, |d| StatDuration {
                    count: d.count,
                    ns: d.ns,
                })
            };
            anyhow::Ok(
                answer
                    .model_stats
                    .into_iter()
                    .filter(|m| m.name == self.model)
                    .filter_map(|m| m.inference_stats)
                    .fold(InferStats::default(), |sum, s| {
                        sum.add(InferStats {
                            success: pair(s.success),
                            queue: pair(s.queue),
                            compute_input: pair(s.compute_input),
                            compute_infer: pair(s.compute_infer),
                            compute_output: pair(s.compute_output),
                        })
                    }),
            )
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .with_context(|| format!("{}: no ModelStatistics answer in time", target.url))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_become_per_request_means() {
        let d = |count, ns| StatDuration { count, ns };
        let before = InferStats {
            success: d(10, 0),
            queue: d(10, 1_000_000),
            compute_input: d(10, 0),
            compute_infer: d(10, 5_000_000),
            compute_output: d(10, 0),
        };
        let after = InferStats {
            success: d(110, 0),
            queue: d(110, 21_000_000),
            compute_input: d(110, 1_000_000),
            compute_infer: d(110, 55_000_000),
            compute_output: d(110, 500_000),
        };
        let b = after.breakdown_since(&before);
        assert_eq!(b.requests, 100);
        assert_eq!(
            (
                b.queue_us,
                b.compute_input_us,
                b.compute_infer_us,
                b.compute_output_us
            ),
            (200.0, 10.0, 500.0, 5.0)
        );
        assert_eq!(before.breakdown_since(&after).requests, 0, "a reset server");
    }

    #[test]
    fn triton_json_parses() {
        let body = r#"{"model_stats":[{"name":"m","version":"1","last_inference":0,
            "inference_count":3,"execution_count":1,"inference_stats":{
            "success":{"count":3,"ns":9000},"fail":{"count":0,"ns":0},
            "queue":{"count":3,"ns":300},"compute_input":{"count":3,"ns":30},
            "compute_infer":{"count":3,"ns":3000},"compute_output":{"count":3,"ns":3},
            "cache_hit":{"count":0,"ns":0},"cache_miss":{"count":0,"ns":0}},"batch_stats":[]}]}"#;
        let parsed: StatsBody = serde_json::from_str(body).unwrap();
        assert_eq!(parsed.model_stats[0].inference_stats.compute_infer.ns, 3000);
    }
}

//! `inference.GRPCInferenceService` handlers.

use super::codec;
use super::status;
use crate::describe::{self, EXTENSIONS};
use crate::infer;
use crate::state::AppState;
use spindle_proto::inference as pb;
use spindle_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use tonic::{Request, Response, Status};

/// The service; cheap to clone (shared state behind `Arc`s).
#[derive(Clone)]
pub struct InferenceService {
    state: AppState,
}

impl InferenceService {
    /// A service over the server's shared state.
    pub fn new(state: AppState) -> InferenceService {
        InferenceService { state }
    }
}

fn version_arg(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

fn stat(d: describe::StatDuration) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration {
        count: d.count,
        ns: d.ns,
    })
}

fn data_type(name: &str) -> i32 {
    pb::DataType::from_str_name(name).map_or(0, |t| t as i32)
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.state.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = request.into_inner();
        // As Triton: an unknown model is simply not ready; clients poll this.
        let ready = self.state.is_ready()
            && self
                .state
                .models
                .lookup(&r.name, version_arg(&r.version))
                .is_ok();
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "spindle".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let model = self
            .state
            .models
            .lookup(&r.name, version_arg(&r.version))
            .map_err(status)?;
        let tensors = |specs: &[spindle_core::config::TensorSpec]| {
            specs
                .iter()
                .map(|s| pb::model_metadata_response::TensorMetadata {
                    name: s.name.clone(),
                    datatype: s.dtype.name().into(),
                    shape: s.dims.clone(),
                })
                .collect()
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: model.name.clone(),
            versions: self
                .state
                .models
                .ready_versions(&model.name)
                .iter()
                .map(u64::to_string)
                .collect(),
            platform: crate::describe::platform(model.engine).into(),
            inputs: tensors(&model.config.inputs),
            outputs: tensors(&model.config.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        self.state.check_ready().map_err(status)?;
        let r = request.into_inner();
        let model = self
            .state
            .models
            .lookup(&r.model_name, version_arg(&r.model_version))
            .map_err(status)?;
        let parsed = codec::parse_request(&model.config, r).map_err(status)?;
        let id = parsed.id.clone();
        let answer = infer::run(&model, parsed, self.state.limits.clone())
            .await
            .map_err(status)?;
        // The same timings the HTTP front end sends as headers, for load generators.
        let timings = [
            ("x-spindle-queue-us", answer.queue_time.as_micros() as u64),
            (
                "x-spindle-compute-us",
                answer.compute_time.as_micros() as u64,
            ),
            ("x-spindle-batch-rows", answer.batch_rows as u64),
        ];
        let mut response = Response::new(codec::encode_response(
            &model.config,
            model.version,
            id,
            answer,
        ));
        for (name, value) in timings {
            response
                .metadata_mut()
                .insert(name, value.to_string().parse().expect("digits are ASCII"));
        }
        Ok(response)
    }

    async fn model_config(
        &self,
        request: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let r = request.into_inner();
        let model = self
            .state
            .models
            .lookup(&r.name, version_arg(&r.version))
            .map_err(status)?;
        let c = describe::model_config(&model);
        let tensor_in = |t: &describe::TritonTensor| pb::ModelInput {
            name: t.name.clone(),
            data_type: data_type(t.data_type),
            format: 0,
            dims: t.dims.clone(),
        };
        let tensor_out = |t: &describe::TritonTensor| pb::ModelOutput {
            name: t.name.clone(),
            data_type: data_type(t.data_type),
            dims: t.dims.clone(),
            label_filename: t.label_filename.clone().unwrap_or_default(),
        };
        let config = pb::ModelConfig {
            name: c.name,
            platform: c.platform.into(),
            version_policy: None,
            max_batch_size: c.max_batch_size as i32,
            input: c.input.iter().map(tensor_in).collect(),
            output: c.output.iter().map(tensor_out).collect(),
            instance_group: c
                .instance_group
                .iter()
                .map(|g| pb::ModelInstanceGroup {
                    name: g.name.clone(),
                    count: g.count as i32,
                    gpus: g.gpus.clone(),
                    kind: pb::model_instance_group::Kind::from_str_name(g.kind)
                        .map_or(0, |k| k as i32),
                })
                .collect(),
            default_model_filename: c.default_model_filename.into(),
            dynamic_batching: Some(pb::ModelDynamicBatching {
                preferred_batch_size: c
                    .dynamic_batching
                    .preferred_batch_size
                    .iter()
                    .map(|&b| b as i32)
                    .collect(),
                max_queue_delay_microseconds: c.dynamic_batching.max_queue_delay_microseconds,
            }),
            parameters: c
                .parameters
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        pb::ModelParameter {
                            string_value: v.string_value,
                        },
                    )
                })
                .collect(),
            backend: c.backend.into(),
            runtime: String::new(),
        };
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(config),
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let r = request.into_inner();
        let name = (!r.name.is_empty()).then_some(r.name.as_str());
        let stats = describe::statistics(&self.state.models, name, version_arg(&r.version))
            .map_err(status)?;
        let model_stats = stats
            .into_iter()
            .map(|s| {
                let i = s.inference_stats;
                pb::ModelStatistics {
                    name: s.name,
                    version: s.version,
                    last_inference: s.last_inference,
                    inference_count: s.inference_count,
                    execution_count: s.execution_count,
                    inference_stats: Some(pb::InferStatistics {
                        success: stat(i.success),
                        fail: stat(i.fail),
                        queue: stat(i.queue),
                        compute_input: stat(i.compute_input),
                        compute_infer: stat(i.compute_infer),
                        compute_output: stat(i.compute_output),
                        cache_hit: stat(i.cache_hit),
                        cache_miss: stat(i.cache_miss),
                    }),
                    batch_stats: s
                        .batch_stats
                        .into_iter()
                        .map(|b| pb::InferBatchStatistics {
                            batch_size: b.batch_size,
                            compute_input: stat(b.compute_input),
                            compute_infer: stat(b.compute_infer),
                            compute_output: stat(b.compute_output),
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(Response::new(pb::ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(
        &self,
        request: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let only_ready = request.into_inner().ready;
        let models = self
            .state
            .repository
            .index(only_ready)
            .into_iter()
            .map(|e| pb::repository_index_response::ModelIndex {
                name: e.name,
                version: e.version.unwrap_or_default(),
                state: e.state,
                reason: e.reason.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        let name = request.into_inner().model_name;
        self.state
            .repository
            .load_model(&name)
            .await
            .map_err(|e| status(e.into()))?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        let name = request.into_inner().model_name;
        self.state
            .repository
            .unload_model(&name)
            .await
            .map_err(|e| status(e.into()))?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}

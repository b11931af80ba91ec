//! TensorFlow Serving's gRPC API, beside KServe v2 on the gRPC port, for clients written with
//! `tensorflow-serving-api`:
//!
//! - `tensorflow.serving.PredictionService/Predict`: `TensorProto` inputs by name (typed values
//!   or `tensor_content`), `output_filter`, `model_spec.signature_name` (only
//!   `serving_default`), the version by `model_spec.version`, by `model_spec.version_label`
//!   (config.toml's `[version_labels]`) or the newest ready one;
//! - `tensorflow.serving.PredictionService/GetModelMetadata`: the `signature_def` metadata, a
//!   packed `SignatureDefMap` as TF Serving returns it;
//! - `tensorflow.serving.ModelService/GetModelStatus`: each version's state.
//!
//! Predictions go through the shared pipeline ([`crate::infer`]) and the model's batcher, and
//! errors through the shared table ([`super::status`]), exactly as KServe v2 and TF REST do.
//! Classify, Regress and MultiInference need TensorFlow Example signatures, which ONNX models
//! do not have; tonic answers them UNIMPLEMENTED. [`tensor`] converts tensors.

mod tensor;

use super::status;
use crate::infer::{self, InferRequest, InputSlots, OutputRequest, all_outputs, output_index};
use crate::models::{LoadedModel, VersionState};
use crate::state::AppState;
use spindle_core::config::TensorSpec;
use spindle_core::error::InferError;
use spindle_proto::google::protobuf::{Any, Int64Value};
use spindle_proto::tensorflow::error::Code;
use spindle_proto::tensorflow::serving as tfs;
use spindle_proto::tensorflow::serving::model_service_server::{ModelService, ModelServiceServer};
use spindle_proto::tensorflow::serving::model_spec::VersionChoice;
use spindle_proto::tensorflow::serving::model_version_status::State;
use spindle_proto::tensorflow::serving::prediction_service_server::{
    PredictionService, PredictionServiceServer,
};
use spindle_proto::tensorflow::{SignatureDef, TensorInfo};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The one signature a Spindle model has: its config's inputs and outputs.
const SIGNATURE: &str = "serving_default";

/// The only metadata field TF Serving (and Spindle) return.
const SIGNATURE_DEF_FIELD: &str = "signature_def";

/// TF Serving's two services over the shared state, with the server's message cap.
pub fn services(
    state: &AppState,
    max_message: usize,
) -> (
    PredictionServiceServer<TfPrediction>,
    ModelServiceServer<TfModels>,
) {
    let prediction = PredictionServiceServer::new(TfPrediction {
        state: state.clone(),
    })
    .max_decoding_message_size(max_message)
    .max_encoding_message_size(max_message);
    let models = ModelServiceServer::new(TfModels {
        state: state.clone(),
    })
    .max_decoding_message_size(max_message)
    .max_encoding_message_size(max_message);
    (prediction, models)
}

/// `tensorflow.serving.PredictionService`.
#[derive(Clone)]
pub struct TfPrediction {
    state: AppState,
}

/// `tensorflow.serving.ModelService`.
#[derive(Clone)]
pub struct TfModels {
    state: AppState,
}

/// The model name and version number a `model_spec` selects (`None`: the newest ready one).
fn selection<'a>(
    state: &AppState,
    spec: Option<&'a tfs::ModelSpec>,
) -> Result<(&'a str, Option<u64>), InferError> {
    let spec = spec.ok_or_else(|| {
        InferError::invalid("the request has no model_spec; it must name the model")
    })?;
    let name = spec.name.as_str();
    if name.is_empty() {
        return Err(InferError::invalid(
            "model_spec.name is empty; it must name the model",
        ));
    }
    match &spec.version_choice {
        None => Ok((name, None)),
        Some(VersionChoice::Version(Int64Value { value })) => {
            u64::try_from(*value).map(|v| (name, Some(v))).map_err(|_| {
                InferError::invalid(format!(
                    "model_spec.version {value} is negative; versions are whole numbers"
                ))
            })
        }
        // TF Serving maps labels to versions from its model config, as config.toml's
        // [version_labels] does; an unknown label, or one of a version not loaded, is NOT_FOUND.
        Some(VersionChoice::VersionLabel(label)) => {
            let model = state.models.lookup_label(name, label)?;
            Ok((name, Some(model.version)))
        }
    }
}

/// The loaded version a `model_spec` selects.
fn lookup(state: &AppState, spec: Option<&tfs::ModelSpec>) -> Result<Arc<LoadedModel>, InferError> {
    let (name, version) = selection(state, spec)?;
    let version = version.map(|v| v.to_string());
    state.models.lookup(name, version.as_deref())
}

/// The `model_spec` of an answer: the version that answered, and the signature.
fn answered_spec(model: &LoadedModel, signature: &str) -> tfs::ModelSpec {
    tfs::ModelSpec {
        name: model.name.clone(),
        version_choice: Some(VersionChoice::Version(Int64Value {
            value: model.version as i64,
        })),
        signature_name: signature.to_string(),
    }
}

/// Parses a `PredictRequest` for `model` into the shared request.
pub fn parse_predict(
    model: &LoadedModel,
    r: tfs::PredictRequest,
) -> Result<InferRequest, InferError> {
    let config = &model.config;
    let signature = r
        .model_spec
        .as_ref()
        .map_or("", |s| s.signature_name.as_str());
    if !signature.is_empty() && signature != SIGNATURE {
        return Err(InferError::invalid(format!(
            "model_spec.signature_name '{signature}' is not a signature of model '{}'; it has only '{SIGNATURE}'",
            model.name
        )));
    }
    let mut slots = InputSlots::new(config);
    for (name, proto) in r.inputs {
        let index = slots.index(&name)?;
        slots.set(index, tensor::decode(&config.inputs[index], proto)?);
    }
    let inputs = slots.finish()?;
    let outputs = if r.output_filter.is_empty() {
        all_outputs(config, false)
    } else {
        let mut seen = HashSet::new();
        r.output_filter
            .iter()
            .map(|name| {
                if !seen.insert(name) {
                    return Err(InferError::invalid(format!(
                        "output_filter names output '{name}' twice"
                    )));
                }
                Ok(OutputRequest {
                    index: output_index(config, name)?,
                    binary: false,
                    classification: None,
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(InferRequest {
        id: None,
        inputs,
        outputs,
        timeout: None,
    })
}

/// The `serving_default` signature of a model, as TF Serving describes a SavedModel's.
fn signature_def(model: &LoadedModel) -> SignatureDef {
    let infos = |specs: &[TensorSpec]| -> HashMap<String, TensorInfo> {
        specs
            .iter()
            .map(|spec| {
                let info = TensorInfo {
                    name: spec.name.clone(),
                    dtype: tensor::tf_type(spec.dtype) as i32,
                    tensor_shape: Some(tensor::tf_shape(spec.dims.iter().copied())),
                };
                (spec.name.clone(), info)
            })
            .collect()
    };
    SignatureDef {
        inputs: infos(&model.config.inputs),
        outputs: infos(&model.config.outputs),
        method_name: "tensorflow/serving/predict".into(),
    }
}

/// The metadata fields a request asks for, which must be exactly `signature_def`.
fn check_metadata_fields(fields: &[String]) -> Result<(), InferError> {
    if fields.is_empty() {
        return Err(InferError::invalid(format!(
            "metadata_field is empty; ask for '{SIGNATURE_DEF_FIELD}'"
        )));
    }
    match fields.iter().find(|f| f.as_str() != SIGNATURE_DEF_FIELD) {
        Some(other) => Err(InferError::invalid(format!(
            "metadata_field '{other}' is not supported (supported: '{SIGNATURE_DEF_FIELD}')"
        ))),
        None => Ok(()),
    }
}

/// The status of every version of a model, or of the one `model_spec.version` names.
fn model_status(
    state: &AppState,
    spec: Option<&tfs::ModelSpec>,
) -> Result<tfs::GetModelStatusResponse, InferError> {
    let (name, version) = selection(state, spec)?;
    let record = match state.models.record(name) {
        Some(record) if !record.versions.is_empty() => record,
        // Unknown: the lookup's NOT_FOUND lists the models there are.
        None => {
            return Err(state
                .models
                .lookup(name, None)
                .err()
                .unwrap_or_else(|| InferError::not_found(format!("unknown model '{name}'"))));
        }
        Some(record) => {
            return Err(InferError::not_found(format!(
                "model '{name}' has no versions: {}",
                record.failure.as_deref().unwrap_or("none was found")
            )));
        }
    };
    if let Some(v) = version
        && !record.versions.contains_key(&v)
    {
        let have: Vec<String> = record.versions.keys().map(u64::to_string).collect();
        return Err(InferError::not_found(format!(
            "model '{name}' has no version {v} (versions: {})",
            have.join(", ")
        )));
    }
    let model_version_status = record
        .versions
        .iter()
        .filter(|(v, _)| version.is_none_or(|wanted| wanted == **v))
        .map(|(&v, s)| {
            // As TF Serving REST does here: a version that failed to load has ended, and says why.
            let (state, code, message) = match s {
                VersionState::Ready(_) => (State::Available, Code::Ok, String::new()),
                VersionState::Failed(reason) => (State::End, Code::Unknown, reason.clone()),
            };
            tfs::ModelVersionStatus {
                version: v as i64,
                state: state as i32,
                status: Some(tfs::StatusProto {
                    error_code: code as i32,
                    error_message: message,
                }),
            }
        })
        .collect();
    Ok(tfs::GetModelStatusResponse {
        model_version_status,
    })
}

#[tonic::async_trait]
impl PredictionService for TfPrediction {
    async fn predict(
        &self,
        request: Request<tfs::PredictRequest>,
    ) -> Result<Response<tfs::PredictResponse>, Status> {
        self.state.check_ready().map_err(status)?;
        let r = request.into_inner();
        let model = lookup(&self.state, r.model_spec.as_ref()).map_err(status)?;
        let parsed = parse_predict(&model, r).map_err(status)?;
        let answer = infer::run(&model, parsed, self.state.limits.clone())
            .await
            .map_err(status)?;
        let outputs = answer
            .outputs
            .into_iter()
            .map(|o| (o.name, tensor::encode(o.tensor)))
            .collect();
        Ok(Response::new(tfs::PredictResponse {
            model_spec: Some(answered_spec(&model, SIGNATURE)),
            outputs,
        }))
    }

    async fn get_model_metadata(
        &self,
        request: Request<tfs::GetModelMetadataRequest>,
    ) -> Result<Response<tfs::GetModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let model = lookup(&self.state, r.model_spec.as_ref()).map_err(status)?;
        check_metadata_fields(&r.metadata_field).map_err(status)?;
        let map = tfs::SignatureDefMap {
            signature_def: HashMap::from([(SIGNATURE.to_string(), signature_def(&model))]),
        };
        let packed = Any {
            type_url: tfs::SIGNATURE_DEF_MAP_TYPE_URL.into(),
            value: spindle_proto::prost::Message::encode_to_vec(&map),
        };
        Ok(Response::new(tfs::GetModelMetadataResponse {
            // TF Serving names the model and version here, without a signature.
            model_spec: Some(answered_spec(&model, "")),
            metadata: HashMap::from([(SIGNATURE_DEF_FIELD.to_string(), packed)]),
        }))
    }
}

#[tonic::async_trait]
impl ModelService for TfModels {
    async fn get_model_status(
        &self,
        request: Request<tfs::GetModelStatusRequest>,
    ) -> Result<Response<tfs::GetModelStatusResponse>, Status> {
        let r = request.into_inner();
        model_status(&self.state, r.model_spec.as_ref())
            .map(Response::new)
            .map_err(status)
    }
}

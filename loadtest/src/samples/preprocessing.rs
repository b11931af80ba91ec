//! What the server's model configuration says about preprocessing: which inputs take encoded
//! images or raw rows, and the served version's `features.toml`. Images and rows are checked
//! against it, so it is read before any sample.

use crate::grpc::GrpcTemplate;
use crate::metadata;
use crate::options::Protocol;
use crate::target::Target;
use anyhow::{Context, anyhow, ensure};
use hyper::StatusCode;
use serde_json::Value;
use spindle_proto::inference as pb;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the server's model configuration says about preprocessing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preprocessing {
    /// Input name to preprocessing name (`preprocess.<input>` parameters).
    pub inputs: BTreeMap<String, String>,
    /// The served version's `features.toml`, when it has one.
    pub features: Option<String>,
}

impl Preprocessing {
    /// Reads the Triton-style `parameters` map of a model configuration.
    fn from_parameters<'a>(parameters: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let mut found = Preprocessing::default();
        for (key, value) in parameters {
            if let Some(input) = key.strip_prefix("preprocess.") {
                found.inputs.insert(input.to_string(), value.to_string());
            } else if key == "features.toml" {
                found.features = Some(value.to_string());
            }
        }
        found
    }
}

/// Fetches the model configuration (`GET /v2/models/{m}/config`, or gRPC `ModelConfig`) for
/// its preprocessing parameters.
pub async fn fetch_preprocessing(
    target: &Target,
    protocol: Protocol,
    model: &str,
    version: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Preprocessing> {
    if protocol == Protocol::Grpc {
        let call = async {
            let mut client = GrpcTemplate::client(target).await?;
            let answer = client
                .model_config(pb::ModelConfigRequest {
                    name: model.to_string(),
                    version: version.unwrap_or_default().to_string(),
                })
                .await
                .map_err(|s| anyhow!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            let config = answer.config.unwrap_or_default();
            anyhow::Ok(Preprocessing::from_parameters(
                config
                    .parameters
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.string_value.as_str())),
            ))
        };
        return tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| anyhow!("no answer within {timeout:?}"))?
            .with_context(|| {
                format!(
                    "{}: cannot read the configuration of model '{model}' over gRPC",
                    target.url
                )
            });
    }
    let path = format!("{}/config", metadata::model_path(model, version));
    let (status, body) = metadata::get(target, &path, timeout, "model config").await?;
    ensure!(
        status == StatusCode::OK,
        "{}: GET {path} answered {status}: {} (the server must describe the model's preprocessing for --input-data images or rows)",
        target.url,
        metadata::server_message(&body)
    );
    let config: Value = serde_json::from_slice(&body)
        .with_context(|| format!("{}: GET {path} is not JSON", target.url))?;
    let parameters = config["parameters"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    Ok(Preprocessing::from_parameters(
        parameters
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v["string_value"].as_str()?))),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocessing_comes_from_config_parameters() {
        let p = Preprocessing::from_parameters(
            [
                ("preprocess.images", "inception_image"),
                ("features.toml", "x"),
                ("other", "y"),
            ]
            .into_iter(),
        );
        assert_eq!(p.inputs["images"], "inception_image");
        assert_eq!((p.inputs.len(), p.features.as_deref()), (1, Some("x")));
    }
}

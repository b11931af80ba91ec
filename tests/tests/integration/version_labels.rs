//! TF Serving version labels (config.toml's `[version_labels]`) on a real server: gRPC
//! `model_spec.version_label` for Predict, GetModelMetadata and GetModelStatus, and TF REST's
//! `/v1/models/M/labels/L` (`:predict`, status, metadata) select the labelled version; an unknown
//! label, or one naming a version that is not loaded, is NOT_FOUND / 404 naming the label and
//! the labels there are, and the server keeps serving.

use crate::tfserving_grpc::{
    image_tensor, images, model_service, predict_request, prediction, probabilities, three_versions,
};
use serde_json::json;
use spindle_core::config::ModelConfig;
use spindle_proto::google::protobuf::Int64Value;
use spindle_proto::tensorflow::serving as tfs;
use spindle_proto::tensorflow::serving::model_spec::VersionChoice;
use spindle_tests::{get_json, post_json, serve_config, start};
use tonic::Code;

/// `cifar10` with versions 1 and 2 served and 3 broken (see [`three_versions`]), labelled
/// stable = 1, canary = 2, broken = 3 and gone = 9 (a version the repository does not have).
fn labelled_repo() -> tempfile::TempDir {
    let repo = three_versions();
    let path = repo.path().join("cifar10/config.toml");
    let mut config = ModelConfig::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config.version_labels = [("stable", 1), ("canary", 2), ("broken", 3), ("gone", 9)]
        .into_iter()
        .map(|(label, version)| (label.to_string(), version))
        .collect();
    std::fs::write(&path, config.to_toml()).unwrap();
    repo
}

fn labelled(label: &str) -> Option<tfs::ModelSpec> {
    Some(tfs::ModelSpec {
        name: "cifar10".into(),
        version_choice: Some(VersionChoice::VersionLabel(label.into())),
        signature_name: String::new(),
    })
}

#[tokio::test]
async fn version_labels_select_versions_over_grpc_and_rest() {
    let repo = labelled_repo();
    let server_repo = repo.path().to_path_buf();
    let mut config = serve_config(repo.path());
    // Polled, for the relabel at the end.
    config.poll_interval = std::time::Duration::from_millis(200);
    let mut server = start(config).await.unwrap();
    server.keep(repo);
    let base = format!("http://{}", server.addr);
    let mut client = prediction(&server).await;
    let data = images(1, 3);

    // gRPC Predict by label answers with the labelled version, as selecting it by number does.
    let mut by_label = Vec::new();
    for (label, version) in [("stable", 1), ("canary", 2)] {
        let mut request = predict_request(None, image_tensor(&data, false));
        request.model_spec = labelled(label);
        let answer = client.predict(request).await.unwrap().into_inner();
        let got = probabilities(&answer, 1, version);
        let by_number = client
            .predict(predict_request(Some(version), image_tensor(&data, false)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got, probabilities(&by_number, 1, version), "label {label}");
        by_label.push(got);
    }
    assert_ne!(
        by_label[0], by_label[1],
        "the two versions have different weights"
    );

    // TF REST :predict by label: the same answer as gRPC.
    let body = json!({ "instances": [data.chunks(72).map(|row| row.chunks(3).collect::<Vec<_>>()).collect::<Vec<_>>()] });
    let (status, answer) = post_json(
        &format!("{base}/v1/models/cifar10/labels/canary:predict"),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let rest: Vec<f32> = answer["predictions"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let diff = rest
        .iter()
        .zip(&by_label[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff <= 1e-6, "REST by label differs from gRPC by {diff}");

    // Metadata and status by label, over both.
    let metadata = client
        .get_model_metadata(tfs::GetModelMetadataRequest {
            model_spec: labelled("canary"),
            metadata_field: vec!["signature_def".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let spec = metadata.model_spec.unwrap();
    assert_eq!(
        spec.version_choice,
        Some(VersionChoice::Version(
            spindle_proto::google::protobuf::Int64Value { value: 2 }
        ))
    );
    let rest = get_json(&format!("{base}/v1/models/cifar10/labels/canary/metadata")).await;
    assert_eq!(rest["model_spec"]["version"], "2", "{rest}");
    let status = model_service(&server)
        .await
        .get_model_status(tfs::GetModelStatusRequest {
            model_spec: labelled("stable"),
        })
        .await
        .unwrap()
        .into_inner();
    let versions: Vec<i64> = status
        .model_version_status
        .iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(versions, [1]);
    let rest = get_json(&format!("{base}/v1/models/cifar10/labels/stable")).await;
    assert_eq!(rest["model_version_status"][0]["version"], "1", "{rest}");
    assert_eq!(rest["model_version_status"].as_array().unwrap().len(), 1);

    // Refusals: unknown label; labels of a version that failed to load or does not exist.
    let refused = [
        (
            "beta",
            "has no version label 'beta' (labels: broken = 3, canary = 2, gone = 9, stable = 1)",
        ),
        (
            "broken",
            "version label 'broken' names version 3, which is not loaded (loaded: 1, 2)",
        ),
        (
            "gone",
            "version label 'gone' names version 9, which is not loaded (loaded: 1, 2)",
        ),
    ];
    for (label, expected) in refused {
        let mut request = predict_request(None, image_tensor(&data, false));
        request.model_spec = labelled(label);
        let err = client.predict(request).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{label}: {err}");
        assert!(err.message().contains(expected), "{}", err.message());
        let err = model_service(&server)
            .await
            .get_model_status(tfs::GetModelStatusRequest {
                model_spec: labelled(label),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{label}: {err}");
        let err = client
            .get_model_metadata(tfs::GetModelMetadataRequest {
                model_spec: labelled(label),
                metadata_field: vec!["signature_def".into()],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{label}: {err}");

        let (status, answer) = post_json(
            &format!("{base}/v1/models/cifar10/labels/{label}:predict"),
            &body,
        )
        .await;
        assert_eq!(status, 404, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(expected),
            "{answer}"
        );
        for path in ["", "/metadata"] {
            let response = reqwest::get(format!("{base}/v1/models/cifar10/labels/{label}{path}"))
                .await
                .unwrap();
            assert_eq!(response.status(), 404, "GET labels/{label}{path}");
        }
    }

    // Still serving, by label too; and a relabel in config.toml takes effect at the next poll,
    // with nothing reloaded.
    let mut request = predict_request(None, image_tensor(&data, false));
    request.model_spec = labelled("stable");
    let answer = client.predict(request.clone()).await.unwrap().into_inner();
    assert_eq!(probabilities(&answer, 1, 1), by_label[0]);
    let path = server_repo.join("cifar10/config.toml");
    let relabelled = std::fs::read_to_string(&path)
        .unwrap()
        .replace("stable = 1", "stable = 2");
    std::fs::write(&path, relabelled).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let answer = client.predict(request.clone()).await.unwrap().into_inner();
        let spec = answer.model_spec.as_ref().unwrap();
        if spec.version_choice == Some(VersionChoice::Version(Int64Value { value: 2 })) {
            assert_eq!(probabilities(&answer, 1, 2), by_label[1]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stable = 2 in config.toml was not picked up by the poll in 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_model_without_labels_says_how_to_add_them() {
    let repo = three_versions();
    let mut server = start(serve_config(repo.path())).await.unwrap();
    server.keep(repo);
    let mut request = predict_request(None, image_tensor(&images(1, 1), false));
    request.model_spec = labelled("stable");
    let err = prediction(&server)
        .await
        .predict(request)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(
        err.message()
            .contains("model 'cifar10' has no version label 'stable'")
            && err
                .message()
                .contains("set [version_labels] in its config.toml"),
        "{}",
        err.message()
    );
    let response = reqwest::get(format!(
        "http://{}/v1/models/cifar10/labels/stable/metadata",
        server.addr
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 404);
    server.stop().await.unwrap();
}

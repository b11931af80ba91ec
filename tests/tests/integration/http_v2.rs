//! KServe v2 over HTTP against a real server on port 0: JSON and binary tensors, metadata,
//! health, metrics, and every malformed request the serving-core issue lists.

use reqwest::StatusCode;
use serde_json::{Value, json};
use spindle_tests::{TestServer, serve_config, start, start_zoo, zoo_repo};
use spindle_zoo::ZooModel;

const PIXELS: usize = 24 * 24 * 3;

fn image(seed: usize) -> Vec<f32> {
    (0..PIXELS)
        .map(|i| ((i * 31 + seed * 17) % 255) as f32 / 255.0)
        .collect()
}

fn json_request(images: &[Vec<f32>]) -> Value {
    let data: Vec<f32> = images.iter().flatten().copied().collect();
    json!({
        "id": "req-1",
        "inputs": [{"name": "images", "shape": [images.len(), 24, 24, 3], "datatype": "FP32", "data": data}]
    })
}

/// A binary-tensor request body and its JSON header length.
fn binary_request(images: &[Vec<f32>], binary_output: bool) -> (Vec<u8>, usize) {
    let raw: Vec<u8> = images
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let header = json!({
        "inputs": [{"name": "images", "shape": [images.len(), 24, 24, 3], "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": binary_output}}]
    });
    let mut body = serde_json::to_vec(&header).unwrap();
    let len = body.len();
    body.extend_from_slice(&raw);
    (body, len)
}

async fn post_json(server: &TestServer, path: &str, body: &Value) -> (StatusCode, Value) {
    spindle_tests::post_json(&server.url(path), body).await
}

async fn post_binary(server: &TestServer, body: Vec<u8>, header_len: usize) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/v2/models/cifar10/infer"))
        .header("Inference-Header-Content-Length", header_len)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn probabilities(response: &Value) -> Vec<f32> {
    response["outputs"][0]["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// Asserts a 4xx/5xx answer whose `error` mentions every fragment, then that a good request
/// still succeeds: a bad request never leaves the server unhealthy.
async fn assert_error(
    server: &TestServer,
    status: StatusCode,
    body: Value,
    got: (StatusCode, Value),
    fragments: &[&str],
) {
    let (got_status, got_body) = got;
    assert_eq!(got_status, status, "body sent: {body}\nanswer: {got_body}");
    let message = got_body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field in {got_body}"));
    for fragment in fragments {
        assert!(
            message.contains(fragment),
            "'{message}' should mention '{fragment}'"
        );
    }
    let (ok, answer) = post_json(
        server,
        "/v2/models/cifar10/infer",
        &json_request(&[image(0)]),
    )
    .await;
    assert_eq!(ok, StatusCode::OK, "good request after a bad one: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_binary_requests_agree_and_batches_split_back() {
    let server = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let images = [image(1), image(2), image(3)];

    let (status, answer) =
        post_json(&server, "/v2/models/cifar10/infer", &json_request(&images)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["model_name"], "cifar10");
    assert_eq!(answer["model_version"], "1");
    assert_eq!(answer["id"], "req-1");
    assert_eq!(answer["outputs"][0]["shape"], json!([3, 10]));
    let from_json = probabilities(&answer);
    for row in from_json.chunks(10) {
        assert!(
            (row.iter().sum::<f32>() - 1.0).abs() < 1e-4,
            "softmax rows sum to 1: {row:?}"
        );
    }
    assert_ne!(
        from_json[..10],
        from_json[10..20],
        "different images, different answers"
    );

    // Binary in, binary out.
    let (body, len) = binary_request(&images, true);
    let response = post_binary(&server, body, len).await;
    assert_eq!(response.status(), StatusCode::OK);
    let header_len: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    let header: Value = serde_json::from_slice(&bytes[..header_len]).unwrap();
    assert_eq!(
        header["outputs"][0]["parameters"]["binary_data_size"],
        3 * 10 * 4
    );
    let from_binary: Vec<f32> = bytes[header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        from_binary, from_json,
        "JSON and binary give identical outputs"
    );

    // Binary in, JSON out; and one image alone gives the same row as inside a batch.
    let (body, len) = binary_request(&images[1..2], false);
    let response = post_binary(&server, body, len).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .headers()
            .get("inference-header-content-length")
            .is_none()
    );
    let single: Value = response.json().await.unwrap();
    let single = probabilities(&single);
    for (a, b) in single.iter().zip(&from_json[10..20]) {
        assert!(
            (a - b).abs() < 1e-5,
            "batch of one vs batch of three: {a} vs {b}"
        );
    }

    // Explicit version route.
    let (status, _) = post_json(
        &server,
        "/v2/models/cifar10/versions/1/infer",
        &json_request(&images[..1]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metadata_and_metrics() {
    let server = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let client = reqwest::Client::new();
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/cifar10/ready",
        "/v2/models/cifar10/versions/1/ready",
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let meta: Value = client
        .get(server.url("/v2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["name"], "spindle");
    assert!(
        meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data"))
    );

    let model: Value = client
        .get(server.url("/v2/models/cifar10"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(model["versions"], json!(["1"]));
    assert_eq!(
        model["inputs"][0],
        json!({"name": "images", "datatype": "FP32", "shape": [-1, 24, 24, 3]})
    );
    assert_eq!(
        model["outputs"][0],
        json!({"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]})
    );

    let (status, _) = post_json(
        &server,
        "/v2/models/cifar10/infer",
        &json_request(&[image(0), image(1)]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let _ = post_json(&server, "/v2/models/cifar10/infer", &json!({"inputs": []})).await;
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"spindle_requests_total{model="cifar10",outcome="success",version="1"} 1"#,
        r#"spindle_inference_count_total{model="cifar10",version="1"} 2"#,
        "spindle_models_loaded 1",
        "spindle_request_duration_seconds_bucket",
        "spindle_queue_duration_seconds_bucket",
        "spindle_compute_duration_seconds_bucket",
        "spindle_batch_size_bucket",
        "spindle_queue_depth",
    ] {
        assert!(
            metrics.contains(line),
            "metrics should contain {line}:\n{metrics}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_errors_and_the_server_stays_healthy() {
    let server = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let good = json_request(&[image(0)]);
    let infer = "/v2/models/cifar10/infer";

    let cases: Vec<(&str, Value, StatusCode, Vec<&str>)> = vec![
        (
            "/v2/models/nope/infer",
            good.clone(),
            StatusCode::NOT_FOUND,
            vec!["unknown model 'nope'", "cifar10"],
        ),
        (
            "/v2/models/cifar10/versions/7/infer",
            good.clone(),
            StatusCode::NOT_FOUND,
            vec!["no version 7", "loaded: 1"],
        ),
        (
            infer,
            json!({"inputs": [{"name": "pixels", "shape": [1, 24, 24, 3], "datatype": "FP32", "data": image(0)}]}),
            StatusCode::BAD_REQUEST,
            vec!["unknown input 'pixels'", "expected: images"],
        ),
        (
            infer,
            {
                // 1e39 overflows FP32: refused, not turned into infinities and null outputs.
                let mut data: Vec<f64> = image(0).iter().map(|&v| f64::from(v)).collect();
                data[5] = 1e39;
                json!({"inputs": [{"name": "images", "shape": [1, 24, 24, 3], "datatype": "FP32", "data": data}]})
            },
            StatusCode::BAD_REQUEST,
            vec!["input 'images'", "element 5", "FP32's range"],
        ),
        (
            infer,
            json!({"inputs": [{"name": "images", "shape": [1, 24, 24, 3], "datatype": "INT32", "data": vec![0; PIXELS]}]}),
            StatusCode::BAD_REQUEST,
            vec!["input 'images'", "expected datatype FP32", "but got INT32"],
        ),
        (
            infer,
            json!({"inputs": [{"name": "images", "shape": [1, 1728], "datatype": "FP32", "data": image(0)}]}),
            StatusCode::BAD_REQUEST,
            vec![
                "input 'images'",
                "expected shape [-1, 24, 24, 3] but got [1, 1728]",
            ],
        ),
        (
            infer,
            json!({"inputs": [{"name": "images", "shape": [1, 24, 24, 4], "datatype": "FP32", "data": vec![0.0; 24*24*4]}]}),
            StatusCode::BAD_REQUEST,
            vec!["expected shape [-1, 24, 24, 3] but got [1, 24, 24, 4]"],
        ),
        (
            infer,
            json!({"inputs": [{"name": "images", "shape": [1, 24, 24, 3], "datatype": "FP32", "data": vec![0.0; 100]}]}),
            StatusCode::BAD_REQUEST,
            vec!["input 'images'", "needs 1728 elements but 100 were given"],
        ),
        (
            infer,
            json!({"inputs": [{"name": "images", "shape": [1, 24, 24, 3], "datatype": "FP32", "data": vec!["a"; PIXELS]}]}),
            StatusCode::BAD_REQUEST,
            vec!["input 'images'", "element 0 is \"a\", not a number"],
        ),
        (
            infer,
            json!({"inputs": [{"name": "images", "shape": [1, 24, 24, 3], "datatype": "FP32"}]}),
            StatusCode::BAD_REQUEST,
            vec!["input 'images' has no 'data'"],
        ),
        (
            infer,
            json!({"inputs": [{"shape": [1, 24, 24, 3], "datatype": "FP32", "data": image(0)}]}),
            StatusCode::BAD_REQUEST,
            vec!["inputs[0]", "missing field `name`"],
        ),
        (
            infer,
            json!({"outputs": []}),
            StatusCode::BAD_REQUEST,
            vec!["missing field `inputs`"],
        ),
        (
            infer,
            json!({"inputs": []}),
            StatusCode::BAD_REQUEST,
            vec!["missing input 'images'"],
        ),
        (
            infer,
            json!({"inputs": [{"name": "images", "shape": [129, 24, 24, 3], "datatype": "FP32", "data": vec![0.5; 129 * PIXELS]}]}),
            StatusCode::BAD_REQUEST,
            vec!["129 rows", "max_batch_size 128"],
        ),
        (
            infer,
            json!({"inputs": good["inputs"], "outputs": [{"name": "logits"}]}),
            StatusCode::BAD_REQUEST,
            vec!["unknown output 'logits'", "probabilities"],
        ),
        (
            infer,
            json!({"inputs": good["inputs"], "parameters": {"timeout": "soon"}}),
            StatusCode::BAD_REQUEST,
            vec!["timeout"],
        ),
    ];
    for (path, body, status, fragments) in cases {
        let got = post_json(&server, path, &body).await;
        assert_error(&server, status, body, got, &fragments).await;
    }

    // Not JSON at all.
    let response = reqwest::Client::new()
        .post(server.url(infer))
        .body("{not json")
        .send()
        .await
        .unwrap();
    let got = (response.status(), response.json::<Value>().await.unwrap());
    assert_error(
        &server,
        StatusCode::BAD_REQUEST,
        json!("{not json"),
        got,
        &["malformed request JSON"],
    )
    .await;

    // Binary data whose byte count does not match shape x dtype.
    let (mut body, len) = binary_request(&[image(0)], true);
    body.truncate(body.len() - 8);
    let header: Value = serde_json::from_slice(&body[..len]).unwrap();
    let mut fixed = header.clone();
    fixed["inputs"][0]["parameters"]["binary_data_size"] = json!(PIXELS * 4 - 8);
    let mut short = serde_json::to_vec(&fixed).unwrap();
    let short_len = short.len();
    short.extend_from_slice(&body[len..]);
    let response = post_binary(&server, short, short_len).await;
    let got = (response.status(), response.json::<Value>().await.unwrap());
    assert_error(
        &server,
        StatusCode::BAD_REQUEST,
        fixed,
        got,
        &["input 'images'", "needs 6912 bytes but 6904 were given"],
    )
    .await;

    // binary_data_size larger than what follows the header.
    let response = post_binary(&server, body, len).await;
    let got = (response.status(), response.json::<Value>().await.unwrap());
    assert_error(
        &server,
        StatusCode::BAD_REQUEST,
        header,
        got,
        &["binary_data_size is 6912 but only 6904"],
    )
    .await;

    // A header length past the end of the body.
    let response = post_binary(&server, b"{}".to_vec(), 99).await;
    let got = (response.status(), response.json::<Value>().await.unwrap());
    assert_error(
        &server,
        StatusCode::BAD_REQUEST,
        json!(null),
        got,
        &["Inference-Header-Content-Length is 99"],
    )
    .await;

    // Unknown routes are JSON 404s too.
    let response = reqwest::Client::new()
        .get(server.url("/v3/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("/v2")
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_cap_is_413() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let mut config = serve_config(repo.path());
    config.max_body = 64 << 10;
    let server = start(config).await.unwrap();
    let big = json_request(&vec![image(0); 20]);
    let got = post_json(&server, "/v2/models/cifar10/infer", &big).await;
    assert_error(
        &server,
        StatusCode::PAYLOAD_TOO_LARGE,
        json!("20 images"),
        got,
        &["--max-body"],
    )
    .await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_model_fails_alone_and_the_others_serve() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let root = repo.path();
    // Not ONNX at all.
    let junk = root.join("junk");
    std::fs::create_dir_all(junk.join("1")).unwrap();
    let cifar_config = std::fs::read_to_string(root.join("cifar10/config.toml")).unwrap();
    std::fs::write(
        junk.join("config.toml"),
        cifar_config.replace("name = \"cifar10\"", "name = \"junk\""),
    )
    .unwrap();
    std::fs::write(junk.join("1/model.onnx"), b"this is not a protobuf").unwrap();
    // Real ONNX, but its config lies about the input's name.
    let liar = root.join("liar");
    std::fs::create_dir_all(liar.join("1")).unwrap();
    std::fs::copy(root.join("cifar10/1/model.onnx"), liar.join("1/model.onnx")).unwrap();
    std::fs::write(
        liar.join("config.toml"),
        cifar_config
            .replace("name = \"cifar10\"", "name = \"liar\"")
            .replace("name = \"images\"", "name = \"pixels\""),
    )
    .unwrap();

    let server = start(serve_config(root)).await.unwrap();
    let (status, answer) =
        post_json(&server, "/v2/models/junk/infer", &json_request(&[image(0)])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let message = answer["error"].as_str().unwrap();
    assert!(
        message.contains("junk/1/model.onnx") && message.contains("invalid model"),
        "{message}"
    );

    let response = reqwest::get(server.url("/v2/models/liar/ready"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let message = response.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("pixels") && message.contains("images"),
        "names both the config's and the model's input: {message}"
    );

    let (status, _) = post_json(
        &server,
        "/v2/models/cifar10/infer",
        &json_request(&[image(0)]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"spindle_model_load_failures_total{model="junk",reason="invalid_model"} 1"#
        ),
        "{metrics}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_where_nothing_loads_is_a_startup_error() {
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path().join("m");
    std::fs::create_dir_all(dir.join("1")).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "name = \"m\"\ninputs = []\noutputs = []\n",
    )
    .unwrap();
    std::fs::write(dir.join("1/model.onnx"), b"x").unwrap();
    let err = start(serve_config(repo.path()))
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("none of the 1 models"), "{err}");
}

async fn in_flight(server: &TestServer) -> i64 {
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find(|l| l.starts_with("spindle_requests_in_flight{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_lets_in_flight_requests_finish() {
    let server = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let url = server.url("/v2/models/cifar10/infer");
    let body = json_request(&vec![image(0); 128]);
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    // Stop only once the server is computing some of them.
    let started = std::time::Instant::now();
    while in_flight(&server).await == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "requests never reached the server"
        );
        tokio::time::sleep(std::time::Duration::from_micros(200)).await;
    }
    server.stop().await.unwrap();
    let statuses: Vec<_> = futures_join(requests).await;
    let finished = statuses
        .iter()
        .filter(|s| matches!(s, Ok(StatusCode::OK)))
        .count();
    assert!(
        finished >= 1,
        "requests in flight at the stop signal complete: {statuses:?}"
    );
    // Every request either completed, or arrived after the stop and was refused as unavailable
    // (503, so a client retries elsewhere) or at the socket; none fails half-way.
    for code in statuses.iter().flatten() {
        assert!(
            [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(code),
            "{statuses:?}"
        );
    }
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

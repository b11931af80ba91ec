//! The Rust client library against real servers: HTTP and gRPC endpoints give the same answer,
//! load spreads over replicas, a dead replica is retried past, and errors are not retried.

use spindle_client::{Client, InferRequest, RetryPolicy};
use spindle_core::{Tensor, TensorData};
use spindle_tests::{refusal, start_zoo};
use spindle_zoo::ZooModel;
use std::time::Duration;

fn images(n: usize) -> Tensor {
    let data = (0..n * 24 * 24 * 3)
        .map(|i| ((i * 13) % 101) as f32 / 101.0)
        .collect();
    Tensor::new(vec![n, 24, 24, 3], TensorData::F32(data)).unwrap()
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_grpc_endpoints_agree_and_share_the_load() {
    let a = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let b = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let client = Client::builder([
        format!("http://{}", a.addr),
        format!("grpc://{}", b.grpc_addr),
    ])
    .build()
    .unwrap();
    let request = InferRequest::new("cifar10").input("images", images(2));
    let first = client.infer(&request).await.unwrap();
    let second = client.infer(&request).await.unwrap();
    assert_eq!(first.output("probabilities").unwrap().shape, [2, 10]);
    assert_eq!(
        first.output("probabilities"),
        second.output("probabilities")
    );

    // Round robin: each replica served one of the two requests.
    for server in [&a, &b] {
        let stats: serde_json::Value = reqwest::get(server.url("/v2/models/cifar10/stats"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            stats["model_stats"][0]["inference_stats"]["success"]["count"],
            1
        );
    }

    let top = client
        .infer(&request.clone().output("probabilities", Some(2)))
        .await
        .unwrap();
    assert_eq!(top.output("probabilities").unwrap().shape, [2, 2]);

    let meta = client.model_metadata("cifar10").await.unwrap();
    assert_eq!(meta.inputs[0].shape, [-1, 24, 24, 3]);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_is_retried_past_and_bad_requests_are_not_retried() {
    let live = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    // A port nobody listens on: bind, note it, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = Client::builder([format!("http://{dead}"), format!("http://{}", live.addr)])
        .retry(quick_retries())
        .build()
        .unwrap();
    let request = InferRequest::new("cifar10").input("images", images(1));
    for _ in 0..6 {
        client
            .infer(&request)
            .await
            .expect("the live replica answers");
    }

    let wrong = InferRequest::new("cifar10").input(
        "images",
        Tensor::new(vec![1, 3], TensorData::F32(vec![0.0; 3])).unwrap(),
    );
    let message = refusal(client.infer(&wrong).await, 400, "a wrong shape");
    assert!(message.contains("input 'images'"), "{message}");

    let only_dead = Client::builder([format!("grpc://{dead}")])
        .retry(quick_retries())
        .build()
        .unwrap();
    let err = only_dead.infer(&request).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains(&dead.to_string()), "{err}");

    let err = Client::builder(["ftp://x:1"]).build().unwrap_err();
    assert!(err.to_string().contains("unsupported scheme"), "{err}");
    live.stop().await.unwrap();
}

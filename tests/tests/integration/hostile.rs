//! Clients that misbehave on purpose, against the real server: silent and trickling clients are
//! cut off, surplus connections are refused at once, HTTP/2 prior knowledge is answered, and a
//! draining server keeps answering probes until its last request is done. Each case checks the
//! server still serves afterwards.

use spindle_server::http::listener::ConnectionLimits;
use spindle_tests::{TestServer, serve_config, start, zoo_repo};
use spindle_zoo::ZooModel;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn strict_server() -> TestServer {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let mut config = serve_config(repo.path());
    config.connections = ConnectionLimits {
        max_connections: 8,
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    };
    let mut server = start(config).await.unwrap();
    server.keep(repo);
    server
}

/// Reads until the peer closes (or 10 s pass): what it sent, and how long that took.
async fn read_to_close(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

async fn live(addr: SocketAddr) -> bool {
    reqwest::get(format!("http://{addr}/v2/health/live"))
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_trickling_clients_are_cut_off() {
    let server = strict_server().await;

    // Connects and sends nothing.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let (_, took) = read_to_close(&mut silent).await;
    assert!(
        took < Duration::from_secs(4),
        "a silent client was held {took:?}"
    );

    // One request on a kept-alive connection, then silence: closed after the header timeout.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, took) = read_to_close(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        took < Duration::from_secs(4),
        "an idle kept-alive client was held {took:?}"
    );

    // Headers at one byte every 200 ms: not done within the 1 s header timeout.
    let mut trickle = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    for byte in b"POST /v2/models/cifar10/infer HTTP/1.1\r\nhost: x\r\n" {
        if trickle.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let (_, _) = read_to_close(&mut trickle).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "trickled headers held the connection {:?}",
        started.elapsed()
    );

    // Content-Length 1000, two bytes sent: 408 once the body timeout passes.
    let mut short = TcpStream::connect(server.addr).await.unwrap();
    short
        .write_all(b"POST /v2/models/cifar10/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{}")
        .await
        .unwrap();
    let (answer, took) = read_to_close(&mut short).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--body-timeout"), "{answer}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    assert!(live(server.addr).await, "the server still answers");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_at_once_and_http2_is_answered() {
    let server = strict_server().await;
    // Eight open connections hold every slot (each has sent half a request line, so the
    // server holds them until the header timeout).
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /v2/health/li").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut surplus = TcpStream::connect(server.addr).await.unwrap();
    let _ = surplus
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let (answer, took) = read_to_close(&mut surplus).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("too many open connections"), "{answer}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    drop(held);
    // The slots come back once those connections are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !live(server.addr).await {
        assert!(Instant::now() < deadline, "slots never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // HTTP/2 with prior knowledge (h2c): the server answers with its own SETTINGS frame.
    let mut h2 = TcpStream::connect(server.addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut header = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(3), h2.read_exact(&mut header))
        .await
        .expect("an HTTP/2 answer within 3 s")
        .unwrap();
    assert_eq!(header[3], 0x4, "a SETTINGS frame first: {header:?}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_server_answers_probes_until_its_last_request_ends() {
    let server = strict_server().await;
    let addr = server.addr;
    // A request in flight: its body is slow, so it lasts until the 1 s body timeout.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /v2/models/cifar10/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The listener is still open: a probe gets 503 with Retry-After, not "connection refused".
    let probe = reqwest::get(format!("http://{addr}/v2/health/ready"))
        .await
        .expect("the listener stays open while draining");
    assert_eq!(probe.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        probe.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let (answer, _) = read_to_close(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    stopping.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the drain took {:?} for a request cut at 1 s",
        started.elapsed()
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener closes when the drain ends"
    );
}

/// Starts a POST whose body never finishes: its handler holds an in-flight slot while it waits.
async fn half_sent_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /v2/models/cifar10/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"in",
        )
        .await
        .unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_max_inflight_are_refused_before_their_body() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let mut config = serve_config(repo.path());
    config.connections = ConnectionLimits {
        max_inflight: 2,
        body_timeout: Duration::from_secs(30),
        ..ConnectionLimits::default()
    };
    let mut server = start(config).await.unwrap();
    server.keep(repo);
    let held = [
        half_sent_request(server.addr).await,
        half_sent_request(server.addr).await,
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A third request is answered at once, without its (large) body being read.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let refused = http
        .post(server.url("/v2/models/cifar10/infer"))
        .body(vec![b' '; 8 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    let message = refused.text().await.unwrap();
    assert!(message.contains("--max-inflight"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // gRPC shares the limit: RESOURCE_EXHAUSTED, which the client reports as a retryable 503.
    let grpc = spindle_client::Client::builder([format!("grpc://{}", server.grpc_addr)])
        .retry(spindle_client::RetryPolicy::new(
            1,
            Duration::from_millis(10),
            Duration::from_millis(10),
        ))
        .build()
        .unwrap();
    match grpc.model_metadata("cifar10").await {
        Err(spindle_client::ClientError::Server {
            status: 503,
            message,
            ..
        }) => assert!(message.contains("in flight"), "{message}"),
        other => panic!("gRPC over the in-flight limit: {other:?}"),
    }
    // Probes are never refused.
    assert!(live(server.addr).await);
    assert_eq!(grpc.ready().await[0].as_ref().ok(), Some(&true));

    // The held requests go away: their slots come back.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ok = http
        .get(server.url("/v2/models/cifar10"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), reqwest::StatusCode::OK);
    grpc.model_metadata("cifar10").await.unwrap();
    server.stop().await.unwrap();
}

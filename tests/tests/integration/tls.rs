//! TLS and bearer tokens on both front ends, with certificates made at test time (rcgen): a TLS
//! client is served over HTTPS and gRPC-over-TLS, plain HTTP to the TLS port gets a readable
//! 400, plain gRPC fails, mutual TLS refuses a client without a certificate or with another
//! CA's, and tokens are required except on the health endpoints. Each case checks that the
//! server still serves afterwards.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use reqwest::StatusCode;
use spindle_client::{Client, ClientError, ClientSecurity, InferRequest, RetryPolicy};
use spindle_core::tensor::{Tensor, TensorData};
use spindle_server::security::{Security, TlsFiles, Tokens};
use spindle_tests::{TestServer, serve_config, start, zoo_repo};
use spindle_zoo::ZooModel;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) const TOKEN: &str = "s3cret-token-for-tests";

/// A CA, and leaf certificates it signs, written as PEM files into a temporary directory.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
    ca: Certificate,
    ca_key: KeyPair,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca = params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca, ca_key }
    }

    pub(crate) fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Writes `<name>.pem` and `<name>.key`: a server certificate for `hosts` (names or IP
    /// addresses), or a client certificate when there are none.
    pub(crate) fn leaf(&self, name: &str, hosts: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let server = !hosts.is_empty();
        let names = hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (cert_path, key_path) = (
            self.dir.path().join(format!("{name}.pem")),
            self.dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

async fn tls_server(pki: &Pki, client_ca: Option<&Path>, tokens: bool) -> TestServer {
    tls_server_with(pki, &[ZooModel::Cifar10], client_ca, tokens).await
}

/// A server with TLS (a certificate from `pki`), serving `models`, with [`TOKEN`] required
/// when `tokens`, and client certificates from `client_ca` when given.
pub(crate) async fn tls_server_with(
    pki: &Pki,
    models: &[ZooModel],
    client_ca: Option<&Path>,
    tokens: bool,
) -> TestServer {
    let (cert, key) = pki.leaf("server", &["localhost", "127.0.0.1"]);
    let repo = zoo_repo(models);
    let mut config = serve_config(repo.path());
    config.security = Security {
        tls: Some(TlsFiles {
            cert,
            key,
            client_ca: client_ca.map(Path::to_path_buf),
        }),
        tokens: tokens.then(|| Tokens::new([TOKEN])),
    };
    let mut server = start(config).await.unwrap();
    server.keep(repo);
    server
}

fn client(url: String, security: ClientSecurity) -> Result<Client, ClientError> {
    // One attempt: a refused handshake must show as the error, not be retried away.
    Client::builder([url])
        .security(security)
        .retry(RetryPolicy::new(
            1,
            Duration::from_millis(10),
            Duration::from_millis(10),
        ))
        .timeout(Duration::from_secs(10))
        .build()
}

fn image_request() -> InferRequest {
    let image = Tensor::new(vec![1, 24, 24, 3], TensorData::F32(vec![0.5; 24 * 24 * 3])).unwrap();
    InferRequest::new("cifar10").input("images", image)
}

/// Metadata and one inference: both succeed, or the first error.
async fn serves(client: &Client) -> Result<(), ClientError> {
    client.model_metadata("cifar10").await?;
    let answer = client.infer(&image_request()).await?;
    assert!(answer.output("probabilities").is_some());
    Ok(())
}

/// One `grpc.health.v1.Health/Check` on the server's plain gRPC port, without a token.
async fn grpc_health_check(
    server: &TestServer,
) -> Result<tonic_health::pb::HealthCheckResponse, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .map(tonic::Response::into_inner)
}

fn status_of(result: Result<(), ClientError>) -> Option<u16> {
    match result {
        Err(ClientError::Server { status, .. }) => Some(status),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_tokens_serves_https_and_grpcs() {
    let pki = Pki::new("server");
    let server = tls_server(&pki, None, true).await;
    let https = format!("https://{}", server.addr);
    let grpcs = format!("grpcs://{}", server.grpc_addr);
    let trusted = |token: Option<&str>| ClientSecurity {
        ca_cert: Some(pki.ca_path()),
        identity: None,
        token: token.map(str::to_string),
    };

    for url in [&https, &grpcs] {
        // The right token over TLS: served.
        let ok = client(url.clone(), trusted(Some(TOKEN))).unwrap();
        serves(&ok).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        // No token, or a wrong one: 401 / UNAUTHENTICATED (mapped to 401), with a message.
        for token in [
            None,
            Some("s3cret-token-for-test"),
            Some("s3cret-token-for-tests2"),
        ] {
            let refused = client(url.clone(), trusted(token)).unwrap();
            let error = serves(&refused).await.unwrap_err();
            assert!(
                matches!(&error, ClientError::Server { status: 401, message, .. } if message.contains("token")),
                "{url} with token {token:?}: {error}"
            );
        }
        // Health stays open without a token, so probes work.
        let probe = client(url.clone(), trusted(None)).unwrap();
        assert_eq!(probe.ready().await[0].as_ref().ok(), Some(&true), "{url}");
    }

    // A CA that did not sign the server's certificate: the handshake fails.
    let stranger = Pki::new("stranger");
    for url in [&https, &grpcs] {
        let untrusting = client(
            url.clone(),
            ClientSecurity {
                ca_cert: Some(stranger.ca_path()),
                identity: None,
                token: Some(TOKEN.into()),
            },
        )
        .unwrap();
        let error = serves(&untrusting).await.unwrap_err();
        assert!(
            matches!(error, ClientError::Connection { .. }),
            "{url} with an unknown CA: {error}"
        );
    }

    // Plain HTTP to the TLS port: a readable 400 that says to use https.
    let plain = reqwest::get(format!("http://{}/v2/health/live", server.addr))
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::BAD_REQUEST);
    let text = plain.text().await.unwrap();
    assert!(text.contains("HTTPS only"), "{text}");
    // Plain gRPC (h2c) to the TLS port fails without hanging.
    let h2c = client(
        format!("grpc://{}", server.grpc_addr),
        ClientSecurity::default(),
    )
    .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), serves(&h2c))
        .await
        .expect("plain gRPC to a TLS port must fail, not hang")
        .unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Connection { .. } | ClientError::Server { .. }
        ),
        "{error}"
    );
    // A client that gives a CA but a plain URL is stopped before sending anything in clear.
    let mixed = client(format!("http://{}", server.addr), trusted(Some(TOKEN)))
        .unwrap_err()
        .to_string();
    assert!(mixed.contains("https://"), "{mixed}");

    // Still serving after all of that.
    let ok = client(grpcs.clone(), trusted(Some(TOKEN))).unwrap();
    serves(&ok).await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_our_certificate() {
    let pki = Pki::new("server");
    let clients = Pki::new("clients");
    let server = tls_server(&pki, Some(&clients.ca_path()), false).await;
    let (good_cert, good_key) = clients.leaf("good-client", &[]);
    let other = Pki::new("other");
    let (bad_cert, bad_key) = other.leaf("other-client", &[]);
    let with = |identity: Option<(PathBuf, PathBuf)>| ClientSecurity {
        ca_cert: Some(pki.ca_path()),
        identity,
        token: None,
    };
    for url in [
        format!("https://{}", server.addr),
        format!("grpcs://{}", server.grpc_addr),
    ] {
        let good = client(
            url.clone(),
            with(Some((good_cert.clone(), good_key.clone()))),
        )
        .unwrap();
        serves(&good).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        for (what, identity) in [
            ("no client certificate", None),
            (
                "another CA's certificate",
                Some((bad_cert.clone(), bad_key.clone())),
            ),
        ] {
            let refused = client(url.clone(), with(identity)).unwrap();
            let result = serves(&refused).await;
            assert!(
                matches!(result, Err(ClientError::Connection { .. })),
                "{url} with {what}: {result:?}"
            );
        }
        serves(&good)
            .await
            .unwrap_or_else(|e| panic!("{url} afterwards: {e}"));
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_without_tls_say_how_to_authenticate() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let mut config = serve_config(repo.path());
    config.security.tokens = Some(Tokens::new(["first", TOKEN]));
    let mut server = start(config).await.unwrap();
    server.keep(repo);
    let http = reqwest::Client::new();

    // Refused before anything else: 401, a Bearer challenge, a message that says what to send.
    let missing = http
        .get(server.url("/v2/models/cifar10"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let challenge = missing.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(
        missing
            .text()
            .await
            .unwrap()
            .contains("authorization: Bearer")
    );
    let wrong = http
        .post(server.url("/v2/models/cifar10/infer"))
        .bearer_auth("firs")
        .body("{not even json")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let challenge = wrong.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    let basic = http
        .get(server.url("/metrics"))
        .basic_auth("user", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    // Every listed token works; health is open.
    for token in ["first", TOKEN] {
        let ok = http
            .get(server.url("/v2/models/cifar10"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK, "token {token}");
    }
    for path in ["/v2/health/live", "/v2/health/ready"] {
        let probe = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(probe.status(), StatusCode::OK, "{path}");
    }

    // gRPC: UNAUTHENTICATED without the token, served with it, health open.
    let grpc = format!("grpc://{}", server.grpc_addr);
    let anonymous = client(grpc.clone(), ClientSecurity::default()).unwrap();
    assert_eq!(status_of(serves(&anonymous).await), Some(401));
    assert_eq!(anonymous.ready().await[0].as_ref().ok(), Some(&true));
    let serving = grpc_health_check(&server).await.unwrap();
    assert_eq!(serving.status, 1, "grpc.health.v1 SERVING without a token");
    let with_token = token_client(grpc);
    serves(&with_token).await.unwrap();
    server.stop().await.unwrap();
}

/// `--auth-health`: the probes want the token too, over HTTP and gRPC, and are answered with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarded_health_wants_the_token_too() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let mut config = serve_config(repo.path());
    config.security.tokens = Some(Tokens::new([TOKEN]).guarding_health());
    let mut server = start(config).await.unwrap();
    server.keep(repo);
    let http = reqwest::Client::new();
    for path in ["/v2/health/live", "/v2/health/ready"] {
        let anonymous = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{path}");
        let probe = http
            .get(server.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(probe.status(), StatusCode::OK, "{path} with the token");
    }

    let grpc = format!("grpc://{}", server.grpc_addr);
    let refused = grpc_health_check(&server).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let with_token = token_client(grpc);
    assert_eq!(with_token.ready().await[0].as_ref().ok(), Some(&true));
    serves(&with_token).await.unwrap();
    server.stop().await.unwrap();
}

/// A client for `url` that sends the test token, with no CA or client certificate of its own.
fn token_client(url: String) -> Client {
    client(
        url,
        ClientSecurity {
            token: Some(TOKEN.into()),
            ..Default::default()
        },
    )
    .unwrap()
}

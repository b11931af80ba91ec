//! Bearer tokens: `Authorization: Bearer <token>` on HTTP, the `authorization` metadata on gRPC.
//!
//! Tokens come from `--auth-token-file` (one per line; blank lines and `#` comments skipped).
//! Only their SHA-256 digests are kept, and a presented token's digest is compared with every
//! one of them in constant time, so neither the position of the first differing byte nor a
//! token's length shows in the answer's timing. Health endpoints stay open without a token, so
//! that load balancers' and YARN's probes keep working: HTTP `/v2/health/live` and
//! `/v2/health/ready`, gRPC `grpc.health.v1.Health` and `ServerLive`/`ServerReady`; with
//! `--auth-health` ([`Tokens::guarding_health`]) they want a token too, for deployments whose
//! probes can send one and where even liveness is not to be told to strangers.

use axum::response::IntoResponse;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// HTTP paths answered without a token.
pub const OPEN_HTTP_PATHS: &[&str] = &["/v2/health/live", "/v2/health/ready"];

/// gRPC methods answered without a token.
pub const OPEN_GRPC_PATHS: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
];

/// The accepted tokens, as SHA-256 digests.
#[derive(Clone)]
pub struct Tokens {
    digests: Arc<Vec<[u8; 32]>>,
    /// Health endpoints want a token too (`--auth-health`).
    health: bool,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tokens({} accepted, health {})",
            self.digests.len(),
            if self.health { "guarded" } else { "open" }
        )
    }
}

/// Why a token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// It could not be read.
    #[error("reading --auth-token-file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It held no token.
    #[error(
        "--auth-token-file {path} holds no token (write one per line; blank lines and lines starting with # are skipped)"
    )]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A line cannot travel in an HTTP header.
    #[error(
        "--auth-token-file {path}, line {line}: a token must be printable ASCII without spaces, so that it can travel in an Authorization header"
    )]
    Unusable {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header or metadata.
    Missing,
    /// An `Authorization` that is not `Bearer <token>`.
    NotBearer,
    /// A bearer token that is not one of ours.
    Wrong,
}

impl Refusal {
    /// What the caller is told.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "this server requires a token: send `authorization: Bearer <token>` (spindle's clients take --token-file or SPINDLE_TOKEN)"
            }
            Refusal::NotBearer => {
                "the authorization header is not a bearer token: send `authorization: Bearer <token>`"
            }
            Refusal::Wrong => "the bearer token is not one this server accepts",
        }
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tokens {
    /// Tokens given directly (tests, embedders).
    pub fn new<I, S>(tokens: I) -> Tokens
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Tokens {
            digests: Arc::new(
                tokens
                    .into_iter()
                    .map(|t| digest(t.as_ref().as_bytes()))
                    .collect(),
            ),
            health: false,
        }
    }

    /// The same tokens, wanted on the health endpoints too (`--auth-health`).
    pub fn guarding_health(self) -> Tokens {
        Tokens {
            health: true,
            ..self
        }
    }

    /// Whether a request to `path` needs no token: a health endpoint, unless they are guarded.
    fn open(&self, path: &str, open_paths: &[&str]) -> bool {
        !self.health && open_paths.contains(&path)
    }

    /// Reads a token file: one token per line, blank lines and `#` comments skipped.
    pub fn load(path: &Path) -> Result<Tokens, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let token = line.trim();
            if token.is_empty() || token.starts_with('#') {
                continue;
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(TokenFileError::Unusable {
                    path: path.to_path_buf(),
                    line: i + 1,
                });
            }
            tokens.push(token.to_string());
        }
        if tokens.is_empty() {
            return Err(TokenFileError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Tokens::new(tokens))
    }

    /// Whether `token` is accepted. Every stored digest is compared, whatever the outcome.
    pub fn accepts(&self, token: &[u8]) -> bool {
        let presented = digest(token);
        let mut found = subtle::Choice::from(0);
        for known in self.digests.iter() {
            found |= known.ct_eq(&presented);
        }
        found.into()
    }

    /// Checks a request's `authorization` header.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(Refusal::Missing)?
            .as_bytes();
        let token = bearer(value).ok_or(Refusal::NotBearer)?;
        if self.accepts(token) {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        }
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// axum middleware: 401 with `WWW-Authenticate` unless the path is open or the token is ours.
pub async fn require_http_token(
    axum::extract::State(tokens): axum::extract::State<Tokens>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if tokens.open(request.uri().path(), OPEN_HTTP_PATHS) {
        return next.run(request).await;
    }
    match tokens.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::debug!(
                ?refusal,
                path = request.uri().path(),
                "request refused: no valid token"
            );
            // RFC 6750: a wrong token is "invalid_token"; a missing one gets the bare challenge.
            let challenge = match refusal {
                Refusal::Missing => r#"Bearer realm="spindle""#,
                Refusal::NotBearer => r#"Bearer realm="spindle", error="invalid_request""#,
                Refusal::Wrong => r#"Bearer realm="spindle", error="invalid_token""#,
            };
            let mut response = (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({ "error": refusal.message() })),
            )
                .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
            response
        }
    }
}

/// A tower layer for tonic's server: UNAUTHENTICATED unless the method is open or the token is
/// ours. Without tokens it passes every call through, so the server installs it always.
pub type GrpcAuthLayer = crate::admission::GrpcGateLayer<Option<Tokens>>;

impl crate::admission::GrpcPredicate for Option<Tokens> {
    type Guard = ();

    fn admit(&self, path: &str, headers: &HeaderMap) -> Result<(), tonic::Status> {
        let Some(tokens) = self else { return Ok(()) };
        if tokens.open(path, OPEN_GRPC_PATHS) {
            return Ok(());
        }
        tokens.check(headers).map_err(|refusal| {
            tracing::debug!(?refusal, path, "gRPC call refused: no valid token");
            tonic::Status::unauthenticated(refusal.message())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn accepts_listed_tokens_only() {
        let tokens = Tokens::new(["alpha-1", "beta-2"]);
        assert_eq!(tokens.check(&headers("Bearer alpha-1")), Ok(()));
        assert_eq!(tokens.check(&headers("bearer beta-2")), Ok(()));
        assert_eq!(tokens.check(&headers("Bearer alpha-")), Err(Refusal::Wrong));
        assert_eq!(
            tokens.check(&headers("Bearer alpha-12")),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            tokens.check(&headers("Basic YTpi")),
            Err(Refusal::NotBearer)
        );
        assert_eq!(tokens.check(&headers("Bearer ")), Err(Refusal::NotBearer));
        assert_eq!(tokens.check(&HeaderMap::new()), Err(Refusal::Missing));
    }

    #[test]
    fn token_file_skips_comments_and_refuses_empty_or_spaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# ops\n\n  s3cret \nother\n").unwrap();
        let tokens = Tokens::load(&path).unwrap();
        assert!(tokens.accepts(b"s3cret") && tokens.accepts(b"other"));
        assert!(!tokens.accepts(b"# ops"));
        std::fs::write(&path, "# nothing\n\n").unwrap();
        let empty = Tokens::load(&path).unwrap_err().to_string();
        assert!(empty.contains("holds no token"), "{empty}");
        std::fs::write(&path, "ok\ntwo words\n").unwrap();
        let spaced = Tokens::load(&path).unwrap_err().to_string();
        assert!(spaced.contains("line 2"), "{spaced}");
    }
}

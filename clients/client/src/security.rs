//! TLS and bearer tokens for the client: [`ClientSecurity`] says where the files are;
//! [`Credentials`] is what the transports use once they were read.
//!
//! `https://` and `grpcs://` URLs use TLS and need the CA that signed the server's certificate
//! (`ca_cert`): the platform's roots are not read, since Spindle's servers are normally
//! deployed with a private CA. A bare `host:port` uses TLS when a CA is given. A client
//! certificate (mutual TLS) and a token are sent to every endpoint.

use crate::types::ClientError;
use hyper::header::HeaderValue;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable that may hold a bearer token (instead of a token file).
pub const TOKEN_ENV: &str = "SPINDLE_TOKEN";

/// Where a client's TLS files and token come from.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    /// CA certificates (PEM) the server's certificate must chain to.
    pub ca_cert: Option<PathBuf>,
    /// A client certificate (PEM) and its key, for servers that require mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// A bearer token sent as `authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("ca_cert", &self.ca_cert)
            .field("identity", &self.identity)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl ClientSecurity {
    /// Reads a token file's first non-blank, non-comment line.
    pub fn read_token_file(path: &Path) -> Result<String, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ClientError::Config(format!("reading --token-file {}: {e}", path.display()))
        })?;
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .ok_or_else(|| {
                ClientError::Config(format!("--token-file {} holds no token", path.display()))
            })
    }

    /// Reads the files and checks them: what the transports use (also a load generator's own
    /// connections).
    pub fn load(&self) -> Result<Credentials, ClientError> {
        let authorization = match &self.token {
            None => None,
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|_| {
                        ClientError::Config(
                            "the token holds characters an HTTP header cannot carry".into(),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let Some(ca) = &self.ca_cert else {
            if self.identity.is_some() {
                return Err(ClientError::Config(
                    "a client certificate needs TLS: give the server's CA with --ca-cert too"
                        .into(),
                ));
            }
            return Ok(Credentials {
                http_tls: None,
                grpc_tls: None,
                authorization,
            });
        };
        let ca_pem = read("--ca-cert", ca)?;
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_slice_iter(&ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                ClientError::Config(format!("--ca-cert {}: not valid PEM: {e}", ca.display()))
            })?;
        if certs.is_empty() {
            return Err(ClientError::Config(format!(
                "--ca-cert {}: no CERTIFICATE section found",
                ca.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ClientError::Config(format!("--ca-cert {}: {e}", ca.display())))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots);
        let mut grpc = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&ca_pem));
        let http = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let cert_pem = read("--client-cert", cert)?;
                let key_pem = read("--client-key", key)?;
                let chain = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        ClientError::Config(format!(
                            "--client-cert {}: not valid PEM: {e}",
                            cert.display()
                        ))
                    })?;
                let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    ClientError::Config(format!(
                        "--client-key {}: no private key found: {e}",
                        key.display()
                    ))
                })?;
                grpc = grpc.identity(tonic::transport::Identity::from_pem(&cert_pem, &key_pem));
                builder.with_client_auth_cert(chain, private).map_err(|e| {
                    ClientError::Config(format!(
                        "--client-cert {} with --client-key {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
            }
        };
        Ok(Credentials {
            http_tls: Some(Arc::new(http)),
            grpc_tls: Some(grpc),
            authorization,
        })
    }
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|e| ClientError::Config(format!("reading {flag} {}: {e}", path.display())))
}

/// TLS configurations and the `authorization` value, shared by every transport of a client.
#[derive(Clone, Default)]
pub struct Credentials {
    /// TLS for HTTP/1.1 (`https://`); `None` without a CA.
    pub http_tls: Option<Arc<rustls::ClientConfig>>,
    /// TLS for gRPC (`grpcs://`); `None` without a CA.
    pub grpc_tls: Option<tonic::transport::ClientTlsConfig>,
    /// `Bearer <token>`, marked sensitive; `None` without a token.
    pub authorization: Option<HeaderValue>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tls", &self.http_tls.is_some())
            .field("token", &self.authorization.is_some())
            .finish()
    }
}

/// The TLS and token flags of every command that calls servers (`infer`, `loadtest`,
/// `score --server`): one definition, so they read and behave the same everywhere.
#[cfg(feature = "clap")]
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct ClientSecurityArgs {
    /// CA certificate (PEM) that signed the servers' certificates. Turns TLS on: use https://
    /// or grpcs:// URLs. The system's roots are not read.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for servers that require mutual TLS (with --client-key).
    #[arg(long, value_name = "FILE", requires_all = ["client_key", "ca_cert"])]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// File whose first line is a bearer token, sent with every request. Without it, the
    /// SPINDLE_TOKEN environment variable may hold the token itself.
    #[arg(long, value_name = "FILE", env = "SPINDLE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

#[cfg(feature = "clap")]
impl ClientSecurityArgs {
    /// Reads the token (file, else `SPINDLE_TOKEN`) and names the TLS files for the client.
    pub fn load(&self) -> Result<ClientSecurity, ClientError> {
        let token = match &self.token_file {
            Some(path) => Some(ClientSecurity::read_token_file(path)?),
            None => std::env::var(TOKEN_ENV)
                .ok()
                .filter(|t| !t.trim().is_empty()),
        };
        Ok(ClientSecurity {
            ca_cert: self.ca_cert.clone(),
            identity: self.client_cert.clone().zip(self.client_key.clone()),
            token,
        })
    }
}

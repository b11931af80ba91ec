//! TLS for the HTTP and gRPC front ends, with rustls (ring as the crypto provider).
//!
//! HTTP offers `h2` and `http/1.1` by ALPN; gRPC is tonic's TLS from the same PEM files. With a
//! client CA, both front ends require a client certificate that chains to it (mutual TLS).

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The PEM files that configure TLS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The server's certificate chain (leaf first), PEM.
    pub cert: PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1), PEM.
    pub key: PathBuf,
    /// CA certificates that client certificates must chain to; `None`: no client certificate
    /// is asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS could not be set up; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {what} {path}: {source}")]
    Read {
        /// Which flag's file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file held no usable PEM section of the expected kind.
    #[error("{what} {path}: {problem}")]
    Pem {
        /// Which flag's file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        problem: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, mostly).
    #[error("TLS setup with --tls-cert {cert} and --tls-key {key}: {source}")]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The client CA file could not serve as a trust root.
    #[error("--tls-client-ca {path}: {problem}")]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// What was wrong with it.
        problem: String,
    },
}

/// TLS for both front ends, loaded from [`TlsFiles`].
#[derive(Clone)]
pub struct ServerTls {
    /// The HTTP listener's rustls configuration.
    pub http: Arc<rustls::ServerConfig>,
    /// The same certificate, key and client CA for tonic.
    pub grpc: tonic::transport::ServerTlsConfig,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("alpn", &self.http.alpn_protocols)
            .finish_non_exhaustive()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates of a PEM file; an error when it holds none.
pub fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            problem: format!("not valid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            path: path.to_path_buf(),
            problem: "no CERTIFICATE section found (expected a PEM certificate)".into(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn private_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        problem: format!("no private key found ({e}; expected a PEM PRIVATE KEY section)"),
    })
}

/// The ring crypto provider, named explicitly so that no other provider compiled into the
/// binary by a dependency can make rustls' process-wide default ambiguous.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerTls {
    /// Reads and checks the files: certificates parse, the key matches the certificate, the
    /// client CA is a usable trust root.
    pub fn load(files: &TlsFiles) -> Result<ServerTls, TlsError> {
        let chain = certificates("--tls-cert", &files.cert)?;
        let key = private_key("--tls-key", &files.key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3");
        let config_error = |source| TlsError::Config {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        };
        let mut grpc = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(
                read("--tls-cert", &files.cert)?,
                read("--tls-key", &files.key)?,
            ),
        );
        let mut http = match &files.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates("--tls-client-ca", ca)? {
                    roots.add(cert).map_err(|e| TlsError::ClientCa {
                        path: ca.clone(),
                        problem: e.to_string(),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| TlsError::ClientCa {
                            path: ca.clone(),
                            problem: e.to_string(),
                        })?;
                grpc = grpc
                    .client_ca_root(tonic::transport::Certificate::from_pem(read(
                        "--tls-client-ca",
                        ca,
                    )?))
                    .client_auth_optional(false);
                builder
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain, key)
                    .map_err(config_error)?
            }
            None => builder
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(config_error)?,
        };
        // HTTP/2 first: a client that speaks both gets multiplexing.
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            http: Arc::new(http),
            grpc,
        })
    }
}

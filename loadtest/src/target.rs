//! One server under test: its base URL, resolved once, and how to open a keep-alive HTTP/1
//! connection to it, over TLS for `https://` and `grpcs://` URLs, with the bearer token that
//! every request carries.

use crate::http1::PeekClosed;
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use spindle_client::Credentials;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The sending half of one hyper HTTP/1 connection, for the requests around the load.
pub type Connection = SendRequest<Full<Bytes>>;

/// A server under test.
#[derive(Debug)]
pub struct Target {
    /// The URL as the user gave it, without a trailing slash (used in messages and reports).
    pub url: String,
    /// Value of the `Host` header.
    pub host: HeaderValue,
    /// Path prefix before `/v2` ("" for most servers).
    base_path: String,
    /// Address connections go to, resolved once so that reconnecting costs no DNS lookup.
    addr: SocketAddr,
    /// TLS for `https://` and `grpcs://` URLs: the configuration and the name the server's
    /// certificate must carry.
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// The gRPC channel's TLS, for `grpcs://`.
    pub(crate) grpc_tls: Option<tonic::transport::ClientTlsConfig>,
    /// `Bearer <token>`, sent with every request when a token was given.
    pub(crate) authorization: Option<HeaderValue>,
}

/// A connection to a server: plain TCP or TLS over it. The load's HTTP/1 client is generic
/// over its stream, so plain HTTP pays only this enum's branch per read and write.
pub enum ServerStream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://` (boxed: a TLS session is a few KiB, the enum stays small).
    Tls(Box<TlsStream<TcpStream>>),
}

impl Target {
    /// Parses an `http://host[:port][/prefix]` URL (`https://` or `grpcs://` for TLS, which
    /// needs a CA in `credentials`) and resolves its host.
    pub async fn resolve(url: &str, credentials: &Credentials) -> anyhow::Result<Target> {
        let trimmed = url.trim().trim_end_matches('/');
        let uri: Uri = trimmed
            .parse()
            .with_context(|| format!("'{url}' is not a URL (expected http://host:port)"))?;
        let tls = match uri.scheme_str() {
            Some("http" | "grpc") => false,
            Some("https" | "grpcs") => true,
            Some(other) => bail!(
                "{url}: use http:// or https:// (grpc:// or grpcs:// with --protocol grpc), not {other}://"
            ),
            None => bail!("'{url}' has no scheme; write it as http://{trimmed}"),
        };
        let authority = uri
            .authority()
            .with_context(|| format!("'{url}' has no host"))?;
        let tls = match (tls, &credentials.http_tls) {
            (false, None) => None,
            // As the client library does: nothing goes out in clear once TLS was asked for.
            (false, Some(_)) => bail!(
                "{url} is plain, but --ca-cert asks for TLS: write it as https:// (or grpcs://)"
            ),
            (true, None) => bail!(
                "{url} uses TLS: give the CA that signed the server's certificate with --ca-cert"
            ),
            (true, Some(config)) => {
                let name =
                    ServerName::try_from(authority.host().to_string()).with_context(|| {
                        format!("{url}: '{}' is not a TLS server name", authority.host())
                    })?;
                Some((config.clone(), name))
            }
        };
        let port = authority
            .port_u16()
            .unwrap_or(if tls.is_some() { 443 } else { 80 });
        let host_port = format!("{}:{port}", authority.host());
        let addr = tokio::net::lookup_host(&host_port)
            .await
            .with_context(|| format!("{url}: cannot resolve host '{}'", authority.host()))?
            .next()
            .with_context(|| format!("{url}: host '{}' has no address", authority.host()))?;
        if uri.query().is_some() {
            bail!("{url}: give the server's base URL without a query string");
        }
        Ok(Target {
            url: trimmed.to_string(),
            host: HeaderValue::from_str(authority.as_str())?,
            base_path: uri.path().trim_end_matches('/').to_string(),
            addr,
            grpc_tls: tls.as_ref().and(credentials.grpc_tls.clone()),
            tls,
            authorization: credentials.authorization.clone(),
        })
    }

    /// The request URI (origin form) for a path such as `/v2/models/m`.
    pub fn uri(&self, path: &str) -> anyhow::Result<Uri> {
        let full = format!("{}{path}", self.base_path);
        full.parse()
            .with_context(|| format!("{}: '{full}' is not a valid request path", self.url))
    }

    /// `host:port` as given.
    pub fn authority(&self) -> &str {
        self.host.to_str().unwrap_or_default()
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a TCP connection with TCP_NODELAY, and the TLS session over it for `https://`
    /// (the load's requests go through [`crate::http1`] on it).
    pub async fn connect_stream(&self) -> io::Result<ServerStream> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        match &self.tls {
            None => Ok(ServerStream::Plain(stream)),
            Some((config, name)) => {
                let connector = TlsConnector::from(config.clone());
                let session = connector.connect(name.clone(), stream).await?;
                Ok(ServerStream::Tls(Box::new(session)))
            }
        }
    }

    /// Opens a hyper connection (for metadata and statistics requests); its I/O is driven by a
    /// task on the current runtime that ends when the returned sender is dropped.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let stream = self.connect_stream().await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // A connection error shows up on the next request through its sender.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl PeekClosed for ServerStream {
    fn peek_closed(&mut self) -> bool {
        match self {
            ServerStream::Plain(s) => s.peek_closed(),
            // The socket may hold TLS records that are not data (a TLS 1.3 session ticket), so
            // the session is asked instead: one read that must not find anything. A pending
            // read registers a waker that does nothing; the next real read registers its own.
            ServerStream::Tls(s) => {
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                let mut cx = TaskContext::from_waker(std::task::Waker::noop());
                !matches!(
                    Pin::new(s.as_mut()).poll_read(&mut cx, &mut buf),
                    Poll::Pending
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_parse() {
        let t = Target::resolve("http://127.0.0.1:8000/", &Credentials::default())
            .await
            .unwrap();
        assert_eq!(t.url, "http://127.0.0.1:8000");
        assert_eq!(t.host, "127.0.0.1:8000");
        assert_eq!(t.uri("/v2/models/m").unwrap(), "/v2/models/m");
        let t = Target::resolve("http://127.0.0.1:8000/prefix/", &Credentials::default())
            .await
            .unwrap();
        assert_eq!(t.uri("/v2").unwrap(), "/prefix/v2");
    }

    #[tokio::test]
    async fn bad_urls_are_explained() {
        let none = Credentials::default();
        let e = Target::resolve("ftp://127.0.0.1:1", &none)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("use http:// or https://"), "{e}");
        let e = Target::resolve("https://127.0.0.1:1", &none)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("--ca-cert"), "{e}");
        let e = Target::resolve("127.0.0.1:1", &none)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("no scheme"), "{e}");
    }
}

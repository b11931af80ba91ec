//! One server under test: its base URL, resolved once, and how to open a keep-alive HTTP/1
//! connection to it.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

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
}

impl Target {
    /// Parses an `http://host[:port][/prefix]` URL and resolves its host.
    pub async fn resolve(url: &str) -> anyhow::Result<Target> {
        let trimmed = url.trim().trim_end_matches('/');
        let uri: Uri = trimmed
            .parse()
            .with_context(|| format!("'{url}' is not a URL (expected http://host:port)"))?;
        match uri.scheme_str() {
            Some("http" | "grpc") => {}
            Some(other) => {
                bail!("{url}: use http:// (or grpc:// with --protocol grpc), not {other}://")
            }
            None => bail!("'{url}' has no scheme; write it as http://{trimmed}"),
        }
        let authority = uri
            .authority()
            .with_context(|| format!("'{url}' has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
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

    /// Opens a TCP connection with TCP_NODELAY (the load's requests go through
    /// [`crate::http1`] on it).
    pub async fn connect_tcp(&self) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Opens a hyper connection (for metadata and statistics requests); its I/O is driven by a
    /// task on the current runtime that ends when the returned sender is dropped.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let stream = self.connect_tcp().await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // A connection error shows up on the next request through its sender.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_parse() {
        let t = Target::resolve("http://127.0.0.1:8000/").await.unwrap();
        assert_eq!(t.url, "http://127.0.0.1:8000");
        assert_eq!(t.host, "127.0.0.1:8000");
        assert_eq!(t.uri("/v2/models/m").unwrap(), "/v2/models/m");
        let t = Target::resolve("http://127.0.0.1:8000/prefix/")
            .await
            .unwrap();
        assert_eq!(t.uri("/v2").unwrap(), "/prefix/v2");
    }

    #[tokio::test]
    async fn bad_urls_are_explained() {
        let e = Target::resolve("https://127.0.0.1:1")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("use http://"), "{e}");
        let e = Target::resolve("127.0.0.1:1")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("no scheme"), "{e}");
    }
}

//! The HTTP listener: admission of connections, timeouts on slow clients, HTTP/1.1 and h2c on
//! the same port, and a drain that keeps answering.
//!
//! - At most `max_connections` connections are served at once; one more gets an immediate 503
//!   with `Retry-After` and is closed, so idle or hostile clients cannot take every file
//!   descriptor and leave new callers hanging.
//! - A client must send its request headers within `header_timeout` (also between requests on a
//!   kept-alive HTTP/1 connection) and its whole body within `body_timeout` (408 otherwise), so
//!   a trickled request cannot hold a connection and a request slot for ever.
//! - HTTP/2 without TLS (h2c, prior knowledge) is served, not held unanswered.
//! - With TLS, the handshake must finish within `header_timeout` too; HTTP/2 is offered by ALPN.
//!   A plain-HTTP request to the TLS port gets a plain 400 that says to use https, instead of a
//!   handshake error the caller cannot read.
//! - On stop the listener stays open: probes and callers keep getting answers (503 with
//!   `Retry-After` from readiness and inference) while the requests already in flight finish.
//!   When none is left, connections are told to close and the listener goes. A request still
//!   in flight when the grace period ends is cut by the caller's hard stop.

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Limits on connections and on how slowly a client may send.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (and, on a kept-alive connection, to
    /// start its next request).
    pub header_timeout: Duration,
    /// Time a client has to send a whole request body once its headers arrived.
    pub body_timeout: Duration,
    /// Requests served at once over HTTP and gRPC together (see [`crate::admission`]).
    pub max_inflight: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            max_inflight: 512,
        }
    }
}

/// The error a request body yields when its sender missed the body deadline; the front ends
/// answer it with 408 (see [`is_body_timeout`]).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} (the server's --body-timeout)")]
pub struct BodyTimeout(pub Duration);

/// Whether a body-reading failure was the body deadline passing.
pub fn is_body_timeout<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a BodyTimeout> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(timeout) = e.downcast_ref::<BodyTimeout>() {
            return Some(timeout);
        }
        current = e.source();
    }
    None
}

/// Serves `app` on `listener` under `limits` until `stop` resolves and the requests in flight
/// have finished (the caller bounds that wait with its grace period).
/// With `tls`, every connection must open with a TLS handshake.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: impl Future<Output = ()>,
) {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let tracker = Tracker {
        in_flight: Arc::new(AtomicUsize::new(0)),
        stopping: Arc::new(AtomicBool::new(false)),
        body_timeout: limits.body_timeout,
    };
    let in_flight = tracker.in_flight.clone();
    let stopping_flag = tracker.stopping.clone();
    let app = app.layer(axum::middleware::from_fn_with_state(
        tracker,
        track_and_time_body,
    ));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut stop = std::pin::pin!(stop);
    let mut stopping = false;
    let mut drained = std::pin::pin!(wait_until_idle(in_flight.clone()));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop, if !stopping => {
                stopping = true;
                stopping_flag.store(true, Ordering::Release);
                drained.set(wait_until_idle(in_flight.clone()));
                continue;
            }
            () = &mut drained, if stopping => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, mostly: wait instead of spinning on the error.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Responses are small and latency matters: never let Nagle hold a reply back.
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection limit reached; refusing");
            tokio::spawn(refuse(stream));
            continue;
        };
        let builder = builder.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        let header_timeout = limits.header_timeout;
        let tls = tls.clone();
        tokio::spawn(async move {
            // hyper's header timeout starts with the first byte (it reads the protocol
            // preface before it), so a client that connects and says nothing is cut here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let Some(acceptor) = tls else {
                serve_connection(&builder, stream, app, watcher, peer).await;
                drop(permit);
                return;
            };
            // Every TLS connection opens with a handshake record (content type 22).
            if first[0] != 0x16 {
                tracing::debug!(%peer, "plain HTTP on the TLS port; answering 400");
                refuse_plain_http(stream).await;
                return;
            }
            match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(&builder, stream, app, watcher, peer).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake not done within the header timeout")
                }
            }
            drop(permit);
        });
    }
    // Nothing is in flight: idle kept-alive connections close now, HTTP/2 ones get GOAWAY.
    graceful.shutdown().await;
}

/// Serves HTTP/1.1 and HTTP/2 on one accepted connection until it closes or the drain ends it.
async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
    peer: std::net::SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// A plain-HTTP 400 for a client that spoke HTTP to the TLS port: readable by any HTTP client,
/// unlike a TLS alert.
async fn refuse_plain_http(stream: tokio::net::TcpStream) {
    let body = r#"{"error":"this port serves HTTPS only (the server runs with --tls-cert): use https://"}"#;
    answer_and_close(stream, "400 Bad Request", "", body).await;
}

/// Resolves once no request is in flight.
async fn wait_until_idle(in_flight: Arc<AtomicUsize>) {
    while in_flight.load(Ordering::Acquire) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A 503 for a connection over the limit, written without reading its request.
async fn refuse(stream: tokio::net::TcpStream) {
    let body = r#"{"error":"the server has too many open connections; retry shortly"}"#;
    answer_and_close(
        stream,
        "503 Service Unavailable",
        "retry-after: 1\r\n",
        body,
    )
    .await;
}

/// Writes one HTTP/1.1 response without reading the request, then closes.
async fn answer_and_close(
    mut stream: tokio::net::TcpStream,
    status: &str,
    extra_headers: &str,
    body: &str,
) {
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra_headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Read what the client sent until it closes: closing with unread bytes makes the
        // kernel send a reset, which can destroy the answer before the client reads it.
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// What the per-request layer shares with the accept loop.
#[derive(Clone)]
struct Tracker {
    in_flight: Arc<AtomicUsize>,
    // Set when the drain starts: requests that arrive later are answered (503 or a probe's
    // answer, in microseconds) but not waited for, so callers that keep calling a draining
    // server cannot stretch its drain to the whole grace period.
    stopping: Arc<AtomicBool>,
    body_timeout: Duration,
}

/// Counts the request as in flight while it runs, and gives its body a deadline.
async fn track_and_time_body(
    axum::extract::State(tracker): axum::extract::State<Tracker>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let body_timeout = tracker.body_timeout;
    let _done = if tracker.stopping.load(Ordering::Acquire) {
        None
    } else {
        tracker.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(Decrement(tracker.in_flight))
    };
    let (parts, body) = request.into_parts();
    let body = Body::new(DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(body_timeout)),
        timeout: body_timeout,
    });
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

struct Decrement(Arc<AtomicUsize>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(self.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

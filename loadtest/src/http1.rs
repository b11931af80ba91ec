//! A lean HTTP/1.1 client connection for the load's hot path. Each request goes out as one
//! pre-encoded buffer (request line, headers and body, built once per run by
//! [`crate::payload::RequestTemplate`]) in one write; the answer is read into a buffer the
//! connection reuses, its head parsed in place for the few headers the load generator looks at,
//! and its body counted, not kept (only the start of an error's body is kept, for its message).
//! No allocation, formatting or task hand-off per request: that is what lets one thread drive
//! a server as cheaply as wrk does. Metadata and statistics requests still go through hyper.

use memchr::memmem;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest response head accepted; also the read buffer's size.
const HEAD_LIMIT: usize = 64 * 1024;

/// Finds the end of a response head: built once, not at each search as `memmem::find` does.
static HEAD_END: std::sync::LazyLock<memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memmem::Finder::new(b"\r\n\r\n"));

/// The header that carries the JSON part's length in binary-tensor bodies.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Bytes of an error answer's body kept for its message.
pub const ERROR_BODY_KEPT: usize = 300;

/// A connection idle longer than this is checked for a close by the server before reuse (an
/// open-loop pool can hold connections past a server's keep-alive timeout).
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// Why an exchange failed.
#[derive(Debug)]
pub enum Http1Error {
    /// Writing, reading, or the server closed the connection before a full answer.
    Io(std::io::Error),
    /// The answer is not HTTP/1.x as this client reads it.
    Malformed(String),
}

impl std::fmt::Display for Http1Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Http1Error::Io(e) => write!(f, "{e}"),
            Http1Error::Malformed(why) => write!(f, "malformed HTTP answer: {why}"),
        }
    }
}

impl std::error::Error for Http1Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Http1Error::Io(e) => Some(e),
            Http1Error::Malformed(_) => None,
        }
    }
}

impl From<std::io::Error> for Http1Error {
    fn from(e: std::io::Error) -> Self {
        Http1Error::Io(e)
    }
}

/// What the load generator needs of one answer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body bytes received.
    pub body_len: usize,
    /// `inference-header-content-length` when present: its value, or the text sent when
    /// that is not a byte count (kept only then, so a good answer allocates nothing).
    pub header_length: Option<Result<usize, String>>,
    /// `x-spindle-queue-us`, when present and a number.
    pub queue_us: Option<u64>,
    /// `x-spindle-compute-us`, when present and a number.
    pub compute_us: Option<u64>,
    /// The body's first [`ERROR_BODY_KEPT`] bytes, for answers other than 200.
    pub error_body: Vec<u8>,
}

/// How the body's end is found.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// One keep-alive connection.
pub struct Http1Connection<S> {
    stream: S,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// When the connection was last checked for reuse ([`Http1Connection::closed_while_idle`]):
    /// the start of the previous request, so no clock is read per answer.
    last_used: Instant,
    /// False once the server said `Connection: close` or the body ran to the end of the stream.
    reusable: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Http1Connection<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Http1Connection {
            stream,
            buf: vec![0; HEAD_LIMIT].into_boxed_slice(),
            start: 0,
            end: 0,
            last_used: Instant::now(),
            reusable: true,
        }
    }

    /// Whether another request may be sent on this connection.
    pub fn reusable(&self) -> bool {
        self.reusable
    }

    /// Sends `request` (a complete HTTP/1.1 request) and reads the whole answer.
    /// After an error the connection is not reusable.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Answer, Http1Error> {
        let answer = self.exchange_once(request).await;
        if answer.is_err() {
            self.reusable = false;
        }
        answer
    }

    async fn exchange_once(&mut self, request: &[u8]) -> Result<Answer, Http1Error> {
        self.stream.write_all(request).await?;
        let answer = loop {
            let (answer, framing) = self.read_head().await?;
            // 1xx answers (100 Continue) precede the real one and have no body.
            if !(100..200).contains(&answer.status) {
                break self.read_body(answer, framing).await?;
            }
        };
        Ok(answer)
    }

    /// Refills the buffer after what is unread; an error at end of stream.
    async fn fill(&mut self) -> Result<(), Http1Error> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            if self.start == 0 {
                return Err(Http1Error::Malformed(format!(
                    "the response head is longer than {HEAD_LIMIT} bytes"
                )));
            }
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            self.reusable = false;
            return Err(Http1Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection before a complete answer",
            )));
        }
        self.end += n;
        Ok(())
    }

    async fn read_head(&mut self) -> Result<(Answer, Framing), Http1Error> {
        let mut searched = self.start;
        let head_end = loop {
            // Look again only at what is new, from three bytes back (a split "\r\n\r\n").
            let from = searched.saturating_sub(3).max(self.start);
            if let Some(at) = HEAD_END.find(&self.buf[from..self.end]) {
                break from + at + 4;
            }
            searched = self.end;
            let before = self.start;
            self.fill().await?;
            searched -= before - self.start;
        };
        let head = &self.buf[self.start..head_end];
        let parsed = parse_head(head)?;
        self.start = head_end;
        if parsed.2 {
            self.reusable = false;
        }
        Ok((parsed.0, parsed.1))
    }

    /// Counts `n` body bytes from the buffer and the stream, keeping an error body's start.
    async fn take(&mut self, answer: &mut Answer, mut n: usize) -> Result<(), Http1Error> {
        while n > 0 {
            if self.start == self.end {
                self.fill().await?;
            }
            let here = n.min(self.end - self.start);
            keep(answer, &self.buf[self.start..self.start + here]);
            self.start += here;
            answer.body_len += here;
            n -= here;
        }
        Ok(())
    }

    /// One CRLF-terminated line of a chunked body, without its CRLF.
    async fn line(&mut self) -> Result<std::ops::Range<usize>, Http1Error> {
        loop {
            if let Some(at) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let line = self.start..self.start + at;
                self.start += at + 1;
                let end = if line.end > line.start && self.buf[line.end - 1] == b'\r' {
                    line.end - 1
                } else {
                    line.end
                };
                return Ok(line.start..end);
            }
            self.fill().await?;
        }
    }

    async fn read_body(
        &mut self,
        mut answer: Answer,
        framing: Framing,
    ) -> Result<Answer, Http1Error> {
        match framing {
            Framing::Length(n) => self.take(&mut answer, n).await?,
            Framing::Chunked => loop {
                let line = self.line().await?;
                let text = std::str::from_utf8(&self.buf[line]).unwrap_or_default();
                let size = text.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16)
                    .map_err(|_| Http1Error::Malformed(format!("'{text}' is not a chunk size")))?;
                if size == 0 {
                    // Trailers, if any, end with an empty line.
                    while !self.line().await?.is_empty() {}
                    break;
                }
                self.take(&mut answer, size).await?;
                if !self.line().await?.is_empty() {
                    return Err(Http1Error::Malformed(
                        "a chunk is longer than its size".into(),
                    ));
                }
            },
            Framing::UntilClose => {
                self.reusable = false;
                loop {
                    let here = self.end - self.start;
                    keep(&mut answer, &self.buf[self.start..self.end]);
                    answer.body_len += here;
                    (self.start, self.end) = (0, 0);
                    match self.stream.read(&mut self.buf[..]).await? {
                        0 => break,
                        n => self.end = n,
                    }
                }
            }
        }
        Ok(answer)
    }

    /// Whether the server has closed an idle connection, asked at `now`, just before a request
    /// is sent. Checked only when the previous request started more than [`IDLE_CHECK`]
    /// before, so the hot path makes no extra system call and reads no clock.
    pub fn closed_while_idle(&mut self, now: Instant) -> bool
    where
        S: PeekClosed,
    {
        let idle = now.saturating_duration_since(self.last_used) > IDLE_CHECK;
        self.last_used = now;
        idle && self.stream.peek_closed()
    }
}

/// Keeps the start of a body that is not a success, for the error message.
fn keep(answer: &mut Answer, bytes: &[u8]) {
    if answer.status != 200 && answer.error_body.len() < ERROR_BODY_KEPT {
        let room = ERROR_BODY_KEPT - answer.error_body.len();
        answer
            .error_body
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Streams that can tell, without blocking, whether the peer has closed them.
pub trait PeekClosed {
    /// True when the peer has closed the stream (or it has failed).
    fn peek_closed(&mut self) -> bool;
}

impl PeekClosed for tokio::net::TcpStream {
    fn peek_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.try_read(&mut byte) {
            // An unsolicited byte on an idle HTTP/1 connection is as unusable as a close.
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

/// Parses a response head (status line and headers, ending with the empty line): the answer's
/// fields, its framing, and whether the server will close the connection. Lines are found with
/// `memchr` and header names compared by length first: this runs once per request.
fn parse_head(head: &[u8]) -> Result<(Answer, Framing, bool), Http1Error> {
    let text = std::str::from_utf8(head)
        .map_err(|_| Http1Error::Malformed("the response head is not UTF-8".into()))?;
    let mut lines = Lines { text };
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next());
    let status = match (version, code.and_then(|c| c.parse::<u16>().ok())) {
        ("HTTP/1.1" | "HTTP/1.0", Some(code)) if (100..600).contains(&code) => code,
        _ => {
            return Err(Http1Error::Malformed(format!(
                "'{status_line}' is not an HTTP/1.x status line"
            )));
        }
    };
    let mut answer = Answer {
        status,
        ..Answer::default()
    };
    let mut close = version == "HTTP/1.0";
    let (mut length, mut chunked) = (None, false);
    for line in lines.filter(|l| !l.is_empty()) {
        let Some(colon) = memchr::memchr(b':', line.as_bytes()) else {
            return Err(Http1Error::Malformed(format!("'{line}' is not a header")));
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let is = |wanted: &str| name.eq_ignore_ascii_case(wanted);
        if is("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| {
                Http1Error::Malformed(format!("content-length '{value}' is not a byte count"))
            })?);
        } else if is("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        } else if is("connection") {
            if value.eq_ignore_ascii_case("close") {
                close = true;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                close = false;
            }
        } else if is(HEADER_LENGTH) {
            answer.header_length = Some(value.parse().map_err(|_| value.to_string()));
        } else if is("x-spindle-queue-us") {
            answer.queue_us = value.parse().ok();
        } else if is("x-spindle-compute-us") {
            answer.compute_us = value.parse().ok();
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::UntilClose
    };
    Ok((answer, framing, close))
}

/// The CRLF-separated lines of a head, found with `memchr` (a bare LF ends a line too).
struct Lines<'a> {
    text: &'a str,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.text.is_empty() {
            return None;
        }
        let (line, rest) = match memchr::memchr(b'\n', self.text.as_bytes()) {
            Some(at) => (&self.text[..at], &self.text[at + 1..]),
            None => (self.text, ""),
        };
        self.text = rest;
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one exchange against a peer that answers `reply` in pieces of `piece` bytes.
    async fn answer(reply: &'static [u8], piece: usize) -> (Result<Answer, Http1Error>, bool) {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let peer = tokio::spawn(async move {
            let mut request = [0u8; 5];
            server.read_exact(&mut request).await.unwrap();
            assert_eq!(&request, b"hello");
            for part in reply.chunks(piece) {
                server.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
            // Dropping its end closes the stream: the end of a close-delimited body.
        });
        let mut connection = Http1Connection::new(client);
        let result = connection.exchange(b"hello").await;
        peer.await.unwrap();
        (result, connection.reusable())
    }

    #[tokio::test]
    async fn a_length_framed_answer_with_the_headers_we_read() {
        let reply =
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nINFERENCE-HEADER-CONTENT-LENGTH: 3\r\n\
                      x-spindle-queue-us: 12\r\nx-spindle-compute-us: 340\r\n\r\nabcde";
        for piece in [1, 7, reply.len()] {
            let (got, reusable) = answer(reply, piece).await;
            let got = got.unwrap();
            assert_eq!((got.status, got.body_len), (200, 5), "pieces of {piece}");
            assert_eq!(got.header_length, Some(Ok(3)));
            assert_eq!((got.queue_us, got.compute_us), (Some(12), Some(340)));
            assert!(got.error_body.is_empty(), "a success's body is not kept");
            assert!(reusable);
        }
    }

    #[tokio::test]
    async fn chunked_and_error_bodies() {
        let reply = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n\
                      4;ext=1\r\nbusy\r\n7\r\n, later\r\n0\r\nTrailer: x\r\n\r\n";
        for piece in [1, 5, reply.len()] {
            let got = answer(reply, piece).await.0.unwrap();
            assert_eq!((got.status, got.body_len), (503, 11));
            assert_eq!(got.error_body, b"busy, later");
        }
    }

    #[tokio::test]
    async fn continue_then_close_delimited() {
        let reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil the end";
        let (got, reusable) = answer(reply, 4).await;
        let got = got.unwrap();
        assert_eq!((got.status, got.body_len), (200, 13));
        assert!(
            !reusable,
            "a body read to the end of the stream ends the connection"
        );
        let reply = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        let (got, reusable) = answer(reply, 100).await;
        assert_eq!(got.unwrap().body_len, 0);
        assert!(!reusable);
    }

    #[tokio::test]
    async fn broken_answers_are_errors() {
        let (got, reusable) = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", 3).await;
        let e = got.unwrap_err().to_string();
        assert!(e.contains("closed the connection"), "{e}");
        assert!(!reusable);
        let e = answer(b"SSH-2.0-OpenSSH\r\n\r\n", 100)
            .await
            .0
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an HTTP/1.x status line"), "{e}");
        let e = answer(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 100)
            .await
            .0
            .unwrap_err()
            .to_string();
        assert!(e.contains("content-length 'x'"), "{e}");
    }
}

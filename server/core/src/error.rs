//! Error kinds and the one table that maps each to an HTTP status and a gRPC code.
//!
//! Front ends never choose status codes themselves: they classify into an [`ErrorKind`] and read
//! the table, so HTTP and gRPC can never disagree about what a failure means.

use std::fmt;
use std::time::Duration;

/// What went wrong, from the caller's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or does not match the model's signature.
    InvalidInput,
    /// No such model, or no such version of it.
    NotFound,
    /// The request body or message is over the configured cap.
    TooLarge,
    /// The model's queue is full; retry later.
    Overloaded,
    /// The server or model is not ready, or is shutting down.
    Unavailable,
    /// The request's deadline passed before it could be computed.
    DeadlineExceeded,
    /// The client did not send its request in time (a body trickled past the body timeout).
    RequestTimeout,
    /// The server failed, not the request: an engine error, a preprocessing or engine thread
    /// that died, a batch lost with its worker. Retrying the same request may succeed.
    Internal,
}

/// gRPC status codes, by their numbers in the gRPC specification (kept here so the core does
/// not depend on a gRPC crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum GrpcCode {
    /// `INVALID_ARGUMENT` (3).
    InvalidArgument = 3,
    /// `DEADLINE_EXCEEDED` (4).
    DeadlineExceeded = 4,
    /// `NOT_FOUND` (5).
    NotFound = 5,
    /// `RESOURCE_EXHAUSTED` (8).
    ResourceExhausted = 8,
    /// `INTERNAL` (13).
    Internal = 13,
    /// `UNAVAILABLE` (14).
    Unavailable = 14,
}

/// One row of the classification table.
#[derive(Clone, Copy, Debug)]
pub struct Classification {
    /// HTTP status code.
    pub http: u16,
    /// gRPC status code.
    pub grpc: GrpcCode,
    /// Label used in metrics (`outcome="..."`).
    pub label: &'static str,
}

impl ErrorKind {
    /// The single table: HTTP status, gRPC code and metric label of each kind.
    pub fn classify(self) -> Classification {
        let (http, grpc, label) = match self {
            ErrorKind::InvalidInput => (400, GrpcCode::InvalidArgument, "invalid_input"),
            ErrorKind::NotFound => (404, GrpcCode::NotFound, "not_found"),
            ErrorKind::TooLarge => (413, GrpcCode::ResourceExhausted, "too_large"),
            ErrorKind::Overloaded => (429, GrpcCode::ResourceExhausted, "overloaded"),
            ErrorKind::Unavailable => (503, GrpcCode::Unavailable, "unavailable"),
            ErrorKind::DeadlineExceeded => (504, GrpcCode::DeadlineExceeded, "deadline_exceeded"),
            ErrorKind::RequestTimeout => (408, GrpcCode::DeadlineExceeded, "request_timeout"),
            ErrorKind::Internal => (500, GrpcCode::Internal, "engine_error"),
        };
        Classification { http, grpc, label }
    }
}

/// An error answered to a caller: its kind and a message a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InferError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// Names what was wrong: the input, the expected and actual values, the fix.
    pub message: String,
    /// For [`ErrorKind::Overloaded`]: how long the caller should wait before retrying.
    pub retry_after: Option<Duration>,
}

impl InferError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> InferError {
        InferError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> InferError {
        InferError::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> InferError {
        InferError::new(ErrorKind::NotFound, message)
    }
}

impl fmt::Display for InferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InferError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_style_guide() {
        let rows = [
            (ErrorKind::InvalidInput, 400, GrpcCode::InvalidArgument),
            (ErrorKind::NotFound, 404, GrpcCode::NotFound),
            (ErrorKind::TooLarge, 413, GrpcCode::ResourceExhausted),
            (ErrorKind::Overloaded, 429, GrpcCode::ResourceExhausted),
            (ErrorKind::Unavailable, 503, GrpcCode::Unavailable),
            (ErrorKind::DeadlineExceeded, 504, GrpcCode::DeadlineExceeded),
            (ErrorKind::RequestTimeout, 408, GrpcCode::DeadlineExceeded),
            (ErrorKind::Internal, 500, GrpcCode::Internal),
        ];
        for (kind, http, grpc) in rows {
            let c = kind.classify();
            assert_eq!((c.http, c.grpc), (http, grpc), "{kind:?}");
        }
    }
}

/// A command-line option or argument the user gave is invalid: the `spindle` binary exits 64
/// (EX_USAGE) with this message, before it binds or writes anything. Libraries that check
/// options on a command's behalf (deployment, scoring) return it so the binary can tell a
/// usage mistake from a failure without the libraries importing the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

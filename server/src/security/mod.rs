//! Who may talk to the server: TLS on both front ends ([`tls`]: a certificate, and optionally
//! client certificates from one CA) and bearer tokens ([`auth`]). Both are loaded and checked
//! before anything binds, so a missing file or a key that does not match its certificate stops
//! `spindle serve` with a message naming the file.

pub mod auth;
pub mod tls;

pub use auth::Tokens;
pub use tls::{ServerTls, TlsFiles};

/// The server's TLS and token settings; the default is plain TCP and no tokens.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// `--tls-cert`, `--tls-key` and `--tls-client-ca`; `None` serves plain HTTP and gRPC.
    pub tls: Option<TlsFiles>,
    /// `--auth-token-file`'s tokens; `None` lets any caller in.
    pub tokens: Option<Tokens>,
}

//! The `spindle` command line: one binary for serving, clients, data, benchmarks and
//! deployment.
//!
//! - [`args`]: the top-level argument types (`Cli`, `Command`) and shared value parsers;
//!   arguments are checked before anything binds, and a bad value exits 64 (EX_USAGE).
//! - [`commands`]: one module per subcommand (`serve`, `zoo`, `infer`, `loadtest`, `bench`,
//!   `repo`, `data`, `train`, `score`, `replicas`, `yarn`); each calls libraries and prints
//!   what a person reads. No command imports another, and no library imports a command.
//! - [`progress`]: progress bars for long jobs (hidden when stderr is not a terminal).
//!
//! `main.rs` only parses, sets up logging and the runtime, and maps errors to exit codes.

pub mod args;
pub mod commands;
pub mod kerberos;
pub mod progress;

pub use args::{Cli, Command, EXIT_USAGE};
pub use commands::run;
pub use spindle_core::UsageError;

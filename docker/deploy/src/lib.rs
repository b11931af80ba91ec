//! Spindle's deployment code: how replicas of `spindle serve` are started, scaled and found.
//!
//! - [`yarn`]: replicas as a YARN service (Hadoop 3.1+ YARN Services): [`yarn::rm`] is the
//!   ResourceManager's REST client, [`yarn::spec`] the service specification and its
//!   validation, [`yarn::package`] the tarball uploaded to HDFS; the module itself runs the
//!   `spindle yarn` subcommands.
//! - [`discovery`]: a YARN service's READY containers as a client's endpoints, refreshed.
//! - [`replicas`]: `spindle replicas`, N local serve processes, optionally core-pinned.
//!
//! It lives under `docker/` with the container images: both are ways of deploying the one
//! `spindle` binary. The serving library (`spindle-server`) knows nothing of it; the client
//! library (`spindle-client`) takes the endpoint lists discovery produces.

pub mod discovery;
pub mod replicas;
pub mod yarn;

pub use discovery::{BuildFromYarn, DiscoveryError, YarnService};

//! The state every front end shares: the loaded models, readiness, request limits and the
//! repository watcher. HTTP handlers and the gRPC service each hold a clone.

use crate::infer::Limits;
use crate::models::ModelManager;
use crate::repository::RepositoryWatcher;
use spindle_core::error::{ErrorKind, InferError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared state of every handler, HTTP and gRPC.
#[derive(Clone)]
pub struct AppState {
    /// Loaded models.
    pub models: Arc<ModelManager>,
    /// False until models are loaded, and again once shutdown begins.
    pub ready: Arc<AtomicBool>,
    /// Request limits shared by every front end.
    pub limits: Limits,
    /// The repository watcher (index, model control).
    pub repository: Arc<RepositoryWatcher>,
}

impl AppState {
    /// Whether the server takes inference requests.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The guard every inference entry point (KServe v2 HTTP and gRPC, TF Serving REST) runs
    /// first: an Unavailable error while the server starts or drains, so each front end maps
    /// it through the one error table.
    pub fn check_ready(&self) -> Result<(), InferError> {
        if self.is_ready() {
            Ok(())
        } else {
            let mut e = InferError::new(
                ErrorKind::Unavailable,
                "server is not ready (starting or shutting down)",
            );
            // Load balancers and clients retry a 503 sooner and more politely with a hint.
            e.retry_after = Some(std::time::Duration::from_secs(1));
            Err(e)
        }
    }
}

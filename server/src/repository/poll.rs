//! The poll task: syncs the repository every interval until the server stops.

use super::RepositoryWatcher;
use std::sync::Arc;
use std::time::Duration;

/// Stops the poll task when dropped (when `Server::run` returns).
pub struct PollTask(Option<tokio::task::JoinHandle<()>>);

impl Drop for PollTask {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Starts polling every `interval`; a zero interval polls never.
pub fn spawn(watcher: Arc<RepositoryWatcher>, interval: Duration) -> PollTask {
    if interval.is_zero() {
        return PollTask(None);
    }
    PollTask(Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        // A slow poll (a large download) must not be followed by a burst of catch-up polls.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(e) = watcher.sync().await {
                watcher.metrics().poll_errors.inc();
                tracing::warn!(repo = %watcher.repo().location(), error = %e, "repository poll failed; serving continues with the versions loaded");
            }
        }
    })))
}

//! The poll task: syncs the repository every interval until the server stops.

use super::{RepositoryWatcher, SyncError};
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
        let mut last = LastFailure::default();
        loop {
            ticks.tick().await;
            let result = watcher.sync().await;
            // A model whose engine is missing is not a failed read of the repository: its
            // state says why it is UNAVAILABLE, and the other models were synced.
            if matches!(result, Err(SyncError::Repo(_))) {
                watcher.metrics().poll_errors.inc();
            }
            let repo = watcher.repo().location();
            match last.report(result) {
                Report::Quiet => {}
                Report::Recovered => {
                    tracing::info!(%repo, "repository poll succeeded again");
                }
                Report::New(SyncError::Engine(e)) => {
                    tracing::warn!(%repo, error = %e, "some models cannot be served: their engine is unavailable (said once until it changes)");
                }
                Report::New(e) => {
                    tracing::warn!(%repo, error = %e, "repository poll failed; serving continues with the versions loaded (said once until the error changes; spindle_repository_poll_errors_total counts every failed poll)");
                }
            }
        }
    })))
}

/// What a poll's result is worth saying: an error is logged when it first appears or changes,
/// not at every poll of an outage that lasts hours.
#[derive(Default)]
struct LastFailure(Option<String>);

enum Report {
    Quiet,
    Recovered,
    New(SyncError),
}

impl LastFailure {
    fn report(&mut self, result: Result<(), SyncError>) -> Report {
        match result {
            Ok(()) if self.0.take().is_some() => Report::Recovered,
            Ok(()) => Report::Quiet,
            Err(e) => {
                let text = e.to_string();
                if self.0.as_deref() == Some(text.as_str()) {
                    tracing::debug!(error = %text, "repository poll failed again, as before");
                    Report::Quiet
                } else {
                    self.0 = Some(text);
                    Report::New(e)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_loader::RepoError;

    fn failed(name: &str) -> Result<(), SyncError> {
        Err(SyncError::Repo(RepoError::InvalidName(name.into())))
    }

    #[test]
    fn an_error_is_said_once_until_it_changes_and_recovery_is_said() {
        let mut last = LastFailure::default();
        assert!(matches!(last.report(Ok(())), Report::Quiet));
        assert!(matches!(last.report(failed("a")), Report::New(_)));
        assert!(matches!(last.report(failed("a")), Report::Quiet));
        assert!(matches!(last.report(failed("b")), Report::New(_)));
        assert!(matches!(last.report(Ok(())), Report::Recovered));
        assert!(matches!(last.report(Ok(())), Report::Quiet));
        assert!(matches!(last.report(failed("b")), Report::New(_)));
    }
}

//! How often, and how patiently, a failed operation is tried again: the one policy type the
//! repository storage (HDFS) and the client library share.
//!
//! `max_attempts` counts every attempt, the first included: 1 means "never retry", 5 means the
//! first try and up to four retries. The wait before each retry doubles, from
//! `initial_backoff` up to `max_backoff`. Which errors are worth a retry is the caller's
//! business; the policy only counts and paces.
//!
//! There is no `Default`: storage and the client want different first waits, so each crate
//! names its own default (`spindle_loader::HDFS_RETRY`, `spindle_client::DEFAULT_RETRY`).

use std::time::Duration;

/// How many attempts an operation gets and how long to wait between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (1 = no retry; 0 behaves as 1, since an
    /// operation is always tried once).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled before each further one.
    pub initial_backoff: Duration,
    /// Longest wait the doubling grows to.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// A policy of `max_attempts` attempts in total (first included), waiting `initial_backoff`
    /// before the second and doubling up to `max_backoff`.
    pub const fn new(
        max_attempts: u32,
        initial_backoff: Duration,
        max_backoff: Duration,
    ) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff,
            max_backoff,
        }
    }

    /// The pacing of one operation under this policy, with its first attempt under way.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            policy: *self,
            made: 1,
            wait: self.initial_backoff,
        }
    }
}

/// The retry state of one operation: attempts made so far and the next wait.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    made: u32,
    wait: Duration,
}

impl Backoff {
    /// Attempts made so far, the one under way included (1 during the first).
    pub fn attempts_made(&self) -> u32 {
        self.made
    }

    /// After a failed attempt: how long to wait before the next one, counting it as made, or
    /// `None` when the policy's attempts are spent.
    ///
    /// The first wait is `initial_backoff` as given, even above `max_backoff`: only the doubled
    /// waits are capped, so a caller that wants every wait capped applies `max_backoff` itself.
    pub fn next_wait(&mut self) -> Option<Duration> {
        if self.made >= self.policy.max_attempts {
            return None;
        }
        let wait = self.wait;
        self.wait = (self.wait * 2).min(self.policy.max_backoff);
        self.made += 1;
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(policy: RetryPolicy) -> Vec<Duration> {
        let mut backoff = policy.backoff();
        std::iter::from_fn(|| backoff.next_wait()).collect()
    }

    #[test]
    fn max_attempts_counts_the_first_try() {
        let ms = Duration::from_millis;
        let policy = RetryPolicy::new(5, ms(200), ms(1000));
        assert_eq!(waits(policy), [ms(200), ms(400), ms(800), ms(1000)]);
        let mut backoff = policy.backoff();
        while backoff.next_wait().is_some() {}
        assert_eq!(backoff.attempts_made(), 5);
    }

    #[test]
    fn one_attempt_or_none_means_no_retry() {
        let ms = Duration::from_millis;
        assert!(waits(RetryPolicy::new(1, ms(10), ms(10))).is_empty());
        assert!(waits(RetryPolicy::new(0, ms(10), ms(10))).is_empty());
    }
}

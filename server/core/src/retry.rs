//! How often, and how patiently, a failed operation is tried again: the one policy type the
//! repository storage (HDFS) and the client library share.
//!
//! `max_attempts` counts every attempt, the first included: 1 means "never retry", 5 means the
//! first try and up to four retries. The wait before each retry doubles, from
//! `initial_backoff` up to `max_backoff`. Which errors are worth a retry is the caller's
//! business; the policy only counts and paces.
//!
//! Each wait is jittered: a random point between half the nominal wait and all of it, so
//! clients that failed together (a replica restarting under load) do not retry together.
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
        let wait = jittered(self.wait);
        self.wait = (self.wait * 2).min(self.policy.max_backoff);
        self.made += 1;
        Some(wait)
    }
}

/// A random duration between half of `nominal` and all of it ("equal jitter"). The randomness
/// is std's per-process hash keys mixed with a counter and the clock: enough to spread
/// retries apart, without a random-number crate in the core.
fn jittered(nominal: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    nominal.mul_f64(0.5 + 0.5 * unit)
}

/// Limits retries to a share of the calls made, as linkerd and Finagle do: every call adds
/// `ratio` of a token (up to `cap`), every retry takes a whole one. While a server keeps
/// failing, its callers' retries dry up instead of multiplying its load; a healthy server's
/// occasional failure is still retried.
#[derive(Debug)]
pub struct RetryBudget {
    tokens: std::sync::Mutex<f64>,
    ratio: f64,
    cap: f64,
}

impl RetryBudget {
    /// A budget of `ratio` retries per call, holding at most `cap` unspent retries (and
    /// starting full, so a new client can retry at once).
    pub fn new(ratio: f64, cap: f64) -> RetryBudget {
        RetryBudget {
            tokens: std::sync::Mutex::new(cap),
            ratio,
            cap,
        }
    }

    /// A call was made.
    pub fn deposit(&self) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        *tokens = (*tokens + self.ratio).min(self.cap);
    }

    /// Whether a retry may be made now (and, if so, pays for it).
    pub fn withdraw(&self) -> bool {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
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
        let got = waits(policy);
        let nominal = [ms(200), ms(400), ms(800), ms(1000)];
        assert_eq!(got.len(), nominal.len());
        for (wait, nominal) in got.iter().zip(nominal) {
            assert!(
                *wait >= nominal / 2 && *wait <= nominal,
                "{wait:?} of {nominal:?}"
            );
        }
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

    #[test]
    fn waits_are_spread_out() {
        let ms = Duration::from_millis;
        let firsts: std::collections::HashSet<Duration> = (0..50)
            .map(|_| waits(RetryPolicy::new(2, ms(1000), ms(1000)))[0])
            .collect();
        assert!(firsts.len() > 40, "{} distinct waits of 50", firsts.len());
    }

    #[test]
    fn a_budget_allows_a_share_of_calls_as_retries() {
        let budget = RetryBudget::new(0.2, 2.0);
        // Starts full: two retries at once.
        assert!(budget.withdraw() && budget.withdraw());
        assert!(!budget.withdraw());
        // Then one retry per five calls.
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(!budget.withdraw());
        budget.deposit();
        assert!(budget.withdraw());
        // Unspent retries are capped.
        for _ in 0..100 {
            budget.deposit();
        }
        assert!(budget.withdraw() && budget.withdraw() && !budget.withdraw());
    }
}

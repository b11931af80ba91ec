//! Open-loop request rates: the `--rate` levels (a list `100,200`, a geometric range
//! `100:1000:x2`, an arithmetic range `100:500:+100`, or a mix) and the arrival schedule
//! (constant spacing or Poisson arrivals).

use crate::options::{Arrivals, format_rate};
use crate::range::{self, Level};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The request rates (requests per second) to measure, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLevels(pub Vec<f64>);

impl fmt::Display for RateLevels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(|r| format_rate(*r)).collect();
        f.write_str(&items.join(","))
    }
}

impl FromStr for RateLevels {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        range::parse_list(text).map(RateLevels)
    }
}

impl Level for f64 {
    const RANGE: &'static str = "rate range";
    const EXAMPLES: [&'static str; 2] = ["100:1000:x2", "100:500:+100"];
    const FACTOR_RULE: &'static str = "the factor must be above 1";
    const STEP_RULE: &'static str = "the step must be above 0";

    fn parse_level(text: &str) -> Result<f64, String> {
        match text.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
            Ok(_) => Err(format!("request rates must be above 0, got {text}")),
            Err(_) => Err(format!(
                "'{text}' is not a request rate (requests per second, like 500)"
            )),
        }
    }

    fn factor_allowed(factor: f64) -> bool {
        factor > 1.0 && factor.is_finite()
    }

    fn step_allowed(step: f64) -> bool {
        step > 0.0 && step.is_finite()
    }

    fn times(self, factor: f64) -> Option<f64> {
        Some(self * factor)
    }

    fn plus(self, step: f64) -> Option<f64> {
        Some(self + step)
    }

    fn within(self, end: f64) -> bool {
        // A tolerance, so that 0.1-steps do not lose their last level to rounding.
        self <= end * (1.0 + 1e-9)
    }
}

/// The gaps between scheduled send times: constant, or exponential (a Poisson process) from a
/// seeded generator, so that two runs send the same schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    arrivals: Arrivals,
    mean_gap_s: f64,
    state: u64,
}

impl Schedule {
    /// The schedule for `rps` requests per second.
    pub fn new(arrivals: Arrivals, rps: f64, seed: u64) -> Self {
        Schedule {
            arrivals,
            mean_gap_s: 1.0 / rps,
            state: seed,
        }
    }

    /// The gap until the next request.
    pub fn next_gap(&mut self) -> Duration {
        match self.arrivals {
            Arrivals::Constant => Duration::from_secs_f64(self.mean_gap_s),
            Arrivals::Poisson => {
                // 1 - u is in (0, 1], so the logarithm is finite.
                let u = self.uniform();
                Duration::from_secs_f64(-(1.0 - u).ln() * self.mean_gap_s)
            }
        }
    }

    /// A uniform value in [0, 1) from splitmix64 (enough for spacing requests; no dependency).
    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(text: &str) -> Result<Vec<f64>, String> {
        text.parse::<RateLevels>().map(|l| l.0)
    }

    #[test]
    fn lists_and_ranges() {
        assert_eq!(levels("100,200"), Ok(vec![100.0, 200.0]));
        assert_eq!(levels("100:1000:x2"), Ok(vec![100.0, 200.0, 400.0, 800.0]));
        assert_eq!(levels("100:300:+100"), Ok(vec![100.0, 200.0, 300.0]));
        assert_eq!(levels("0.5:1.5:0.5"), Ok(vec![0.5, 1.0, 1.5]));
        assert_eq!(
            levels("50, 100:400:x2"),
            Ok(vec![50.0, 100.0, 200.0, 400.0])
        );
    }

    #[test]
    fn bad_rates_are_explained() {
        assert!(levels("0").unwrap_err().contains("above 0"));
        assert!(levels("fast").unwrap_err().contains("not a request rate"));
        assert!(levels("10:1:x2").unwrap_err().contains("ends before"));
        assert!(
            levels("1:10:x1")
                .unwrap_err()
                .contains("factor must be above 1")
        );
        assert!(
            levels("1:10:+0")
                .unwrap_err()
                .contains("step must be above 0")
        );
        assert!(levels("1:10:y").unwrap_err().contains("not a rate range"));
    }

    #[test]
    fn poisson_gaps_average_the_rate_and_vary() {
        let mut constant = Schedule::new(Arrivals::Constant, 200.0, 1);
        assert_eq!(constant.next_gap(), Duration::from_millis(5));
        let mut poisson = Schedule::new(Arrivals::Poisson, 200.0, 1);
        let gaps: Vec<f64> = (0..20_000)
            .map(|_| poisson.next_gap().as_secs_f64())
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.005).abs() < 0.0002, "mean gap {mean}");
        // An exponential distribution's standard deviation equals its mean.
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!(
            (var.sqrt() - 0.005).abs() < 0.0003,
            "std dev {}",
            var.sqrt()
        );
    }
}

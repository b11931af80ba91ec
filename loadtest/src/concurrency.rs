//! Concurrency levels: a list (`1,4,16,64`), a geometric range (`1:64:x2`), an arithmetic range
//! (`1:10:+3`), or a comma-separated mix of these.

use crate::range::{self, Level};
use std::fmt;
use std::str::FromStr;

/// The concurrency levels to measure, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyLevels(pub Vec<usize>);

impl fmt::Display for ConcurrencyLevels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&items.join(","))
    }
}

impl FromStr for ConcurrencyLevels {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        range::parse_list(text).map(ConcurrencyLevels)
    }
}

impl Level for usize {
    const RANGE: &'static str = "range";
    const EXAMPLES: [&'static str; 2] = ["1:64:x2", "1:10:+3"];
    const FACTOR_RULE: &'static str = "the factor must be at least 2";
    const STEP_RULE: &'static str = "the step must be at least 1";

    fn parse_level(text: &str) -> Result<usize, String> {
        match text.parse::<usize>() {
            Ok(0) => Err("concurrency levels must be at least 1, got 0".to_string()),
            Ok(n) => Ok(n),
            Err(_) => Err(format!(
                "'{text}' is not a concurrency level (a whole number like 16)"
            )),
        }
    }

    fn factor_allowed(factor: usize) -> bool {
        factor >= 2
    }

    fn step_allowed(step: usize) -> bool {
        step > 0
    }

    fn times(self, factor: usize) -> Option<usize> {
        self.checked_mul(factor)
    }

    fn plus(self, step: usize) -> Option<usize> {
        self.checked_add(step)
    }

    fn within(self, end: usize) -> bool {
        self <= end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(text: &str) -> Result<Vec<usize>, String> {
        text.parse::<ConcurrencyLevels>().map(|l| l.0)
    }

    #[test]
    fn lists_and_ranges() {
        assert_eq!(levels("1,4,16,64"), Ok(vec![1, 4, 16, 64]));
        assert_eq!(levels("1:64:x2"), Ok(vec![1, 2, 4, 8, 16, 32, 64]));
        assert_eq!(levels("1:50:x2"), Ok(vec![1, 2, 4, 8, 16, 32]));
        assert_eq!(levels("1:10:+3"), Ok(vec![1, 4, 7, 10]));
        assert_eq!(levels("2:9:3"), Ok(vec![2, 5, 8]));
        assert_eq!(levels("1:3"), Ok(vec![1, 2, 3]));
        assert_eq!(levels("8:8:x2"), Ok(vec![8]));
        assert_eq!(levels("1, 2:8:x2 ,100"), Ok(vec![1, 2, 4, 8, 100]));
    }

    #[test]
    fn bad_levels_are_explained() {
        assert!(levels("0,4").unwrap_err().contains("at least 1"));
        assert!(
            levels("4:1:x2")
                .unwrap_err()
                .contains("ends before it starts")
        );
        assert!(
            levels("1:8:x1")
                .unwrap_err()
                .contains("factor must be at least 2")
        );
        assert!(
            levels("1:8:+0")
                .unwrap_err()
                .contains("step must be at least 1")
        );
        assert!(levels("1:8:y2").unwrap_err().contains("is not a range"));
        assert!(
            levels("four")
                .unwrap_err()
                .contains("not a concurrency level")
        );
    }
}

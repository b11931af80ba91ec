//! Concurrency levels: a list (`1,4,16,64`), a geometric range (`1:64:x2`), an arithmetic range
//! (`1:10:+3`), or a comma-separated mix of these.

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
        let mut levels = Vec::new();
        for item in text.split(',').map(str::trim) {
            if item.contains(':') {
                levels.extend(parse_range(item)?);
            } else {
                levels.push(parse_level(item)?);
            }
        }
        Ok(ConcurrencyLevels(levels))
    }
}

fn parse_level(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("concurrency levels must be at least 1, got 0".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "'{text}' is not a concurrency level (a whole number like 16)"
        )),
    }
}

/// Parses `start:end`, `start:end:xFACTOR`, `start:end:+STEP` or `start:end:STEP`.
fn parse_range(text: &str) -> Result<Vec<usize>, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let usage = || {
        format!(
            "'{text}' is not a range: use start:end:xFACTOR (1:64:x2) or start:end:+STEP (1:10:+3)"
        )
    };
    if parts.len() < 2 || parts.len() > 3 {
        return Err(usage());
    }
    let start = parse_level(parts[0])?;
    let end = parse_level(parts[1])?;
    if end < start {
        return Err(format!("range '{text}' ends before it starts"));
    }
    let step = parts.get(2).copied().unwrap_or("+1");
    let mut levels = vec![start];
    if let Some(factor) = step.strip_prefix(['x', 'X', '*']) {
        let factor: usize = factor.parse().map_err(|_| usage())?;
        if factor < 2 {
            return Err(format!("range '{text}': the factor must be at least 2"));
        }
        while let Some(next) = levels
            .last()
            .and_then(|l| l.checked_mul(factor))
            .filter(|n| *n <= end)
        {
            levels.push(next);
        }
    } else {
        let step: usize = step
            .strip_prefix('+')
            .unwrap_or(step)
            .parse()
            .map_err(|_| usage())?;
        if step == 0 {
            return Err(format!("range '{text}': the step must be at least 1"));
        }
        while let Some(next) = levels
            .last()
            .and_then(|l| l.checked_add(step))
            .filter(|n| *n <= end)
        {
            levels.push(next);
        }
    }
    Ok(levels)
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

//! The level-list syntax `--concurrency` and `--rate` share: comma-separated single levels and
//! `start:end` ranges stepped geometrically (`xFACTOR`) or arithmetically (`+STEP` or `STEP`).
//! What differs between them (whole numbers or fractions, how they are named in errors, the
//! smallest factor and step) is a [`Level`] implementation.

use std::str::FromStr;

/// A kind of level a list can hold.
pub trait Level: Copy + PartialOrd + FromStr {
    /// What a range of these is called in errors ("range", "rate range").
    const RANGE: &'static str;
    /// Example ranges for the usage error: one with a factor, one with a step.
    const EXAMPLES: [&'static str; 2];
    /// The rule a factor breaks when refused ("the factor must be at least 2").
    const FACTOR_RULE: &'static str;
    /// The rule a step breaks when refused.
    const STEP_RULE: &'static str;

    /// Parses one level, with an error that names what a level is.
    fn parse_level(text: &str) -> Result<Self, String>;
    /// Whether `factor` keeps a geometric range growing.
    fn factor_allowed(factor: Self) -> bool;
    /// Whether `step` keeps an arithmetic range growing.
    fn step_allowed(step: Self) -> bool;
    /// `self * factor`, or `None` when it no longer fits.
    fn times(self, factor: Self) -> Option<Self>;
    /// `self + step`, or `None` when it no longer fits.
    fn plus(self, step: Self) -> Option<Self>;
    /// Whether `self` still belongs to a range ending at `end`.
    fn within(self, end: Self) -> bool;
}

/// Parses a comma-separated mix of single levels and ranges, in order.
pub fn parse_list<T: Level>(text: &str) -> Result<Vec<T>, String> {
    let mut levels = Vec::new();
    for item in text.split(',').map(str::trim) {
        if item.contains(':') {
            levels.extend(parse_range::<T>(item)?);
        } else {
            levels.push(T::parse_level(item)?);
        }
    }
    Ok(levels)
}

/// Parses `start:end`, `start:end:xFACTOR`, `start:end:+STEP` or `start:end:STEP`.
fn parse_range<T: Level>(text: &str) -> Result<Vec<T>, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let usage = || {
        let [factor, step] = T::EXAMPLES;
        format!(
            "'{text}' is not a {}: use start:end:xFACTOR ({factor}) or start:end:+STEP ({step})",
            T::RANGE
        )
    };
    if !(2..=3).contains(&parts.len()) {
        return Err(usage());
    }
    let start = T::parse_level(parts[0])?;
    let end = T::parse_level(parts[1])?;
    if end < start {
        return Err(format!("{} '{text}' ends before it starts", T::RANGE));
    }
    let step = parts.get(2).copied().unwrap_or("+1");
    let next: Box<dyn Fn(T) -> Option<T>> = if let Some(factor) = step.strip_prefix(['x', 'X', '*'])
    {
        let factor: T = factor.parse().map_err(|_| usage())?;
        if !T::factor_allowed(factor) {
            return Err(format!("{} '{text}': {}", T::RANGE, T::FACTOR_RULE));
        }
        Box::new(move |level| level.times(factor))
    } else {
        let step: T = step
            .strip_prefix('+')
            .unwrap_or(step)
            .parse()
            .map_err(|_| usage())?;
        if !T::step_allowed(step) {
            return Err(format!("{} '{text}': {}", T::RANGE, T::STEP_RULE));
        }
        Box::new(move |level| level.plus(step))
    };
    let mut levels = vec![start];
    while let Some(n) = levels
        .last()
        .and_then(|&l| next(l))
        .filter(|n| n.within(end))
    {
        levels.push(n);
    }
    Ok(levels)
}

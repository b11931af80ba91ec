//! Durations as people write them in configs and on the command line: `500us`, `2ms`, `10s`.

use std::time::Duration;

/// Parses durations written as `500us`, `2ms`, `10s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("'{text}' is not a duration ({e}); write it like 500us, 2ms or 10s"))
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0us".to_string();
    }
    humantime::format_duration(d).to_string().replace(' ', "")
}

/// Serde adapter for `Duration` fields written as text (`#[serde(with = "duration_text")]`).
pub(super) mod duration_text {
    use super::{format_duration, parse_duration};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("500us").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(format_duration(Duration::from_micros(500)), "500us");
        assert!(parse_duration("ten").is_err());
    }
}

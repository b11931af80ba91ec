//! Which versions of a model to serve, as in TF Serving and Triton: the newest N (default 1),
//! all of them, or a fixed list.
//!
//! ```toml
//! version_policy = { latest = 2 }        # the two newest (default: { latest = 1 })
//! version_policy = "all"
//! version_policy = { specific = [1, 3] }
//! ```

use serde::{Deserialize, Serialize};

/// A model's version policy (`version_policy` in `config.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum VersionPolicy {
    /// The newest N versions.
    Latest(usize),
    /// Every version in the repository.
    All,
    /// Exactly these versions (those that exist).
    Specific(Vec<u64>),
}

impl Default for VersionPolicy {
    fn default() -> VersionPolicy {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// Whether this is the default (`{ latest = 1 }`), which `to_toml` leaves out.
    pub fn is_default(&self) -> bool {
        *self == VersionPolicy::default()
    }

    /// The versions to serve out of `available` (any order); the result is sorted, oldest first.
    pub fn select(&self, available: &[u64]) -> Vec<u64> {
        let mut sorted = available.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        match self {
            VersionPolicy::Latest(n) => sorted.split_off(sorted.len().saturating_sub(*n)),
            VersionPolicy::All => sorted,
            VersionPolicy::Specific(wanted) => {
                sorted.into_iter().filter(|v| wanted.contains(v)).collect()
            }
        }
    }

    /// Checks what serde cannot: `latest` at least 1, `specific` not empty.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            VersionPolicy::Latest(0) => Err("latest must be at least 1".into()),
            VersionPolicy::Specific(v) if v.is_empty() => {
                Err("specific needs at least one version, like { specific = [1] }".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_like_tf_serving() {
        let have = [3, 1, 10, 2];
        assert_eq!(VersionPolicy::default().select(&have), vec![10]);
        assert_eq!(VersionPolicy::Latest(2).select(&have), vec![3, 10]);
        assert_eq!(VersionPolicy::Latest(9).select(&have), vec![1, 2, 3, 10]);
        assert_eq!(VersionPolicy::All.select(&have), vec![1, 2, 3, 10]);
        assert_eq!(VersionPolicy::Specific(vec![2, 7]).select(&have), vec![2]);
        assert_eq!(VersionPolicy::default().select(&[]), Vec::<u64>::new());
    }

    #[test]
    fn parses_the_three_forms_from_toml() {
        #[derive(Deserialize)]
        struct T {
            p: VersionPolicy,
        }
        let parse = |s: &str| toml::from_str::<T>(s).map(|t| t.p);
        assert_eq!(
            parse("p = { latest = 2 }").unwrap(),
            VersionPolicy::Latest(2)
        );
        assert_eq!(parse("p = \"all\"").unwrap(), VersionPolicy::All);
        assert_eq!(
            parse("p = { specific = [1, 3] }").unwrap(),
            VersionPolicy::Specific(vec![1, 3])
        );
        assert!(parse("p = { newest = 2 }").is_err());
        assert!(VersionPolicy::Latest(0).validate().is_err());
    }
}

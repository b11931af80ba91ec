//! The feature spec, `features.toml`, stored beside a model: how a raw Criteo row becomes ids.
//!
//! ```toml
//! id_space = 1234567          # must equal the sum of every feature's size; the model's weights
//!
//! [[integer]]                 # 13 of them, in column order
//! name = "I1"
//! boundaries = [0, 1, 2, 4]   # strictly increasing; buckets: missing, (-inf,0), [0,1), ... [4,inf)
//!
//! [[categorical]]             # 26 of them, in column order
//! name = "C1"
//! hash_buckets = 1000         # Fingerprint64(token) % 1000; missing gets one more id
//!
//! [[cross]]
//! name = "C1_x_C2"
//! features = ["C1", "C2"]     # integer or categorical features
//! hash_buckets = 65536
//! ```
//!
//! Ids are laid out feature after feature (integers, categoricals, crosses) in one shared space,
//! so the model is a single weight vector and one row is `F` ids, one per feature.

use serde::{Deserialize, Serialize};

/// Integer columns in a Criteo row.
pub const INTEGER_COLUMNS: usize = 13;
/// Categorical columns in a Criteo row.
pub const CATEGORICAL_COLUMNS: usize = 26;

/// A bucketized integer feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegerFeature {
    /// Column name, used in error messages and crosses.
    pub name: String,
    /// Strictly increasing bucket boundaries; `n` boundaries give `n + 1` value buckets.
    pub boundaries: Vec<i64>,
}

/// A hashed categorical feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalFeature {
    /// Column name.
    pub name: String,
    /// Buckets for `Fingerprint64(token) % hash_buckets`.
    pub hash_buckets: u64,
}

/// A hashed cross of two or more features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossFeature {
    /// Cross name.
    pub name: String,
    /// Names of the crossed integer or categorical features.
    pub features: Vec<String>,
    /// Buckets of the combined hash.
    pub hash_buckets: u64,
}

/// The whole spec; see the module docs for the file format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Size of the shared id space: the sum of every feature's size.
    pub id_space: u64,
    /// The 13 integer features, in column order.
    pub integer: Vec<IntegerFeature>,
    /// The 26 categorical features, in column order.
    pub categorical: Vec<CategoricalFeature>,
    /// Crosses, each one more id per row.
    #[serde(default)]
    pub cross: Vec<CrossFeature>,
}

/// A spec that cannot be used; the message names the field and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Not TOML, or fields of the wrong type.
    #[error("features.toml does not parse: {0}")]
    Parse(String),
    /// A field with an unusable value.
    #[error("features.toml: {field}: {problem}")]
    Invalid {
        /// The field, like `integer[3].boundaries`.
        field: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Where one component of a cross comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureRef {
    /// The integer feature at this index.
    Integer(usize),
    /// The categorical feature at this index.
    Categorical(usize),
}

impl IntegerFeature {
    /// Ids this feature uses: one for missing, one per value bucket.
    pub fn size(&self) -> u64 {
        self.boundaries.len() as u64 + 2
    }
}

impl CategoricalFeature {
    /// Ids this feature uses: the hash buckets and one for missing.
    pub fn size(&self) -> u64 {
        self.hash_buckets.saturating_add(1)
    }
}

impl FeatureSpec {
    /// Parses and validates `features.toml` text.
    pub fn from_toml(text: &str) -> Result<FeatureSpec, SpecError> {
        let spec: FeatureSpec =
            toml::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The spec as `features.toml` text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a feature spec always serialises")
    }

    /// Ids per row: one per integer, categorical and cross feature.
    pub fn fields(&self) -> usize {
        self.integer.len() + self.categorical.len() + self.cross.len()
    }

    /// The sum of every feature's size: what `id_space` must be.
    pub fn required_id_space(&self) -> u64 {
        // Saturating: two hash_buckets near 2^63 overflowed the sum (found writing the fuzz target), which
        // panicked in debug builds and in release wrapped to a small id_space that a file could
        // match and pass validation with. A saturated sum fails the 2^63 check instead.
        self.integer
            .iter()
            .map(IntegerFeature::size)
            .chain(self.categorical.iter().map(CategoricalFeature::size))
            .chain(self.cross.iter().map(|c| c.hash_buckets))
            .fold(0, u64::saturating_add)
    }

    /// Resolves a feature name used in a cross.
    pub fn feature(&self, name: &str) -> Option<FeatureRef> {
        if let Some(i) = self.integer.iter().position(|f| f.name == name) {
            return Some(FeatureRef::Integer(i));
        }
        self.categorical
            .iter()
            .position(|f| f.name == name)
            .map(FeatureRef::Categorical)
    }

    /// Checks everything the transform relies on; the error names the field.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.integer.len() != INTEGER_COLUMNS {
            return Err(invalid(
                "integer",
                format!(
                    "Criteo rows have {INTEGER_COLUMNS} integer columns, the spec lists {}; list one [[integer]] per column, in order",
                    self.integer.len()
                ),
            ));
        }
        if self.categorical.len() != CATEGORICAL_COLUMNS {
            return Err(invalid(
                "categorical",
                format!(
                    "Criteo rows have {CATEGORICAL_COLUMNS} categorical columns, the spec lists {}; list one [[categorical]] per column, in order",
                    self.categorical.len()
                ),
            ));
        }
        let mut names = std::collections::HashSet::new();
        let all_names = self
            .integer
            .iter()
            .map(|f| f.name.as_str())
            .enumerate()
            .map(|(i, n)| (format!("integer[{i}].name"), n))
            .chain(
                self.categorical
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (format!("categorical[{i}].name"), f.name.as_str())),
            )
            .chain(
                self.cross
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (format!("cross[{i}].name"), f.name.as_str())),
            );
        for (field, name) in all_names {
            if name.is_empty() {
                return Err(invalid(field, "empty name; give every feature a name"));
            }
            if !names.insert(name) {
                return Err(invalid(
                    field,
                    format!("'{name}' is used twice; feature names must be unique"),
                ));
            }
        }
        for (i, f) in self.integer.iter().enumerate() {
            if let Some(w) = f.boundaries.windows(2).find(|w| w[0] >= w[1]) {
                return Err(invalid(
                    format!("integer[{i}].boundaries"),
                    format!(
                        "must be strictly increasing, but {} is followed by {} (feature {})",
                        w[0], w[1], f.name
                    ),
                ));
            }
        }
        for (i, f) in self.categorical.iter().enumerate() {
            if f.hash_buckets == 0 {
                return Err(invalid(
                    format!("categorical[{i}].hash_buckets"),
                    format!("must be at least 1 (feature {})", f.name),
                ));
            }
        }
        for (i, c) in self.cross.iter().enumerate() {
            if c.hash_buckets == 0 {
                return Err(invalid(
                    format!("cross[{i}].hash_buckets"),
                    format!("must be at least 1 (cross {})", c.name),
                ));
            }
            if c.features.len() < 2 {
                return Err(invalid(
                    format!("cross[{i}].features"),
                    format!("a cross needs at least two features, got {:?}", c.features),
                ));
            }
            if let Some(unknown) = c.features.iter().find(|n| self.feature(n).is_none()) {
                return Err(invalid(
                    format!("cross[{i}].features"),
                    format!(
                        "'{unknown}' is not an integer or categorical feature of this spec (crosses of crosses are not supported)"
                    ),
                ));
            }
        }
        let required = self.required_id_space();
        if required > i64::MAX as u64 {
            return Err(invalid("id_space", "the features need more than 2^63 ids"));
        }
        if self.id_space != required {
            return Err(invalid(
                "id_space",
                format!(
                    "is {}, but the features use {required} ids (missing and value buckets of the integers, hash buckets + 1 of the categoricals, hash buckets of the crosses); set id_space = {required}",
                    self.id_space
                ),
            ));
        }
        Ok(())
    }

    /// The spec Spindle's generator, trainer and zoo use for Criteo data: log-scale integer
    /// buckets, hash buckets sized to each column's cardinality (capped at 2^17), and three
    /// crosses.
    pub fn criteo_default() -> FeatureSpec {
        // Powers of two, after the small values that matter most: counts are heavy tailed.
        let mut boundaries = vec![0, 1, 2, 3, 4, 6];
        boundaries.extend((3..=16).map(|p| 1i64 << p));
        let integer = (1..=INTEGER_COLUMNS)
            .map(|i| IntegerFeature {
                name: format!("I{i}"),
                boundaries: boundaries.clone(),
            })
            .collect();
        let categorical = crate::spec::CRITEO_CARDINALITIES
            .iter()
            .enumerate()
            .map(|(i, &cardinality)| CategoricalFeature {
                name: format!("C{}", i + 1),
                hash_buckets: (cardinality * 2).clamp(4, 1 << 17),
            })
            .collect();
        let cross = [("C1", "C2"), ("C5", "C9"), ("I1", "C6")]
            .into_iter()
            .map(|(a, b)| CrossFeature {
                name: format!("{a}_x_{b}"),
                features: vec![a.to_string(), b.to_string()],
                hash_buckets: 1 << 16,
            })
            .collect();
        let mut spec = FeatureSpec {
            id_space: 0,
            integer,
            categorical,
            cross,
        };
        spec.id_space = spec.required_id_space();
        spec
    }
}

/// Distinct values per categorical column in the Criteo display-advertising data (Kaggle
/// release, as tabulated by DLRM): from 3 (C9) to over ten million (C3).
pub const CRITEO_CARDINALITIES: [u64; CATEGORICAL_COLUMNS] = [
    1460, 583, 10_131_227, 2_202_608, 305, 24, 12_517, 633, 3, 93_145, 5683, 8_351_593, 3194, 27,
    14_992, 5_461_306, 10, 5652, 2173, 4, 7_046_547, 18, 15, 286_181, 105, 142_572,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_validates_and_round_trips() {
        let spec = FeatureSpec::criteo_default();
        spec.validate().unwrap();
        assert_eq!(spec.fields(), 13 + 26 + 3);
        assert_eq!(FeatureSpec::from_toml(&spec.to_toml()).unwrap(), spec);
    }

    fn err(mutate: impl FnOnce(&mut FeatureSpec)) -> String {
        let mut spec = FeatureSpec::criteo_default();
        mutate(&mut spec);
        spec.validate().unwrap_err().to_string()
    }

    #[test]
    fn validation_errors_name_the_field() {
        let e = err(|s| s.id_space += 1);
        assert!(
            e.contains("id_space") && e.contains("set id_space ="),
            "{e}"
        );
        let e = err(|s| s.integer[3].boundaries = vec![5, 5]);
        assert!(
            e.contains("integer[3].boundaries") && e.contains("I4"),
            "{e}"
        );
        let e = err(|s| s.categorical[2].hash_buckets = 0);
        assert!(e.contains("categorical[2].hash_buckets"), "{e}");
        let e = err(|s| s.cross[1].features = vec!["C5".into(), "C99".into()]);
        assert!(e.contains("cross[1].features") && e.contains("C99"), "{e}");
        let e = err(|s| s.cross[0].features.truncate(1));
        assert!(e.contains("at least two"), "{e}");
        let e = err(|s| {
            s.integer.pop();
        });
        assert!(e.contains("13 integer columns"), "{e}");
        let e = err(|s| s.categorical[1].name = "C1".into());
        assert!(
            e.contains("categorical[1].name") && e.contains("twice"),
            "{e}"
        );
    }

    #[test]
    fn hash_buckets_whose_sum_overflows_are_refused_not_wrapped() {
        let huge = i64::MAX as u64;
        let mut spec = FeatureSpec::criteo_default();
        spec.categorical[0].hash_buckets = huge;
        spec.categorical[1].hash_buckets = huge;
        // The id_space that the wrapped sum used to ask for, and so accepted.
        spec.id_space = spec
            .integer
            .iter()
            .map(|f| f.boundaries.len() as u64 + 2)
            .chain(
                spec.categorical
                    .iter()
                    .map(|c| c.hash_buckets.wrapping_add(1)),
            )
            .chain(spec.cross.iter().map(|c| c.hash_buckets))
            .fold(0, u64::wrapping_add);
        let e = spec.validate().unwrap_err().to_string();
        assert!(e.contains("id_space") && e.contains("2^63"), "{e}");
        // The same file as an operator would write it.
        let e = FeatureSpec::from_toml(&spec.to_toml())
            .unwrap_err()
            .to_string();
        assert!(e.contains("2^63"), "{e}");
    }

    #[test]
    fn parse_errors_are_reported() {
        let e = FeatureSpec::from_toml("id_space = 'many'").unwrap_err();
        assert!(matches!(e, SpecError::Parse(_)), "{e}");
        let mut text = FeatureSpec::criteo_default().to_toml();
        text.push_str("\nsurprise = 1\n");
        let e = FeatureSpec::from_toml(&text).unwrap_err().to_string();
        assert!(e.contains("surprise"), "{e}");
    }
}

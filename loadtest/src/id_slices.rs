//! Valid ids for a model that takes transformed Criteo rows: an INT64 input of `[rows, fields]`
//! whose every position is one feature's id, and each feature owns a slice of the model's one
//! id space (`features.toml`). A server checks each id against its position's slice (a 400
//! otherwise), so generated ids are drawn from these slices, not from one range for all.

use anyhow::{Context, anyhow, bail};
use spindle_criteo::spec::{CategoricalFeature, FeatureSpec, IntegerFeature};
use std::ops::Range;

/// The preprocessing a model configuration declares for an input that takes Criteo rows (raw
/// TSV as BYTES, or ids already transformed as INT64).
pub const CRITEO_ROWS: &str = "criteo_rows";

/// Where each id position of one input draws its ids from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdSlices {
    /// The input that takes the ids.
    pub input: String,
    /// Each position's slice of the id space, in row order.
    pub fields: Vec<Range<i64>>,
    /// Where the slices came from, for the run's first lines ("the server's model
    /// configuration", "--features PATH").
    pub source: String,
}

impl IdSlices {
    /// The slices `features_toml` gives, for `input`; `source` names where the text came from.
    pub fn from_features(features_toml: &str, input: &str, source: &str) -> anyhow::Result<Self> {
        let spec = FeatureSpec::from_toml(features_toml)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("the features.toml from {source} cannot be used"))?;
        // The transform's layout (spindle-criteo's Transformer, which the server checks ids
        // with): the integer features in column order, then the categoricals, then the
        // crosses, each taking the next `size` ids. A validated spec fits in an i64.
        let sizes = spec
            .integer
            .iter()
            .map(IntegerFeature::size)
            .chain(spec.categorical.iter().map(CategoricalFeature::size))
            .chain(spec.cross.iter().map(|c| c.hash_buckets));
        let mut start = 0i64;
        let fields = sizes
            .map(|size| {
                let slice = start..start + size as i64;
                start = slice.end;
                slice
            })
            .collect();
        Ok(IdSlices {
            input: input.to_string(),
            fields,
            source: source.to_string(),
        })
    }

    /// Checks that `shape` (batch dimension included) is `[rows, fields]`.
    pub fn check_shape(&self, shape: &[usize]) -> anyhow::Result<()> {
        if shape.len() != 2 || shape[1] != self.fields.len() {
            bail!(
                "input '{}' has shape {shape:?}, but the features.toml from {} gives {} ids per row: the input must be [rows, {}]",
                self.input,
                self.source,
                self.fields.len(),
                self.fields.len()
            );
        }
        Ok(())
    }

    /// The id for element `index` of a row-major `[rows, fields]` tensor, drawn from its
    /// position's slice by `random`.
    pub fn id(&self, index: usize, random: u64) -> i64 {
        let slice = &self.fields[index % self.fields.len()];
        // Slices are never empty (every feature holds at least its "missing" id) and fit in
        // an i64, so the width is positive and the sum stays inside the slice.
        let width = slice.end.abs_diff(slice.start);
        slice.start + (random % width) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use spindle_criteo::transform::Transformer;

    #[test]
    fn every_position_draws_from_its_own_slice() {
        let text = FeatureSpec::criteo_default().to_toml();
        let slices = IdSlices::from_features(&text, "ids", "a test").unwrap();
        let transformer = Transformer::new(FeatureSpec::criteo_default()).unwrap();
        assert_eq!(slices.fields.len(), transformer.fields());
        // Slices follow one another through the whole id space.
        for pair in slices.fields.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        let ids: Vec<i64> = (0..slices.fields.len() * 50)
            .map(|i| slices.id(i, (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        transformer.check_ids(&ids).unwrap();
        // Ids spread over the slice, not all at its start.
        let wide = slices.fields.iter().position(|s| s.end - s.start > 1000);
        let wide = wide.expect("the default spec has wide categorical slices");
        let drawn: Vec<i64> = ids
            .iter()
            .skip(wide)
            .step_by(slices.fields.len())
            .copied()
            .collect();
        assert!(drawn.iter().any(|&id| id > slices.fields[wide].start + 100));
    }

    #[test]
    fn unusable_specs_and_shapes_are_explained() {
        let e = IdSlices::from_features("id_space = 3", "ids", "--features f.toml").unwrap_err();
        assert!(format!("{e:#}").contains("--features f.toml"), "{e:#}");
        let text = FeatureSpec::criteo_default().to_toml();
        let slices = IdSlices::from_features(&text, "ids", "a test").unwrap();
        let fields = slices.fields.len();
        slices.check_shape(&[4, fields]).unwrap();
        let e = slices.check_shape(&[4, 3]).unwrap_err().to_string();
        assert!(e.contains(&format!("[rows, {fields}]")), "{e}");
    }
}

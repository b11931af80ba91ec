//! `--features`: a model trained on Criteo rows through TensorFlow's feature ops, imported as the
//! graph after the id lookup. Its `features.toml` travels into the published version, so the
//! server turns raw TSV rows into the ids the graph takes (`preprocess = "criteo_rows"`), with
//! the same transform the model was trained with.

use anyhow::Context;
use spindle_core::DataType;
use spindle_core::config::{ModelConfig, Preprocess};
use spindle_criteo::spec::FeatureSpec;
use std::ops::Range;
use std::path::Path;

/// A validated `features.toml`, as read and as parsed.
#[derive(Debug, Clone)]
pub struct Features {
    /// The file as given: published unchanged beside the model.
    pub text: String,
    /// The spec it holds.
    pub spec: FeatureSpec,
}

impl Features {
    /// Reads and validates `path`; the error names the file and the field.
    pub fn read(path: &Path) -> anyhow::Result<Features> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --features {}", path.display()))?;
        let spec = FeatureSpec::from_toml(&text)
            .with_context(|| format!("--features {}", path.display()))?;
        Ok(Features { text, spec })
    }

    /// Each id position's slice of the shared id space, in row order (integers, categoricals,
    /// crosses): the verification batch draws every id from its own slice, as real rows would.
    pub fn id_ranges(&self) -> Vec<Range<i64>> {
        let sizes = self
            .spec
            .integer
            .iter()
            .map(|f| f.size())
            .chain(self.spec.categorical.iter().map(|f| f.size()))
            .chain(self.spec.cross.iter().map(|c| c.hash_buckets));
        let mut start = 0i64;
        sizes
            .map(|size| {
                let range = start..start + size as i64;
                start = range.end;
                range
            })
            .collect()
    }

    /// Marks the first input `criteo_rows`, after checking it is the INT64 `[-1, F]` ids tensor
    /// this spec makes.
    pub fn apply(&self, config: &mut ModelConfig) -> anyhow::Result<()> {
        let fields = self.spec.fields() as i64;
        let input = config
            .inputs
            .first_mut()
            .context("--features: the signature has no input to take the ids")?;
        if input.dtype != DataType::I64 || input.dims != [-1, fields] {
            anyhow::bail!(
                "--features: the signature's first input '{}' is {} {:?}, but features.toml makes \
                 {fields} ids per row: export the graph after the id lookup with an INT64 \
                 [None, {fields}] input (the ids, one per integer, categorical and cross feature, \
                 in features.toml's order)",
                input.name,
                input.dtype,
                input.dims
            );
        }
        input.preprocess = Some(Preprocess::CriteoRows);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features() -> Features {
        let spec = FeatureSpec::criteo_default();
        Features {
            text: spec.to_toml(),
            spec,
        }
    }

    /// The zoo's criteo_ctr config with its ids input as the signature gave it (no preprocess).
    fn config(dtype: DataType, dims: Vec<i64>) -> ModelConfig {
        let mut config = spindle_zoo::ctr::config(42);
        config.inputs[0].preprocess = None;
        config.inputs[0].dtype = dtype;
        config.inputs[0].dims = dims;
        config
    }

    #[test]
    fn ranges_tile_the_id_space_in_row_order() {
        let f = features();
        let ranges = f.id_ranges();
        assert_eq!(ranges.len(), f.spec.fields());
        assert_eq!(ranges[0], 0..f.spec.integer[0].size() as i64);
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(ranges.last().unwrap().end as u64, f.spec.id_space);
    }

    #[test]
    fn the_ids_input_becomes_criteo_rows_and_anything_else_is_refused() {
        let f = features();
        let mut good = config(DataType::I64, vec![-1, 42]);
        f.apply(&mut good).unwrap();
        assert_eq!(good.inputs[0].preprocess, Some(Preprocess::CriteoRows));
        good.validate().unwrap();

        let e = f
            .apply(&mut config(DataType::I64, vec![-1, 41]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'ids'") && e.contains("makes 42 ids per row"),
            "{e}"
        );
        let e = f
            .apply(&mut config(DataType::F32, vec![-1, 42]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("INT64 [None, 42]"), "{e}");
    }

    #[test]
    fn a_bad_file_is_named_with_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features.toml");
        let mut spec = FeatureSpec::criteo_default();
        spec.id_space += 1;
        std::fs::write(&path, spec.to_toml()).unwrap();
        let e = format!("{:#}", Features::read(&path).unwrap_err());
        assert!(e.contains("--features") && e.contains("id_space"), "{e}");
        let e = format!(
            "{:#}",
            Features::read(&dir.path().join("absent.toml")).unwrap_err()
        );
        assert!(e.contains("reading --features"), "{e}");
    }
}

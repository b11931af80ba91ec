//! Synthetic input tensors: concrete shapes from the model's metadata and deterministic
//! pseudo-random values for each datatype, held as little-endian bytes.

use crate::element::ElementType;
use crate::id_slices::IdSlices;
use crate::inputs::{GeneratedInputs, InputTensor};
use crate::metadata::TensorMetadata;
use crate::options::ShapeOverride;
use anyhow::bail;
use spindle_criteo::rng::SplitMix64;

/// Largest input the generator builds (so a typo in a shape is an error, not an OOM).
const MAX_INPUT_BYTES: usize = 1 << 30;

/// Builds every input from the metadata: a leading -1 is the batch dimension (`batch` rows);
/// other -1 dimensions must be fixed with `--shape`. The input `ids` names (transformed
/// Criteo rows) takes each position's id from that feature's slice of the id space.
pub fn generate(
    inputs: &[TensorMetadata],
    batch: usize,
    overrides: &[ShapeOverride],
    ids: Option<&IdSlices>,
) -> anyhow::Result<GeneratedInputs> {
    if inputs.is_empty() {
        bail!("the model's metadata lists no inputs");
    }
    if let Some(ids) = ids.filter(|ids| !inputs.iter().any(|i| i.name == ids.input)) {
        bail!(
            "the model has no input '{}' for the ids of the features.toml from {}",
            ids.input,
            ids.source
        );
    }
    if let Some(unknown) = overrides
        .iter()
        .find(|o| !inputs.iter().any(|i| i.name == o.name))
    {
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        bail!(
            "--shape names input '{}', which the model does not have (inputs: {})",
            unknown.name,
            names.join(", ")
        );
    }
    let mut batched = false;
    let mut tensors = Vec::with_capacity(inputs.len());
    for (index, meta) in inputs.iter().enumerate() {
        let element = ElementType::parse(&meta.datatype, &meta.name)?;
        let has_batch = meta.shape.first() == Some(&-1);
        batched |= has_batch;
        if !has_batch && batch != 1 {
            bail!(
                "input '{}' has no batch dimension (shape {:?}), so --batch must be 1, not {batch}",
                meta.name,
                meta.shape
            );
        }
        let rest = &meta.shape[usize::from(has_batch)..];
        let override_dims = overrides
            .iter()
            .find(|o| o.name == meta.name)
            .map(|o| o.dims.as_slice());
        let mut shape = if has_batch { vec![batch] } else { Vec::new() };
        shape.extend(fixed_dims(meta, rest, override_dims)?);
        let elements = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let bytes = elements
            .and_then(|n| n.checked_mul(element.size()))
            .filter(|&b| b <= MAX_INPUT_BYTES);
        let Some(bytes) = bytes else {
            bail!(
                "input '{}' with shape {shape:?} would be over {} MiB per request",
                meta.name,
                MAX_INPUT_BYTES >> 20
            );
        };
        let mut random = SplitMix64(0x5eed_0000 + index as u64);
        let mut raw = Vec::with_capacity(bytes);
        match ids.filter(|ids| ids.input == meta.name) {
            Some(ids) => {
                if element != ElementType::I64 {
                    bail!(
                        "input '{}' is {}, but ids from features.toml are INT64",
                        meta.name,
                        meta.datatype
                    );
                }
                ids.check_shape(&shape)?;
                for i in 0..bytes / element.size() {
                    raw.extend_from_slice(&ids.id(i, random.next_u64()).to_le_bytes());
                }
            }
            None => {
                for _ in 0..bytes / element.size() {
                    element.push(random.next_u64(), &mut raw);
                }
            }
        }
        tensors.push(InputTensor {
            name: meta.name.clone(),
            datatype: meta.datatype.clone(),
            element,
            shape,
            raw,
        });
    }
    Ok(GeneratedInputs {
        tensors,
        rows: if batched { batch } else { 1 },
    })
}

/// The non-batch dimensions of an input: the metadata's, with `--shape` filling variable ones.
fn fixed_dims(
    meta: &TensorMetadata,
    dims: &[i64],
    given: Option<&[usize]>,
) -> anyhow::Result<Vec<usize>> {
    let Some(given) = given else {
        return dims
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                let example: Vec<String> = dims.iter().map(|&d| if d < 0 { "N".into() } else { d.to_string() }).collect();
                anyhow::anyhow!(
                    "input '{}' has variable dimensions {:?}; the load generator needs fixed shapes: give them with --shape {}:{}",
                    meta.name,
                    meta.shape,
                    meta.name,
                    example.join(",")
                )
            });
    };
    let matches = given.len() == dims.len()
        && dims
            .iter()
            .zip(given)
            .all(|(&d, &g)| d < 0 || d as usize == g);
    if !matches {
        bail!(
            "--shape {}:{:?} does not fit the model's shape {:?} (give every dimension after the batch one; fixed ones must match)",
            meta.name,
            given,
            meta.shape
        );
    }
    Ok(given.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, datatype: &str, shape: &[i64]) -> TensorMetadata {
        TensorMetadata {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn batch_dimension_takes_the_batch() {
        let g = generate(&[meta("x", "FP32", &[-1, 24, 24, 3])], 4, &[], None).unwrap();
        assert_eq!(g.rows, 4);
        assert_eq!(g.tensors[0].shape, vec![4, 24, 24, 3]);
        assert_eq!(g.tensors[0].raw.len(), 4 * 24 * 24 * 3 * 4);
        let again = generate(&[meta("x", "FP32", &[-1, 24, 24, 3])], 4, &[], None).unwrap();
        assert_eq!(
            g.tensors[0].raw, again.tensors[0].raw,
            "values are deterministic"
        );
    }

    #[test]
    fn values_stay_in_range_per_datatype() {
        for dtype in ["FP32", "FP64", "FP16", "BF16"] {
            let g = generate(&[meta("x", dtype, &[-1, 64])], 1, &[], None).unwrap();
            for v in g.tensors[0].json_data().as_array().unwrap() {
                let v = v.as_f64().unwrap();
                assert!((0.0..1.0).contains(&v), "{dtype}: {v}");
            }
        }
        for dtype in ["INT8", "UINT8", "INT16", "INT32", "INT64", "UINT64"] {
            let g = generate(&[meta("x", dtype, &[64])], 1, &[], None).unwrap();
            let values = g.tensors[0].json_data();
            assert!(
                values
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|v| (0..=100).contains(&v.as_i64().unwrap())),
                "{dtype}"
            );
        }
        let g = generate(&[meta("b", "BOOL", &[16])], 1, &[], None).unwrap();
        assert!(g.tensors[0].raw.iter().all(|&b| b <= 1));
        assert_eq!(g.tensors[0].json_data().as_array().unwrap().len(), 16);
    }

    #[test]
    fn unusable_metadata_is_explained() {
        let e = generate(&[meta("s", "BYTES", &[-1, 1])], 1, &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs real samples"), "{e}");
        let e = generate(&[meta("t", "INT64", &[-1, -1])], 1, &[], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fixed shapes") && e.contains("--shape t:N"),
            "{e}"
        );
        let e = generate(&[meta("x", "FP32", &[3, 4])], 2, &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no batch dimension"), "{e}");
        let over = ShapeOverride {
            name: "y".into(),
            dims: vec![3],
        };
        let e = generate(&[meta("x", "FP32", &[3])], 1, &[over], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not have"), "{e}");
    }

    #[test]
    fn shape_overrides_fill_variable_dims() {
        let over = ShapeOverride {
            name: "t".into(),
            dims: vec![128],
        };
        let g = generate(&[meta("t", "INT64", &[-1, -1])], 2, &[over], None).unwrap();
        assert_eq!(g.tensors[0].shape, vec![2, 128]);
        let wrong = ShapeOverride {
            name: "t".into(),
            dims: vec![5, 5],
        };
        assert!(generate(&[meta("t", "INT64", &[-1, 4, -1])], 1, &[wrong], None).is_err());
    }

    #[test]
    fn criteo_ids_come_from_each_features_slice() {
        let spec = spindle_criteo::spec::FeatureSpec::criteo_default();
        let transformer = spindle_criteo::transform::Transformer::new(spec.clone()).unwrap();
        let slices = IdSlices::from_features(&spec.to_toml(), "ids", "a test").unwrap();
        let fields = transformer.fields() as i64;
        let inputs = [
            meta("ids", "INT64", &[-1, fields]),
            meta("x", "INT64", &[-1, 2]),
        ];
        let g = generate(&inputs, 64, &[], Some(&slices)).unwrap();
        let ids: Vec<i64> = g.tensors[0]
            .raw
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(ids.len(), 64 * fields as usize);
        transformer.check_ids(&ids).unwrap();
        // Only the named input takes ids; the other keeps the small generated values.
        let other = g.tensors[1].json_data();
        assert!(
            other
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v.as_i64().unwrap() <= 100)
        );

        let e = generate(&[meta("ids", "FP32", &[-1, fields])], 1, &[], Some(&slices));
        assert!(e.unwrap_err().to_string().contains("INT64"));
        let e = generate(&[meta("ids", "INT64", &[-1, 3])], 1, &[], Some(&slices));
        assert!(e.unwrap_err().to_string().contains("ids per row"));
        let e = generate(&[meta("other", "INT64", &[-1, 3])], 1, &[], Some(&slices));
        assert!(e.unwrap_err().to_string().contains("no input 'ids'"));
    }

    #[test]
    fn fixed_shape_models_send_one_inference() {
        let g = generate(&[meta("x", "FP32", &[3, 4])], 1, &[], None).unwrap();
        assert_eq!((g.rows, g.tensors[0].shape.clone()), (1, vec![3, 4]));
    }
}

//! What every kind of sample shares: the limit on how many are read, the model input that takes
//! them, how encoded samples become BYTES requests, and whether the protocol can carry them.

use super::preprocessing::Preprocessing;
use crate::element::{ElementType, bytes_elements};
use crate::inputs::{GeneratedInputs, InputTensor};
use crate::metadata::{ModelMetadata, TensorMetadata};
use crate::options::Protocol;
use anyhow::{bail, ensure};
use std::path::Path;

/// Most samples read from one `--input-data` (rows files can hold millions).
pub(super) const MAX_SAMPLES: usize = 10_000;

/// The one input of `model` that takes samples preprocessed as one of `kinds`.
pub(super) fn sample_input(
    model: &ModelMetadata,
    preprocessing: &Preprocessing,
    kinds: &[&str],
    what: &str,
    path: &Path,
) -> anyhow::Result<TensorMetadata> {
    let wanted = kinds
        .iter()
        .map(|k| format!("preprocess = \"{k}\""))
        .collect::<Vec<_>>()
        .join(" or ");
    let Some(input) = model.inputs.iter().find(|i| {
        preprocessing
            .inputs
            .get(&i.name)
            .is_some_and(|p| kinds.contains(&p.as_str()))
    }) else {
        bail!(
            "--input-data {}: model '{}' has no input that takes {what}: its inputs are {}; {what} need an input declaring {wanted}",
            path.display(),
            model.name,
            describe_inputs(model, preprocessing)
        );
    };
    ensure!(
        model.inputs.len() == 1,
        "--input-data {}: model '{}' has {} inputs ({}), and {what} fill only '{}'; give the model's tensors as a .json file instead",
        path.display(),
        model.name,
        model.inputs.len(),
        describe_inputs(model, preprocessing),
        input.name
    );
    ensure!(
        input.shape.first() == Some(&-1),
        "--input-data {}: input '{}' of model '{}' has no batch dimension (shape {:?}), so it cannot take {what}",
        path.display(),
        input.name,
        model.name,
        input.shape
    );
    Ok(input.clone())
}

pub(super) fn describe_inputs(model: &ModelMetadata, preprocessing: &Preprocessing) -> String {
    model
        .inputs
        .iter()
        .map(|i| {
            let pre = preprocessing
                .inputs
                .get(&i.name)
                .map_or(String::new(), |p| format!(" (preprocess {p})"));
            format!("{} {} {:?}{pre}", i.name, i.datatype, i.shape)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cuts encoded samples into BYTES requests of `batch` elements each, wrapping around so every
/// request is full: as many requests as it takes to send every sample once.
pub(super) fn batches(
    input: &TensorMetadata,
    samples: &[Vec<u8>],
    batch: usize,
) -> Vec<GeneratedInputs> {
    let count = samples.len().div_ceil(batch);
    (0..count)
        .map(|r| {
            let mut raw = Vec::new();
            for i in 0..batch {
                let sample = &samples[(r * batch + i) % samples.len()];
                raw.extend_from_slice(&(sample.len() as u32).to_le_bytes());
                raw.extend_from_slice(sample);
            }
            GeneratedInputs {
                tensors: vec![InputTensor {
                    name: input.name.clone(),
                    datatype: "BYTES".into(),
                    element: ElementType::Bytes,
                    shape: vec![batch],
                    raw,
                }],
                rows: batch,
            }
        })
        .collect()
}

/// KServe v2 JSON carries BYTES as strings: binary samples need another protocol.
pub(super) fn check_protocol(
    protocol: Protocol,
    path: &Path,
    requests: &[GeneratedInputs],
) -> anyhow::Result<()> {
    if protocol != Protocol::HttpJson {
        return Ok(());
    }
    let binary = requests.iter().flat_map(|r| &r.tensors).any(|t| {
        t.element == ElementType::Bytes
            && bytes_elements(&t.raw).any(|e| std::str::from_utf8(e).is_err())
    });
    ensure!(
        !binary,
        "--input-data {}: these samples are binary, and --protocol http-json carries BYTES only as text; use --protocol http-binary, grpc or tf-rest",
        path.display()
    );
    Ok(())
}

//! KServe v2 JSON tensors (`.json`: one `{"inputs": [...]}` request, or an array of them), sent
//! as written. Each tensor must match the metadata's name, datatype and shape, or be BYTES for
//! an input the server preprocesses.

use super::checks::{MAX_SAMPLES, describe_inputs};
use super::preprocessing::Preprocessing;
use crate::element::ElementType;
use crate::inputs::{GeneratedInputs, InputTensor};
use crate::metadata::{ModelMetadata, TensorMetadata};
use anyhow::{Context, anyhow, bail, ensure};
use serde_json::Value;
use std::path::Path;

/// Reads the requests in `file`; `batch` must be 1, since their shapes set the batch.
pub(super) fn requests(
    file: &Path,
    model: &ModelMetadata,
    preprocessing: &Preprocessing,
    batch: usize,
) -> anyhow::Result<Vec<GeneratedInputs>> {
    ensure!(
        batch == 1,
        "--batch {batch} does not apply to --input-data {}: JSON tensors are sent as written, their shapes set the batch",
        file.display()
    );
    read_json(file, model, preprocessing)
}

/// Reads KServe v2 JSON requests and checks them against the model's metadata.
fn read_json(
    file: &Path,
    model: &ModelMetadata,
    preprocessing: &Preprocessing,
) -> anyhow::Result<Vec<GeneratedInputs>> {
    let text = std::fs::read(file)
        .with_context(|| format!("--input-data: cannot read {}", file.display()))?;
    let value: Value = serde_json::from_slice(&text)
        .with_context(|| format!("--input-data {}: not valid JSON", file.display()))?;
    let requests = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => bail!(
            "--input-data {}: expected a KServe v2 request {{\"inputs\": [...]}} or an array of them",
            file.display()
        ),
    };
    ensure!(
        !requests.is_empty(),
        "--input-data {}: an empty array",
        file.display()
    );
    requests
        .iter()
        .take(MAX_SAMPLES)
        .enumerate()
        .map(|(i, request)| {
            let at = if requests.len() > 1 {
                format!("{} request {i}", file.display())
            } else {
                file.display().to_string()
            };
            json_request(request, model, preprocessing)
                .with_context(|| format!("--input-data {at}"))
        })
        .collect()
}

fn json_request(
    request: &Value,
    model: &ModelMetadata,
    preprocessing: &Preprocessing,
) -> anyhow::Result<GeneratedInputs> {
    let inputs = request["inputs"]
        .as_array()
        .ok_or_else(|| anyhow!("no \"inputs\" array (expected {{\"inputs\": [{{\"name\", \"datatype\", \"shape\", \"data\"}}]}})"))?;
    let mut tensors = Vec::with_capacity(model.inputs.len());
    let mut rows = 1;
    for meta in &model.inputs {
        let given: Vec<&Value> = inputs
            .iter()
            .filter(|t| t["name"] == meta.name.as_str())
            .collect();
        let tensor = match given.as_slice() {
            [one] => *one,
            [] => bail!(
                "no tensor for input '{}' (model '{}' expects {})",
                meta.name,
                model.name,
                describe_inputs(model, preprocessing)
            ),
            _ => bail!("input '{}' is given {} times", meta.name, given.len()),
        };
        let tensor = json_tensor(tensor, meta, preprocessing.inputs.get(&meta.name))?;
        if meta.shape.first() == Some(&-1) {
            rows = tensor.shape[0];
        }
        tensors.push(tensor);
    }
    if let Some(unknown) = inputs
        .iter()
        .find(|t| !model.inputs.iter().any(|m| t["name"] == m.name.as_str()))
    {
        bail!(
            "model '{}' has no input {} (its inputs: {})",
            model.name,
            unknown["name"],
            describe_inputs(model, preprocessing)
        );
    }
    Ok(GeneratedInputs { tensors, rows })
}

/// Checks one JSON tensor against its metadata and encodes its data little-endian.
fn json_tensor(
    tensor: &Value,
    meta: &TensorMetadata,
    preprocess: Option<&String>,
) -> anyhow::Result<InputTensor> {
    let name = &meta.name;
    let datatype = tensor["datatype"]
        .as_str()
        .ok_or_else(|| anyhow!("input '{name}' has no \"datatype\""))?;
    let shape: Vec<usize> = tensor["shape"]
        .as_array()
        .and_then(|dims| {
            dims.iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect()
        })
        .ok_or_else(|| anyhow!("input '{name}': \"shape\" must be a list of whole numbers"))?;
    let expected = match preprocess {
        Some(p) => format!(
            "{} {:?} (or BYTES [n] holding {p} input)",
            meta.datatype, meta.shape
        ),
        None => format!("{} {:?}", meta.datatype, meta.shape),
    };
    let bytes_for_preprocess = datatype == "BYTES" && preprocess.is_some();
    let fits = if bytes_for_preprocess {
        shape.len() == 1 || (shape.len() == 2 && shape[1] == 1)
    } else {
        datatype == meta.datatype
            && shape.len() == meta.shape.len()
            && shape
                .iter()
                .zip(&meta.shape)
                .all(|(&g, &m)| m < 0 || g as i64 == m)
    };
    ensure!(
        fits,
        "input '{name}' is {datatype} {shape:?}, but the model expects {expected}"
    );
    let element = if datatype == "BYTES" {
        ElementType::Bytes
    } else {
        ElementType::parse(datatype, name)?
    };
    let flat = spindle_core::tensor::json_leaves(&tensor["data"]);
    let count: usize = shape.iter().product();
    ensure!(
        tensor["data"].is_array() && flat.len() == count,
        "input '{name}': shape {shape:?} holds {count} values, but \"data\" has {}",
        flat.len()
    );
    let mut raw = Vec::new();
    for (i, value) in flat.iter().enumerate() {
        element.push_json(value, &mut raw).map_err(|why| {
            anyhow!("input '{name}' value {i} ({value}): {why} for datatype {datatype}")
        })?;
    }
    Ok(InputTensor {
        name: name.clone(),
        datatype: datatype.to_string(),
        element,
        shape,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Protocol;
    use crate::samples::fixtures::model;
    use crate::samples::load;
    use serde_json::json;

    #[test]
    fn json_tensors_are_checked_against_the_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.json");
        let m = model(&[("x", "FP32", &[-1, 2]), ("k", "INT64", &[-1, 1])]);
        let pre = Preprocessing::default();
        let write = |v: Value| std::fs::write(&file, v.to_string()).unwrap();
        write(json!({"inputs": [
            {"name": "k", "datatype": "INT64", "shape": [2, 1], "data": [7, -1]},
            {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[0.5, 1], [2, 3]]},
        ]}));
        let requests = load(&file, &m, &pre, Protocol::HttpJson, 1).unwrap();
        let r = &requests[0];
        assert_eq!(
            (r.rows, r.tensors[0].name.as_str()),
            (2, "x"),
            "metadata order"
        );
        assert_eq!(r.tensors[0].raw[..4], 0.5f32.to_le_bytes());
        assert_eq!(r.tensors[1].raw[8..], (-1i64).to_le_bytes());

        let cases = [
            (
                json!({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [1, 2]},
                                {"name": "k", "datatype": "INT64", "shape": [1, 1], "data": [1]}]}),
                "is FP64 [1, 2], but the model expects FP32 [-1, 2]",
            ),
            (
                json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]},
                                {"name": "k", "datatype": "INT64", "shape": [1, 1], "data": [1]}]}),
                "expects FP32 [-1, 2]",
            ),
            (
                json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1]},
                                {"name": "k", "datatype": "INT64", "shape": [1, 1], "data": [1]}]}),
                "holds 2 values, but \"data\" has 1",
            ),
            (
                json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}),
                "no tensor for input 'k'",
            ),
            (
                json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]},
                                {"name": "k", "datatype": "INT64", "shape": [1, 1], "data": [1.5]}]}),
                "value 0 (1.5)",
            ),
            (
                json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]},
                                {"name": "k", "datatype": "INT64", "shape": [1, 1], "data": [1]},
                                {"name": "z", "datatype": "INT64", "shape": [1], "data": [1]}]}),
                "no input \"z\"",
            ),
            (json!([]), "empty array"),
        ];
        for (value, want) in cases {
            write(value.clone());
            let e = format!(
                "{:#}",
                load(&file, &m, &pre, Protocol::HttpBinary, 1).unwrap_err()
            );
            assert!(e.contains("t.json") && e.contains(want), "{value}: {e}");
        }
        write(json!({"inputs": []}));
        let e = format!(
            "{:#}",
            load(&file, &m, &pre, Protocol::HttpBinary, 4).unwrap_err()
        );
        assert!(e.contains("--batch 4"), "{e}");
    }
}

//! TF Serving's predict body: the row (`instances`) and columnar (`inputs`) formats parsed
//! into the shared request, and `predictions` / `outputs` written straight from the tensors.

use super::SIGNATURE;
use crate::http::codec::push_json_element;
use crate::infer::{InferRequest, accepts_dtype, all_outputs};
use crate::models::LoadedModel;
use base64::Engine as _;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq};
use serde_json::{Map, Value};
use spindle_core::config::{TensorSpec, spec_names};
use spindle_core::dtype::DataType;
use spindle_core::error::InferError;
use spindle_core::tensor::{Tensor, TensorData, element_count};

/// Parses a predict body into the shared request; `true` when it used the columnar format.
pub fn parse_predict(model: &LoadedModel, body: &[u8]) -> Result<(InferRequest, bool), InferError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| InferError::invalid(format!("malformed JSON: {e}")))?;
    let Value::Object(mut top) = value else {
        return Err(InferError::invalid(
            "the body must be a JSON object with 'instances' or 'inputs'",
        ));
    };
    if let Some(sig) = top.remove("signature_name") {
        match sig.as_str() {
            Some(SIGNATURE) | Some("") => {}
            _ => {
                return Err(InferError::invalid(format!(
                    "unknown signature_name {sig}; this model has only '{SIGNATURE}'"
                )));
            }
        }
    }
    let instances = top.remove("instances");
    let inputs = top.remove("inputs");
    if let Some(key) = top.keys().next() {
        return Err(InferError::invalid(format!(
            "unknown field '{key}' (expected 'instances' or 'inputs', and optionally 'signature_name')"
        )));
    }
    let config = &model.config;
    let (tensors, columnar) = match (instances, inputs) {
        (Some(_), Some(_)) => {
            return Err(InferError::invalid(
                "the body mixes 'instances' (row format) and 'inputs' (columnar format); send one",
            ));
        }
        (None, None) => {
            return Err(InferError::invalid(
                "the body needs 'instances' (row format) or 'inputs' (columnar format)",
            ));
        }
        (Some(instances), None) => (rows_to_tensors(&config.inputs, instances)?, false),
        (None, Some(inputs)) => (columns_to_tensors(&config.inputs, inputs)?, true),
    };
    Ok((
        InferRequest {
            id: None,
            inputs: tensors,
            outputs: all_outputs(config, false),
            timeout: None,
        },
        columnar,
    ))
}

/// Row format: one entry per batch row; each is the single input's value, or an object keyed
/// by input name.
fn rows_to_tensors(specs: &[TensorSpec], instances: Value) -> Result<Vec<Tensor>, InferError> {
    let Value::Array(rows) = instances else {
        return Err(InferError::invalid(
            "'instances' must be a list, one entry per row",
        ));
    };
    if rows.is_empty() {
        return Err(InferError::invalid("'instances' is empty"));
    }
    let mut per_input: Vec<Vec<Value>> = vec![Vec::with_capacity(rows.len()); specs.len()];
    for (i, row) in rows.into_iter().enumerate() {
        match row {
            Value::Object(mut named) if !is_b64(&named) => {
                for (slot, spec) in per_input.iter_mut().zip(specs) {
                    let value = named.remove(&spec.name).ok_or_else(|| {
                        InferError::invalid(format!(
                            "instances[{i}] has no input '{}' (expected: {})",
                            spec.name,
                            spec_names(specs)
                        ))
                    })?;
                    slot.push(value);
                }
                if let Some(extra) = named.keys().next() {
                    return Err(InferError::invalid(format!(
                        "instances[{i}]: unknown input '{extra}' (expected: {})",
                        spec_names(specs)
                    )));
                }
            }
            value if specs.len() == 1 => per_input[0].push(value),
            _ => {
                return Err(InferError::invalid(format!(
                    "instances[{i}] must be an object keyed by input name, since the model has {} inputs ({})",
                    specs.len(),
                    spec_names(specs)
                )));
            }
        }
    }
    specs
        .iter()
        .zip(per_input)
        .map(|(spec, values)| {
            let first = shape_of(&values[0]);
            for (i, v) in values.iter().enumerate().skip(1) {
                let shape = shape_of(v);
                if shape != first {
                    return Err(InferError::invalid(format!(
                        "input '{}': instances[{i}] has shape {shape:?} but instances[0] has {first:?}; every row must have the same shape",
                        spec.name
                    )));
                }
            }
            let shape: Vec<usize> = std::iter::once(values.len()).chain(first).collect();
            to_tensor(spec, &Value::Array(values), shape, "instances")
        })
        .collect()
}

/// Columnar format: the single input's whole batch, or an object keyed by input name.
fn columns_to_tensors(specs: &[TensorSpec], inputs: Value) -> Result<Vec<Tensor>, InferError> {
    let mut named = match inputs {
        Value::Object(named) if !is_b64(&named) => named,
        value if specs.len() == 1 => {
            let mut m = Map::new();
            m.insert(specs[0].name.clone(), value);
            m
        }
        _ => {
            return Err(InferError::invalid(format!(
                "'inputs' must be an object keyed by input name, since the model has {} inputs ({})",
                specs.len(),
                spec_names(specs)
            )));
        }
    };
    let tensors = specs
        .iter()
        .map(|spec| {
            let value = named.remove(&spec.name).ok_or_else(|| {
                InferError::invalid(format!(
                    "'inputs' has no input '{}' (expected: {})",
                    spec.name,
                    spec_names(specs)
                ))
            })?;
            let shape = shape_of(&value);
            to_tensor(spec, &value, shape, "inputs")
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(extra) = named.keys().next() {
        return Err(InferError::invalid(format!(
            "'inputs': unknown input '{extra}' (expected: {})",
            spec_names(specs)
        )));
    }
    Ok(tensors)
}

fn is_b64(object: &Map<String, Value>) -> bool {
    object.len() == 1 && object.contains_key("b64")
}

/// The shape implied by following first elements of nested lists.
fn shape_of(value: &Value) -> Vec<usize> {
    let mut shape = Vec::new();
    let mut at = value;
    while let Value::Array(items) = at {
        shape.push(items.len());
        match items.first() {
            Some(first) => at = first,
            None => break,
        }
    }
    shape
}

/// Checks every nested list has the length `shape` says (ragged lists are refused).
fn check_rectangular(
    value: &Value,
    shape: &[usize],
    input: &str,
    path: &str,
) -> Result<(), InferError> {
    match (value, shape.split_first()) {
        (Value::Array(items), Some((&len, rest))) => {
            if items.len() != len {
                return Err(InferError::invalid(format!(
                    "input '{input}': {path} has {} entries where {len} were expected; lists must not be ragged",
                    items.len()
                )));
            }
            for (i, item) in items.iter().enumerate() {
                check_rectangular(item, rest, input, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Array(_), None) => Err(InferError::invalid(format!(
            "input '{input}': {path} is a list where a value was expected; lists must not be ragged"
        ))),
        (_, Some(_)) => Err(InferError::invalid(format!(
            "input '{input}': {path} is a value where a list was expected; lists must not be ragged"
        ))),
        (_, None) => Ok(()),
    }
}

/// Converts a rectangular nested list to a tensor. Encoded values (`{"b64": ...}` or strings)
/// make a BYTES tensor, which the model accepts when it is BYTES or preprocesses this input.
fn to_tensor(
    spec: &TensorSpec,
    value: &Value,
    shape: Vec<usize>,
    path: &str,
) -> Result<Tensor, InferError> {
    let mut leaf = value;
    while let Value::Array(items) = leaf {
        match items.first() {
            Some(first) => leaf = first,
            None => break,
        }
    }
    // Encoded values make a BYTES tensor; accepts_dtype refuses it for plain numeric inputs.
    let dtype = if leaf.is_object() || (leaf.is_string() && spec.preprocess.is_some()) {
        DataType::Bytes
    } else {
        spec.dtype
    };
    accepts_dtype(spec, dtype)?;
    let mut data = TensorData::with_capacity(dtype, element_count(&shape).min(1 << 20));
    check_rectangular(value, &shape, &spec.name, path)?;
    push_leaves(value, &mut data, &spec.name)?;
    Tensor::new(shape, data).map_err(|e| InferError::invalid(format!("input '{}': {e}", spec.name)))
}

fn push_leaves(value: &Value, out: &mut TensorData, input: &str) -> Result<(), InferError> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| push_leaves(v, out, input)),
        Value::Object(object) => {
            let index = out.len();
            let (Some(Value::String(text)), TensorData::Bytes(v), true) =
                (object.get("b64"), &mut *out, is_b64(object))
            else {
                return Err(InferError::invalid(format!(
                    "input '{input}': element {index} is an object; the only object allowed is {{\"b64\": \"...\"}} for binary values"
                )));
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| {
                    InferError::invalid(format!(
                        "input '{input}': element {index} is not valid base64: {e}"
                    ))
                })?;
            v.push(bytes);
            Ok(())
        }
        scalar => push_json_element(scalar, out, input),
    }
}

/// `predictions`: one entry per row; with one output its row value, otherwise an object.
pub struct Rows<'a>(pub &'a [(&'a str, &'a Tensor)]);

impl Serialize for Rows<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rows = self
            .0
            .first()
            .map_or(0, |(_, t)| t.shape.first().copied().unwrap_or(1));
        let mut seq = s.serialize_seq(Some(rows))?;
        for row in 0..rows {
            if let [(_, tensor)] = self.0 {
                seq.serialize_element(&Nested::row(tensor, row))?;
            } else {
                seq.serialize_element(&NamedRow(self.0, row))?;
            }
        }
        seq.end()
    }
}

struct NamedRow<'a>(&'a [(&'a str, &'a Tensor)], usize);

impl Serialize for NamedRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, tensor) in self.0 {
            map.serialize_entry(name, &Nested::row(tensor, self.1))?;
        }
        map.end()
    }
}

/// `outputs`: the single output's whole value, or an object keyed by output name.
pub struct Columns<'a>(pub &'a [(&'a str, &'a Tensor)]);

impl Serialize for Columns<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let [(_, tensor)] = self.0 {
            return Nested::whole(tensor).serialize(s);
        }
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, tensor) in self.0 {
            map.serialize_entry(name, &Nested::whole(tensor))?;
        }
        map.end()
    }
}

/// A tensor (or one row of it) as nested JSON lists, written straight from its elements.
struct Nested<'a> {
    data: &'a TensorData,
    shape: &'a [usize],
    offset: usize,
}

impl<'a> Nested<'a> {
    fn whole(tensor: &'a Tensor) -> Nested<'a> {
        Nested {
            data: &tensor.data,
            shape: &tensor.shape,
            offset: 0,
        }
    }

    fn row(tensor: &'a Tensor, row: usize) -> Nested<'a> {
        let inner = tensor.shape.get(1..).unwrap_or(&[]);
        Nested {
            data: &tensor.data,
            shape: inner,
            offset: row * element_count(inner),
        }
    }
}

impl Serialize for Nested<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some((&len, rest)) = self.shape.split_first() else {
            return serialize_element(self.data, self.offset, s);
        };
        let step = element_count(rest);
        let mut seq = s.serialize_seq(Some(len))?;
        for i in 0..len {
            seq.serialize_element(&Nested {
                data: self.data,
                shape: rest,
                offset: self.offset + i * step,
            })?;
        }
        seq.end()
    }
}

fn serialize_element<S: serde::Serializer>(
    data: &TensorData,
    i: usize,
    s: S,
) -> Result<S::Ok, S::Error> {
    match data {
        TensorData::Bool(v) => v[i].serialize(s),
        TensorData::U8(v) => v[i].serialize(s),
        TensorData::I8(v) => v[i].serialize(s),
        TensorData::I16(v) => v[i].serialize(s),
        TensorData::I32(v) => v[i].serialize(s),
        TensorData::I64(v) => v[i].serialize(s),
        TensorData::F32(v) => v[i].serialize(s),
        TensorData::F64(v) => v[i].serialize(s),
        TensorData::Bytes(v) => match std::str::from_utf8(&v[i]) {
            Ok(text) => text.serialize(s),
            Err(_) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(
                    "b64",
                    &base64::engine::general_purpose::STANDARD.encode(&v[i]),
                )?;
                map.end()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(dtype: DataType, dims: Vec<i64>) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            dtype,
            dims,
            preprocess: None,
        }
    }

    #[test]
    fn rows_become_a_batch_and_ragged_rows_are_refused() {
        let specs = [spec(DataType::F32, vec![-1, 2])];
        let t = rows_to_tensors(&specs, json!([[1.0, 2.0], [3.0, 4.5]])).unwrap();
        assert_eq!(t[0].shape, [2, 2]);
        let err = rows_to_tensors(&specs, json!([[1.0, 2.0], [3.0]])).unwrap_err();
        assert!(
            err.message.contains("instances[1] has shape [1]"),
            "{}",
            err.message
        );
        let err = columns_to_tensors(&specs, json!([[1.0, 2.0], [3.0]])).unwrap_err();
        assert!(err.message.contains("ragged"), "{}", err.message);
        let named = rows_to_tensors(&specs, json!([{"x": [1, 2]}])).unwrap();
        assert_eq!(named[0].shape, [1, 2]);
        let err = rows_to_tensors(&specs, json!([{"y": [1, 2]}])).unwrap_err();
        assert!(err.message.contains("no input 'x'"), "{}", err.message);
    }

    #[test]
    fn b64_values_decode_for_bytes_inputs() {
        let mut s = spec(DataType::Bytes, vec![-1]);
        s.preprocess = None;
        let t = rows_to_tensors(&[s.clone()], json!([{"b64": "aGk="}, "plain"])).unwrap();
        assert_eq!(
            t[0].data,
            TensorData::Bytes(vec![b"hi".to_vec(), b"plain".to_vec()])
        );
        let err = rows_to_tensors(&[s], json!([{"b64": "!!"}])).unwrap_err();
        assert!(err.message.contains("not valid base64"), "{}", err.message);
        let float = spec(DataType::F32, vec![-1]);
        let err = rows_to_tensors(&[float], json!([{"b64": "aGk="}])).unwrap_err();
        assert!(
            err.message.contains("expected datatype FP32"),
            "{}",
            err.message
        );
    }

    #[test]
    fn outputs_nest_per_row_and_per_column() {
        let t = Tensor::new(vec![2, 2], TensorData::F32(vec![0.5, 1.0, 1.5, 2.0])).unwrap();
        let one = [("p", &t)];
        assert_eq!(
            serde_json::to_string(&Rows(&one)).unwrap(),
            "[[0.5,1.0],[1.5,2.0]]"
        );
        assert_eq!(
            serde_json::to_string(&Columns(&one)).unwrap(),
            "[[0.5,1.0],[1.5,2.0]]"
        );
        let two = [("p", &t), ("q", &t)];
        assert_eq!(
            serde_json::to_string(&Rows(&two)).unwrap(),
            r#"[{"p":[0.5,1.0],"q":[0.5,1.0]},{"p":[1.5,2.0],"q":[1.5,2.0]}]"#
        );
    }
}

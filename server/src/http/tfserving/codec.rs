//! TF Serving's predict body: the row (`instances`) and columnar (`inputs`) formats parsed
//! into the shared request, and `predictions` / `outputs` written straight from the tensors.

use super::SIGNATURE;
use crate::http::codec::{B64Text, Column, Elements, Failure, Nested as Values, Rectangle};
use crate::infer::{InferRequest, all_outputs};
use crate::models::LoadedModel;
use base64::Engine as _;
use serde::Serialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use spindle_core::config::{ModelConfig, TensorSpec, spec_names};
use spindle_core::error::InferError;
use spindle_core::tensor::{Tensor, TensorData, element_count};
use std::fmt;

/// Parses a predict body into the shared request; `true` when it used the columnar format.
pub fn parse_predict(model: &LoadedModel, body: &[u8]) -> Result<(InferRequest, bool), InferError> {
    parse_body(&model.config, body)
}

/// Parses a predict body for a model with `config`: one pass, each input's values straight
/// into its typed vector (no `serde_json::Value` for tensor data), the lists checked to be
/// rectangular and the rows against `max_batch_size` as they stream past.
fn parse_body(config: &ModelConfig, body: &[u8]) -> Result<(InferRequest, bool), InferError> {
    let failure = Failure::default();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = PredictSeed {
        config,
        failure: &failure,
    }
    .deserialize(&mut deserializer)
    .and_then(|parsed| deserializer.end().map(|()| parsed));
    let (tensors, columnar) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            return Err(failure.or_else(|| InferError::invalid(format!("malformed JSON: {e}"))));
        }
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

/// The body: `instances` or `inputs`, and optionally `signature_name`.
#[derive(Clone, Copy)]
struct PredictSeed<'s> {
    config: &'s ModelConfig,
    failure: &'s Failure,
}

impl<'de> DeserializeSeed<'de> for PredictSeed<'_> {
    type Value = (Vec<Tensor>, bool);

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PredictSeed<'_> {
    type Value = (Vec<Tensor>, bool);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with 'instances' or 'inputs'")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let raise = |message: String| self.failure.raise(InferError::invalid(message));
        let mut found: Option<(Vec<Tensor>, bool)> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "signature_name" => {
                    let sig: serde_json::Value = map.next_value()?;
                    if !matches!(sig.as_str(), Some(SIGNATURE) | Some("")) {
                        return Err(raise(format!(
                            "unknown signature_name {sig}; this model has only '{SIGNATURE}'"
                        )));
                    }
                }
                "instances" | "inputs" => {
                    let columnar = key == "inputs";
                    if let Some((_, before)) = &found {
                        return Err(if *before == columnar {
                            raise(format!("'{key}' is given twice"))
                        } else {
                            raise("the body mixes 'instances' (row format) and 'inputs' (columnar format); send one".into())
                        });
                    }
                    let tensors = if columnar {
                        map.next_value_seed(ColumnsSeed(self))?
                    } else {
                        map.next_value_seed(RowsSeed(self))?
                    };
                    found = Some((tensors, columnar));
                }
                other => {
                    return Err(raise(format!(
                        "unknown field '{other}' (expected 'instances' or 'inputs', and optionally 'signature_name')"
                    )));
                }
            }
        }
        found.ok_or_else(|| {
            raise("the body needs 'instances' (row format) or 'inputs' (columnar format)".into())
        })
    }
}

/// A column per input, each with the rectangle its lists must fill at `place`.
fn new_columns<'a>(
    config: &'a ModelConfig,
    place: &'static str,
    max_rows: Option<usize>,
) -> Vec<Column<'a>> {
    config
        .inputs
        .iter()
        .map(|spec| Column {
            elements: Elements::inferred(spec, config.max_batch_size),
            rectangle: Some(Rectangle::new(place, max_rows)),
        })
        .collect()
}

fn tensor(spec: &TensorSpec, shape: Vec<usize>, column: Column) -> Result<Tensor, InferError> {
    Tensor::new(shape, column.elements.finish())
        .map_err(|e| InferError::invalid(format!("input '{}': {e}", spec.name)))
}

/// The model's `max_batch_size`, when it batches.
fn max_rows(config: &ModelConfig) -> Option<usize> {
    (config.max_batch_size > 0).then_some(config.max_batch_size)
}

/// Columnar format: the single input's whole batch, or an object keyed by input name.
struct ColumnsSeed<'s>(PredictSeed<'s>);

impl<'de> DeserializeSeed<'de> for ColumnsSeed<'_> {
    type Value = Vec<Tensor>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<Tensor>, D::Error> {
        let PredictSeed { config, failure } = self.0;
        let mut columns = new_columns(config, "inputs", max_rows(config));
        d.deserialize_any(Entry {
            columns: &mut columns,
            specs: &config.inputs,
            failure,
            row: None,
        })?;
        config
            .inputs
            .iter()
            .zip(columns)
            .map(|(spec, column)| {
                let shape = column
                    .rectangle
                    .as_ref()
                    .map_or_else(Vec::new, Rectangle::shape);
                tensor(spec, shape, column)
            })
            .collect::<Result<_, _>>()
            .map_err(|e| failure.raise(e))
    }
}

/// Row format: one entry per batch row; each is the single input's value, or an object keyed
/// by input name. Every row must have the shape of the first.
struct RowsSeed<'s>(PredictSeed<'s>);

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = Vec<Tensor>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<Tensor>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = Vec<Tensor>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'instances' as a list, one entry per row")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Tensor>, A::Error> {
        let PredictSeed { config, failure } = self.0;
        let specs = &config.inputs;
        let raise = |message: String| failure.raise(InferError::invalid(message));
        let mut columns = new_columns(config, "instances", None);
        let mut first_shapes: Vec<Vec<usize>> = Vec::new();
        let mut rows = 0;
        loop {
            for column in &mut columns {
                if let Some(rectangle) = &mut column.rectangle {
                    rectangle.start_row(rows);
                }
            }
            let row = RowSeed {
                columns: &mut columns,
                specs,
                failure,
                row: rows,
                max_rows: max_rows(config),
            };
            if seq.next_element_seed(row)?.is_none() {
                break;
            }
            for (i, (spec, column)) in specs.iter().zip(&columns).enumerate() {
                let shape = column
                    .rectangle
                    .as_ref()
                    .map_or_else(Vec::new, Rectangle::shape);
                match first_shapes.get(i) {
                    None => first_shapes.push(shape),
                    Some(first) if *first != shape => {
                        return Err(raise(format!(
                            "input '{}': instances[{rows}] has shape {shape:?} but instances[0] has {first:?}; every row must have the same shape",
                            spec.name
                        )));
                    }
                    Some(_) => {}
                }
            }
            rows += 1;
        }
        if rows == 0 {
            return Err(raise("'instances' is empty".into()));
        }
        specs
            .iter()
            .zip(columns)
            .zip(first_shapes)
            .map(|((spec, column), first)| {
                let shape = std::iter::once(rows).chain(first).collect();
                tensor(spec, shape, column)
            })
            .collect::<Result<_, _>>()
            .map_err(|e| failure.raise(e))
    }
}

/// One entry of `instances`, refused before it is read when the batch is already full.
struct RowSeed<'s, 'a> {
    columns: &'s mut [Column<'a>],
    specs: &'a [TensorSpec],
    failure: &'s Failure,
    row: usize,
    max_rows: Option<usize>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if let Some(max) = self.max_rows.filter(|&max| self.row >= max) {
            return Err(self.failure.raise(InferError::invalid(format!(
                "'instances' has more than {max} rows, the model's max_batch_size; split the request"
            ))));
        }
        d.deserialize_any(Entry {
            columns: self.columns,
            specs: self.specs,
            failure: self.failure,
            row: Some(self.row),
        })
    }
}

/// A value for every input at once: `instances[ROW]` or `inputs`. An object keyed by input name
/// (each value read into its input's column), or, for a model with one input, that input's
/// value (nested lists, a scalar, or `{"b64": ...}`).
struct Entry<'s, 'a> {
    columns: &'s mut [Column<'a>],
    specs: &'a [TensorSpec],
    failure: &'s Failure,
    row: Option<usize>,
}

impl<'s, 'a> Entry<'s, 'a> {
    /// Where this entry is, for messages.
    fn place(&self) -> String {
        match self.row {
            Some(row) => format!("instances[{row}]"),
            None => "'inputs'".to_string(),
        }
    }

    /// The model's single input, read from this entry at depth 0.
    fn single<E: de::Error>(self) -> Result<Values<'s, 'a>, E> {
        if self.specs.len() != 1 {
            return Err(self.failure.raise(InferError::invalid(format!(
                "{} must be an object keyed by input name, since the model has {} inputs ({})",
                self.place(),
                self.specs.len(),
                spec_names(self.specs)
            ))));
        }
        let Entry {
            columns, failure, ..
        } = self;
        Ok(Values {
            column: &mut columns[0],
            depth: 0,
            failure,
        })
    }
}

impl<'de> Visitor<'de> for Entry<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object keyed by input name, or the single input's value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Err(self.missing(&[false]));
        };
        // `{"b64": ...}` is a value, unless the model has an input named b64.
        if first == "b64" && !self.specs.iter().any(|s| s.name == "b64") {
            let text: B64Text = map.next_value()?;
            return self.single()?.b64(&text, map);
        }
        let mut given = vec![false; self.specs.len()];
        let mut key = Some(first);
        while let Some(name) = key {
            let raise = |message: String| self.failure.raise(InferError::invalid(message));
            let Some(index) = self.specs.iter().position(|s| s.name == name) else {
                return Err(raise(format!(
                    "{}: unknown input '{name}' (expected: {})",
                    self.place(),
                    spec_names(self.specs)
                )));
            };
            if std::mem::replace(&mut given[index], true) {
                return Err(raise(format!(
                    "{}: input '{name}' is given twice",
                    self.place()
                )));
            }
            map.next_value_seed(Values {
                column: &mut self.columns[index],
                depth: 0,
                failure: self.failure,
            })?;
            key = map.next_key()?;
        }
        if given.iter().all(|&g| g) {
            Ok(())
        } else {
            Err(self.missing(&given))
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.single()?.visit_seq(seq)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.single()?.visit_f64(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.single()?.visit_i64(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.single()?.visit_u64(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.single()?.visit_bool(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.single()?.visit_str(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.single()?.visit_unit()
    }
}

impl Entry<'_, '_> {
    /// The first input not in `given` (inputs past its end were not given either).
    fn missing<E: de::Error>(&self, given: &[bool]) -> E {
        let index = (0..self.specs.len())
            .find(|&i| !given.get(i).copied().unwrap_or(false))
            .unwrap_or(0);
        let message = format!(
            "{} has no input '{}' (expected: {})",
            self.place(),
            self.specs[index].name,
            spec_names(self.specs)
        );
        self.failure.raise(InferError::invalid(message))
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
    use serde_json::{Value, json};
    use spindle_core::dtype::DataType;

    fn config(dtype: &str, dims: &str, max_batch_size: usize) -> ModelConfig {
        ModelConfig::from_toml(&format!(
            "name = \"m\"\nmax_batch_size = {max_batch_size}\n\
             [[inputs]]\nname = \"x\"\ndtype = \"{dtype}\"\ndims = {dims}\n\
             [[outputs]]\nname = \"p\"\ndtype = \"FP32\"\ndims = [-1, 2]\n"
        ))
        .unwrap()
    }

    fn parse(config: &ModelConfig, body: Value) -> Result<Vec<Tensor>, InferError> {
        parse_body(config, body.to_string().as_bytes()).map(|(request, _)| request.inputs)
    }

    fn refused(config: &ModelConfig, body: Value) -> String {
        parse(config, body).unwrap_err().message
    }

    #[test]
    fn rows_become_a_batch_and_ragged_rows_are_refused() {
        let c = config("FP32", "[-1, 2]", 8);
        let t = parse(&c, json!({"instances": [[1.0, 2.0], [3.0, 4.5]]})).unwrap();
        assert_eq!(t[0].shape, [2, 2]);
        assert_eq!(t[0].data, TensorData::F32(vec![1.0, 2.0, 3.0, 4.5]));
        let err = refused(&c, json!({"instances": [[1.0, 2.0], [3.0]]}));
        assert!(err.contains("instances[1] has shape [1]"), "{err}");
        let err = refused(&c, json!({"inputs": [[1.0, 2.0], [3.0]]}));
        assert!(err.contains("inputs[1] has 1 entries where 2"), "{err}");
        let err = refused(&c, json!({"inputs": [[1.0, 2.0], 3.0]}));
        assert!(err.contains("inputs[1] is a value where a list"), "{err}");
        let err = refused(&c, json!({"inputs": [1.0, [2.0]]}));
        assert!(err.contains("inputs[1] is a list where a value"), "{err}");
        let named = parse(&c, json!({"instances": [{"x": [1, 2]}]})).unwrap();
        assert_eq!(named[0].shape, [1, 2]);
        let err = refused(&c, json!({"instances": [{"y": [1, 2]}]}));
        assert!(err.contains("unknown input 'y'"), "{err}");
        let err = refused(&c, json!({"instances": [{}]}));
        assert!(err.contains("no input 'x'"), "{err}");
        let columns = parse(&c, json!({"inputs": {"x": [[1, 2], [3, 4]]}})).unwrap();
        assert_eq!(columns[0].shape, [2, 2]);
        assert_eq!(columns[0].data, TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn batches_over_max_batch_size_are_refused_before_the_next_row() {
        let c = config("FP32", "[-1, 2]", 2);
        let err = refused(&c, json!({"instances": [[1, 2], [3, 4], [5, 6]]}));
        assert!(
            err.contains("more than 2 rows") && err.contains("max_batch_size"),
            "{err}"
        );
        let err = refused(&c, json!({"inputs": [[1, 2], [3, 4], [5, 6]]}));
        assert!(
            err.contains("input 'x'") && err.contains("more than 2 rows"),
            "{err}"
        );
        // The limit is met before the rest of the body is read: what follows is never parsed.
        let mut body = r#"{"instances": [[1, 2], [3, 4], [5, 6], "#.to_string();
        body.push_str(&"[7, 8], ".repeat(1000));
        body.push_str("oops");
        let err = parse_body(&c, body.as_bytes()).unwrap_err().message;
        assert!(err.contains("more than 2 rows"), "{err}");
    }

    #[test]
    fn no_input_takes_more_elements_than_the_model_does() {
        let c = config("FP32", "[-1, 2]", 2);
        let err = refused(&c, json!({"instances": [[1, 2, 3, 4, 5]]}));
        assert!(
            err.contains(
                "more than 4 elements, the most the model takes (shape [-1, 2], max_batch_size 2)"
            ),
            "{err}"
        );
        let images = ModelConfig::from_toml(
            "name = \"m\"\nmax_batch_size = 2\n\
             [[inputs]]\nname = \"x\"\ndtype = \"FP32\"\ndims = [-1, 4, 4, 3]\npreprocess = \"cifar10_image\"\n\
             [[outputs]]\nname = \"p\"\ndtype = \"FP32\"\ndims = [-1, 2]\n",
        )
        .unwrap();
        let err = refused(
            &images,
            json!({"instances": [[{"b64": ""}, {"b64": ""}, {"b64": ""}]]}),
        );
        assert!(err.contains("more than 2 elements"), "{err}");
    }

    #[test]
    fn values_are_typed_and_bad_ones_named() {
        let c = config("FP32", "[-1, 2]", 8);
        let err = refused(&c, json!({"instances": [[1.0, 1e39]]}));
        assert!(
            err.contains("input 'x': element 1 is 1e+39, not within FP32's range"),
            "{err}"
        );
        let err = refused(&c, json!({"instances": [[1.0, "a"]]}));
        assert!(err.contains("element 1 is \"a\", not a number"), "{err}");
        let ints = config("INT64", "[-1, 2]", 8);
        let t = parse(&ints, json!({"instances": [[-1, 9007199254740993_i64]]})).unwrap();
        assert_eq!(t[0].data, TensorData::I64(vec![-1, 9_007_199_254_740_993]));
        let err = refused(&ints, json!({"instances": [[1, 2.5]]}));
        assert!(
            err.contains("element 1 is 2.5, not an INT64 integer"),
            "{err}"
        );
        let small = config("INT8", "[-1]", 8);
        let err = refused(&small, json!({"instances": [1, 300]}));
        assert!(
            err.contains("element 1 is 300, not an INT8 integer"),
            "{err}"
        );
    }

    #[test]
    fn b64_values_decode_for_bytes_inputs() {
        let c = config("BYTES", "[-1]", 8);
        let t = parse(&c, json!({"instances": [{"b64": "aGk="}, "plain"]})).unwrap();
        assert_eq!(
            t[0].data,
            TensorData::Bytes(vec![b"hi".to_vec(), b"plain".to_vec()])
        );
        let t = parse(&c, json!({"inputs": [{"b64": "aGk="}, {"b64": ""}]})).unwrap();
        assert_eq!(
            t[0].data,
            TensorData::Bytes(vec![b"hi".to_vec(), Vec::new()])
        );
        let err = refused(&c, json!({"instances": [{"b64": "!!"}]}));
        assert!(err.contains("not valid base64"), "{err}");
        let err = refused(&c, json!({"inputs": [{"b64": "aGk=", "extra": 1}]}));
        assert!(err.contains("the only object allowed"), "{err}");
        let float = config("FP32", "[-1]", 8);
        let err = refused(&float, json!({"instances": [{"b64": "aGk="}]}));
        assert!(err.contains("expected datatype FP32"), "{err}");
        assert_eq!(
            parse(&float, json!({"instances": [1.0, 2.0]})).unwrap()[0].dtype(),
            DataType::F32
        );
    }

    #[test]
    fn the_body_is_one_format_of_known_fields() {
        let c = config("FP32", "[-1, 2]", 8);
        let err = refused(&c, json!({"instances": [[1, 2]], "inputs": [[1, 2]]}));
        assert!(err.contains("mixes 'instances'"), "{err}");
        let err = refused(&c, json!({"rows": []}));
        assert!(err.contains("unknown field 'rows'"), "{err}");
        assert!(refused(&c, json!({})).contains("needs 'instances'"));
        assert!(refused(&c, json!({"instances": []})).contains("'instances' is empty"));
        let err = refused(&c, json!({"instances": [[1, 2]], "signature_name": "x"}));
        assert!(err.contains("serving_default"), "{err}");
        let err = parse_body(&c, b"[1, 2]").unwrap_err().message;
        assert!(err.contains("malformed JSON"), "{err}");
        let err = parse_body(&c, br#"{"instances": [[1, 2]]} trailing"#)
            .unwrap_err()
            .message;
        assert!(err.contains("malformed JSON"), "{err}");
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

    /// Decoding speed of an Inception v3 predict body (one row of 299x299x3 nested lists):
    /// `cargo test -p spindle-server --lib --profile ci -- --ignored decoding_speed --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check: run it by name"]
    fn tf_rest_decoding_speed() {
        use crate::http::codec::tests::{inception_values, time_parse};
        let c = config("FP32", "[-1, 299, 299, 3]", 8);
        let (count, values) = inception_values();
        // Nest the flat values: every 3 a pixel, every 299 pixels a line.
        let mut nested = String::with_capacity(values.len() + count);
        for (i, value) in values.split(", ").enumerate() {
            let (pixel, line) = (i % 3 == 0, i % (299 * 3) == 0);
            if i > 0 {
                nested.push_str(match (line, pixel) {
                    (true, _) => "]], [[",
                    (false, true) => "], [",
                    _ => ", ",
                });
            }
            nested.push_str(value);
        }
        let body = format!(r#"{{"instances": [[[[{nested}]]]]}}"#);
        time_parse("TF REST instances, typed", body.as_bytes(), 20, |body| {
            let (request, _) = parse_body(&c, body).unwrap();
            assert_eq!(request.inputs[0].shape, [1, 299, 299, 3]);
        });
    }
}

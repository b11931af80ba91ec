//! The v2 request's JSON, read in one pass: the header fields as plain serde types, and each
//! input's `data` straight into a typed vector once the input's name, shape and type are
//! known (they come first in what every client writes). The request's limits are met before
//! any of its data: an unknown input, a type the input does not take, a shape the model does
//! not take or a batch over `max_batch_size` stops the parse where the header says so, and no
//! input holds more elements than its shape declares (nor reserves more than its JSON could
//! hold).

use super::elements::{Column, Elements, Failure, Nested};
use crate::infer::{InputSlots, accepts_dtype, check_batch_rows};
use serde::de::{self, Deserialize, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use spindle_core::config::{ModelConfig, TensorSpec};
use spindle_core::dtype::DataType;
use spindle_core::error::InferError;
use spindle_core::tensor::TensorData;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

/// The JSON part of a v2 inference request.
pub(super) struct RequestHeader<'de> {
    pub(super) id: Option<String>,
    pub(super) parameters: Map<String, Value>,
    pub(super) inputs: Vec<InputHeader<'de>>,
    pub(super) outputs: Option<Vec<OutputHeader>>,
}

/// One entry of `inputs`.
pub(super) struct InputHeader<'de> {
    pub(super) name: String,
    pub(super) shape: Vec<usize>,
    pub(super) datatype: String,
    pub(super) parameters: Map<String, Value>,
    pub(super) data: Option<InputData<'de>>,
}

/// An input's `data`.
pub(super) enum InputData<'de> {
    /// Read as it streamed past (the input's name, shape and type came before it).
    Typed(TensorData),
    /// It came before the input's name, shape or type: its text, borrowed from the body, is
    /// read once they are known.
    Raw(&'de RawValue),
}

/// One entry of `outputs`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OutputHeader {
    pub(super) name: String,
    #[serde(default)]
    pub(super) parameters: Map<String, Value>,
}

/// What the seeds share: the model, the first request error, and (on a malformed body) the
/// path to the field that was wrong, innermost segment first.
pub(super) struct Context<'c> {
    config: &'c ModelConfig,
    failure: Failure,
    path: RefCell<Vec<Segment>>,
    /// The most elements the JSON could hold: what reservations are capped at.
    json_len: usize,
}

enum Segment {
    Key(&'static str),
    Index(usize),
    Nested(String),
}

impl<'c> Context<'c> {
    pub(super) fn new(config: &'c ModelConfig, json_len: usize) -> Context<'c> {
        Context {
            config,
            failure: Failure::default(),
            path: RefCell::new(Vec::new()),
            json_len,
        }
    }

    /// Notes `segment` on the way out of an error.
    fn at<E>(&self, segment: Segment) -> impl FnOnce(E) -> E + '_ {
        move |e| {
            self.path.borrow_mut().push(segment);
            e
        }
    }

    /// The request error the parse met, or serde's `error` with the field it was at.
    pub(super) fn into_error(self, error: serde_json::Error) -> InferError {
        let mut path = String::new();
        for segment in self.path.into_inner().into_iter().rev() {
            match segment {
                Segment::Index(i) => path.push_str(&format!("[{i}]")),
                Segment::Key(key) => push_key(&mut path, key),
                Segment::Nested(sub) => push_key(&mut path, &sub),
            }
        }
        self.failure.or_else(|| {
            InferError::invalid(if path.is_empty() {
                format!("malformed request JSON: {error}")
            } else {
                format!("malformed request JSON at '{path}': {error}")
            })
        })
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() && !key.starts_with('[') {
        path.push('.');
    }
    path.push_str(key);
}

/// Deserializes a header field as a plain serde type, noting where inside it an error was.
struct Tracked<'c, T>(&'c Context<'c>, PhantomData<T>);

impl<'c, T> Tracked<'c, T> {
    fn new(context: &'c Context<'c>) -> Self {
        Tracked(context, PhantomData)
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Tracked<'_, T> {
    type Value = T;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            if e.path().iter().next().is_some() {
                self.0
                    .path
                    .borrow_mut()
                    .push(Segment::Nested(e.path().to_string()));
            }
            e.into_inner()
        })
    }
}

/// The whole request header.
pub(super) struct RequestSeed<'c>(pub(super) &'c Context<'c>);

const REQUEST_FIELDS: &[&str] = &["id", "parameters", "inputs", "outputs"];
const INPUT_FIELDS: &[&str] = &["name", "shape", "datatype", "parameters", "data"];

/// Stores a field's value, refusing a second one.
fn once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(name));
    }
    Ok(())
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = RequestHeader<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = RequestHeader<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a v2 inference request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let cx = self.0;
        let (mut id, mut parameters, mut inputs, mut outputs) = (None, None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "id" => {
                    let v = map.next_value_seed(Tracked::new(cx));
                    once(&mut id, "id", v.map_err(cx.at(Segment::Key("id")))?)?
                }
                "parameters" => {
                    let v = map.next_value_seed(Tracked::new(cx));
                    let v = v.map_err(cx.at(Segment::Key("parameters")))?;
                    once(&mut parameters, "parameters", v)?
                }
                "inputs" => {
                    let v = map.next_value_seed(InputsSeed(cx));
                    once(
                        &mut inputs,
                        "inputs",
                        v.map_err(cx.at(Segment::Key("inputs")))?,
                    )?
                }
                "outputs" => {
                    let v = map.next_value_seed(Tracked::new(cx));
                    let v = v.map_err(cx.at(Segment::Key("outputs")))?;
                    once(&mut outputs, "outputs", v)?
                }
                other => return Err(de::Error::unknown_field(other, REQUEST_FIELDS)),
            }
        }
        Ok(RequestHeader {
            id: id.flatten(),
            parameters: parameters.unwrap_or_default(),
            inputs: inputs.ok_or_else(|| de::Error::missing_field("inputs"))?,
            outputs: outputs.flatten(),
        })
    }
}

struct InputsSeed<'c>(&'c Context<'c>);

impl<'de> DeserializeSeed<'de> for InputsSeed<'_> {
    type Value = Vec<InputHeader<'de>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for InputsSeed<'_> {
    type Value = Vec<InputHeader<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of inputs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut inputs = Vec::new();
        loop {
            let next = seq.next_element_seed(InputSeed(self.0));
            match next.map_err(self.0.at(Segment::Index(inputs.len())))? {
                Some(input) => inputs.push(input),
                None => return Ok(inputs),
            }
        }
    }
}

struct InputSeed<'c>(&'c Context<'c>);

impl<'de> DeserializeSeed<'de> for InputSeed<'_> {
    type Value = InputHeader<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for InputSeed<'_> {
    type Value = InputHeader<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an input object (name, shape, datatype, data or parameters)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let cx = self.0;
        let mut name: Option<String> = None;
        let mut shape: Option<Vec<usize>> = None;
        let mut datatype: Option<String> = None;
        let (mut parameters, mut data) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => {
                    let v = map.next_value_seed(Tracked::new(cx));
                    once(&mut name, "name", v.map_err(cx.at(Segment::Key("name")))?)?
                }
                "shape" => {
                    let v = map.next_value_seed(Tracked::new(cx));
                    once(
                        &mut shape,
                        "shape",
                        v.map_err(cx.at(Segment::Key("shape")))?,
                    )?
                }
                "datatype" => {
                    let v = map.next_value_seed(Tracked::new(cx));
                    let v = v.map_err(cx.at(Segment::Key("datatype")))?;
                    once(&mut datatype, "datatype", v)?
                }
                "parameters" => {
                    let v = map.next_value_seed(Tracked::new(cx));
                    let v = v.map_err(cx.at(Segment::Key("parameters")))?;
                    once(&mut parameters, "parameters", v)?
                }
                "data" => {
                    let v = match (&name, &shape, &datatype) {
                        (Some(name), Some(shape), Some(datatype)) => {
                            let seed = DataSeed {
                                cx,
                                name,
                                shape,
                                datatype,
                            };
                            map.next_value_seed(seed).map(InputData::Typed)
                        }
                        _ => map.next_value().map(InputData::Raw),
                    };
                    once(&mut data, "data", v.map_err(cx.at(Segment::Key("data")))?)?
                }
                other => return Err(de::Error::unknown_field(other, INPUT_FIELDS)),
            }
        }
        Ok(InputHeader {
            name: name.ok_or_else(|| de::Error::missing_field("name"))?,
            shape: shape.ok_or_else(|| de::Error::missing_field("shape"))?,
            datatype: datatype.ok_or_else(|| de::Error::missing_field("datatype"))?,
            parameters: parameters.unwrap_or_default(),
            data,
        })
    }
}

/// An input's `data`, once its header is known.
struct DataSeed<'s> {
    cx: &'s Context<'s>,
    name: &'s str,
    shape: &'s [usize],
    datatype: &'s str,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = TensorData;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<TensorData, D::Error> {
        let failure = &self.cx.failure;
        let (spec, dtype, count) = admit(self.cx.config, self.name, self.shape, self.datatype)
            .map_err(|e| failure.raise(e))?;
        read_declared(d, failure, spec, dtype, self.shape, count, self.cx.json_len)
    }
}

/// What an input's header says, checked against the model before any of its data is read:
/// its spec, its element type and its element count.
pub(super) fn admit<'m>(
    config: &'m ModelConfig,
    name: &str,
    shape: &[usize],
    datatype: &str,
) -> Result<(&'m TensorSpec, DataType, usize), InferError> {
    let spec = &config.inputs[InputSlots::new(config).index(name)?];
    let dtype: DataType = datatype
        .parse()
        .map_err(|e| InferError::invalid(format!("input '{name}': {e}")))?;
    accepts_dtype(spec, dtype)?;
    check_batch_rows(config, name, shape)?;
    // An encoded input (BYTES the server preprocesses) has its own shape until it is decoded.
    if dtype == spec.dtype {
        spec.check_shape(shape).map_err(InferError::invalid)?;
    }
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| {
            InferError::invalid(format!(
                "input '{name}': shape {shape:?} has more elements than can be counted"
            ))
        })?;
    Ok((spec, dtype, count))
}

/// Reads `count` elements of `dtype` (nested lists flattened) from `d`. Room is reserved for
/// no more elements than `json_len` bytes of JSON can hold (two bytes each: `0,`), so a
/// shape that lies about the data costs nothing.
pub(super) fn read_declared<'de, D: de::Deserializer<'de>>(
    d: D,
    failure: &Failure,
    spec: &TensorSpec,
    dtype: DataType,
    shape: &[usize],
    count: usize,
    json_len: usize,
) -> Result<TensorData, D::Error> {
    let elements = Elements::declared(&spec.name, dtype, shape, count, json_len / 2 + 1);
    let mut column = Column {
        elements,
        rectangle: None,
    };
    let nested = Nested {
        column: &mut column,
        depth: 0,
        failure,
    };
    nested.deserialize(d)?;
    Ok(column.elements.finish())
}

/// Reads `data` that came before its input's header (see [`InputData::Raw`]).
pub(super) fn read_raw(
    raw: &RawValue,
    spec: &TensorSpec,
    dtype: DataType,
    shape: &[usize],
    count: usize,
) -> Result<TensorData, InferError> {
    let failure = Failure::default();
    let text = raw.get();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    read_declared(
        &mut deserializer,
        &failure,
        spec,
        dtype,
        shape,
        count,
        text.len(),
    )
    .map_err(|e| {
        failure.or_else(|| {
            InferError::invalid(format!("input '{}': malformed 'data': {e}", spec.name))
        })
    })
}

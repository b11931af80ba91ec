//! JSON tensor data read straight into typed element vectors: FP32 values into a `Vec<f32>`,
//! INT64 into a `Vec<i64>`, strings (and TF Serving's `{"b64": ...}`) into BYTES elements,
//! nested lists flattened as they stream past. No `serde_json::Value` is built for tensor data:
//! a tree costs 30-60 bytes an element, 20 times the JSON it came from (a 59 MiB body took
//! 1.2 GB), where a typed vector costs at most the JSON's own size.
//!
//! Both JSON front ends share this: KServe v2 (`data`, whose shape and type the request
//! declares first, so the count is checked as elements arrive) and TF Serving REST (lists whose
//! shape is what they hold, checked to be rectangular as they arrive).
//!
//! serde carries only strings out of a visitor: the typed error a user should see is kept in a
//! [`Failure`] and preferred to serde's by the caller.

use crate::infer::accepts_dtype;
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use spindle_core::config::TensorSpec;
use spindle_core::dtype::DataType;
use spindle_core::error::InferError;
use spindle_core::tensor::TensorData;
use std::cell::RefCell;
use std::fmt;

/// The first request error met inside a typed parse, kept whole for the answer.
#[derive(Default)]
pub(crate) struct Failure(RefCell<Option<InferError>>);

impl Failure {
    /// Records `error` (the first one wins) and returns a serde error that stops the parse.
    pub(crate) fn raise<E: de::Error>(&self, error: InferError) -> E {
        let stop = E::custom(&error.message);
        self.0.borrow_mut().get_or_insert(error);
        stop
    }

    /// The recorded error, else `otherwise` (a malformed body: serde's own message).
    pub(crate) fn or_else(self, otherwise: impl FnOnce() -> InferError) -> InferError {
        self.0.into_inner().unwrap_or_else(otherwise)
    }
}

/// One JSON scalar (or `{"b64": ...}`) on its way into a tensor.
#[derive(Clone, Copy)]
enum Leaf<'x> {
    Float(f64),
    Int(i64),
    Uint(u64),
    Bool(bool),
    Str(&'x str),
    B64(&'x str),
    Null,
}

impl fmt::Display for Leaf<'_> {
    /// As JSON, so that the error shows what the client wrote; long strings cut short.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Leaf::Float(x) => match serde_json::Number::from_f64(x) {
                Some(n) => write!(f, "{n}"),
                None => write!(f, "{x}"),
            },
            Leaf::Int(i) => write!(f, "{i}"),
            Leaf::Uint(u) => write!(f, "{u}"),
            Leaf::Bool(b) => write!(f, "{b}"),
            Leaf::Null => f.write_str("null"),
            Leaf::Str(s) => {
                const SHOWN: usize = 40;
                match s.char_indices().nth(SHOWN) {
                    None => write!(f, "{s:?}"),
                    Some((cut, _)) => write!(f, "{:?}... ({} bytes)", &s[..cut], s.len()),
                }
            }
            Leaf::B64(_) => f.write_str("{\"b64\": ...}"),
        }
    }
}

/// The elements of one input, typed as they arrive.
pub(crate) struct Elements<'a> {
    input: &'a str,
    /// `None` until the first element when the type follows from the values (TF Serving).
    data: Option<TensorData>,
    /// TF Serving: the spec that picks the type from the first element.
    spec: Option<&'a TensorSpec>,
    /// Most elements accepted: the declared shape's count (KServe v2), or the most the model
    /// takes once the type is known (TF Serving).
    limit: usize,
    /// The declared shape, for the message (empty for TF Serving).
    shape: &'a [usize],
    /// TF Serving: the model's `max_batch_size` (0: it does not batch).
    max_batch_size: usize,
    /// Whether `{"b64": ...}` objects are values (TF Serving) or refused (KServe v2).
    b64: bool,
}

impl<'a> Elements<'a> {
    /// KServe v2: exactly `shape`'s elements of `dtype`, room for at most `capacity` reserved
    /// up front (the caller bounds it by the body's size, so a shape that lies costs nothing).
    pub(crate) fn declared(
        input: &'a str,
        dtype: DataType,
        shape: &'a [usize],
        limit: usize,
        capacity: usize,
    ) -> Elements<'a> {
        Elements {
            input,
            data: Some(TensorData::with_capacity(dtype, limit.min(capacity))),
            spec: None,
            limit,
            shape,
            max_batch_size: 0,
            b64: false,
        }
    }

    /// TF Serving: the elements the lists hold, up to the most the model takes; encoded
    /// values (`{"b64": ...}`, or strings for an input the server preprocesses) make a BYTES
    /// tensor, anything else the spec's type.
    pub(crate) fn inferred(spec: &'a TensorSpec, max_batch_size: usize) -> Elements<'a> {
        Elements {
            input: &spec.name,
            data: None,
            spec: Some(spec),
            limit: usize::MAX,
            shape: &[],
            max_batch_size,
            b64: true,
        }
    }

    /// The most elements of `dtype` the model takes for `spec`: `max_batch_size` rows of its
    /// fixed dimensions (one element a row when encoded: an image or a raw row), unbounded when
    /// a dimension other than the batch is free.
    fn most(spec: &TensorSpec, dtype: DataType, max_batch_size: usize) -> usize {
        let rows = max_batch_size.max(1);
        if dtype != spec.dtype {
            return if max_batch_size > 0 { rows } else { usize::MAX };
        }
        spec.dims
            .iter()
            .enumerate()
            .fold(1usize, |n, (i, &d)| match d {
                d if d >= 0 => n.saturating_mul(d as usize),
                _ if i == 0 && max_batch_size > 0 => n.saturating_mul(rows),
                _ => usize::MAX,
            })
    }

    /// The elements read, typed (the spec's type when there were none).
    pub(crate) fn finish(self) -> TensorData {
        match (self.data, self.spec) {
            (Some(data), _) => data,
            (None, Some(spec)) => TensorData::with_capacity(spec.dtype, 0),
            (None, None) => unreachable!("declared elements start typed"),
        }
    }

    fn push(&mut self, leaf: Leaf) -> Result<(), InferError> {
        let data = match (&mut self.data, self.spec) {
            (Some(data), _) => data,
            (data @ None, Some(spec)) => {
                let encoded = matches!(leaf, Leaf::B64(_))
                    || (matches!(leaf, Leaf::Str(_)) && spec.preprocess.is_some());
                let dtype = if encoded { DataType::Bytes } else { spec.dtype };
                accepts_dtype(spec, dtype)?;
                self.limit = Self::most(spec, dtype, self.max_batch_size);
                data.insert(TensorData::with_capacity(dtype, 1 << 10))
            }
            (None, None) => unreachable!("declared elements start typed"),
        };
        let index = data.len();
        if index >= self.limit {
            return Err(self.too_many());
        }
        let input = self.input;
        let bad = |what: &str| {
            InferError::invalid(format!(
                "input '{input}': element {index} is {leaf}, not {what}"
            ))
        };
        match data {
            TensorData::F32(v) => v.push(match leaf {
                Leaf::Float(x) => {
                    let narrowed = x as f32;
                    // 1e39 would become infinity and the outputs NaN (null in JSON).
                    if narrowed.is_infinite() {
                        return Err(bad("within FP32's range (about ±3.4e38)"));
                    }
                    narrowed
                }
                Leaf::Int(i) => i as f32,
                Leaf::Uint(u) => u as f32,
                _ => return Err(bad("a number")),
            }),
            TensorData::F64(v) => v.push(match leaf {
                Leaf::Float(x) => x,
                Leaf::Int(i) => i as f64,
                Leaf::Uint(u) => u as f64,
                _ => return Err(bad("a number")),
            }),
            TensorData::I64(v) => v.push(integer(leaf).ok_or_else(|| bad("an INT64 integer"))?),
            TensorData::I32(v) => v.push(integer(leaf).ok_or_else(|| bad("an INT32 integer"))?),
            TensorData::I16(v) => v.push(integer(leaf).ok_or_else(|| bad("an INT16 integer"))?),
            TensorData::I8(v) => v.push(integer(leaf).ok_or_else(|| bad("an INT8 integer"))?),
            TensorData::U8(v) => v.push(integer(leaf).ok_or_else(|| bad("a UINT8 integer"))?),
            TensorData::Bool(v) => match leaf {
                Leaf::Bool(b) => v.push(b),
                _ => return Err(bad("true or false")),
            },
            TensorData::Bytes(v) => match leaf {
                Leaf::Str(text) => v.push(text.as_bytes().to_vec()),
                Leaf::B64(text) => v.push(
                    base64::engine::general_purpose::STANDARD
                        .decode(text.trim())
                        .map_err(|e| {
                            InferError::invalid(format!(
                                "input '{input}': element {index} is not valid base64: {e}"
                            ))
                        })?,
                ),
                _ => return Err(bad("a string")),
            },
        }
        Ok(())
    }

    fn too_many(&self) -> InferError {
        let (input, limit) = (self.input, self.limit);
        InferError::invalid(match self.spec {
            None => format!(
                "input '{input}': shape {:?} needs {limit} elements but more were given",
                self.shape
            ),
            Some(spec) => format!(
                "input '{input}': more than {limit} elements, the most the model takes (shape {}, max_batch_size {}); split the request",
                spec.dims_display(),
                self.max_batch_size
            ),
        })
    }

    fn object_refused(&self) -> InferError {
        let index = self.data.as_ref().map_or(0, TensorData::len);
        let input = self.input;
        InferError::invalid(if self.b64 {
            format!(
                "input '{input}': element {index} is an object; the only object allowed is {{\"b64\": \"...\"}} for binary values"
            )
        } else {
            format!("input '{input}': element {index} is an object, not a value")
        })
    }
}

/// An integer leaf in `T`'s range.
fn integer<T: TryFrom<i64> + TryFrom<u64>>(leaf: Leaf) -> Option<T> {
    match leaf {
        Leaf::Int(i) => T::try_from(i).ok(),
        Leaf::Uint(u) => T::try_from(u).ok(),
        _ => None,
    }
}

/// TF Serving's lists must be rectangular: every list at one depth as long as the first, and
/// values only at the deepest level. Checked as the lists stream past, which also gives the
/// shape.
pub(crate) struct Rectangle {
    /// Where the lists sit in the body, for messages: `inputs` or `instances[ROW]`.
    place: &'static str,
    row: Option<usize>,
    /// The length of the lists at each depth, once the first one there has ended.
    dims: Vec<Option<usize>>,
    /// The depth values sit at, once the first one was met.
    leaf_depth: Option<usize>,
    /// The index of the current entry at each open depth.
    at: Vec<usize>,
    /// The most entries the outermost list may have (the model's `max_batch_size`).
    max_rows: Option<usize>,
}

impl Rectangle {
    /// A rectangle for lists found at `place` (`inputs`, or `instances` with a row set by
    /// [`Rectangle::start_row`]); `max_rows` bounds the outermost list.
    pub(crate) fn new(place: &'static str, max_rows: Option<usize>) -> Rectangle {
        Rectangle {
            place,
            row: None,
            dims: Vec::new(),
            leaf_depth: None,
            at: Vec::new(),
            max_rows,
        }
    }

    /// Forgets the shape seen so far: the next lists are row `row`'s.
    pub(crate) fn start_row(&mut self, row: usize) {
        self.row = Some(row);
        self.dims.clear();
        self.leaf_depth = None;
    }

    /// The shape of the lists seen since the start (or the row's start).
    pub(crate) fn shape(&self) -> Vec<usize> {
        self.dims.iter().map(|d| d.unwrap_or(0)).collect()
    }

    /// The path of the list at `depth`, e.g. `instances[1][3]`.
    fn path(&self, depth: usize) -> String {
        let mut path = self.place.to_string();
        if let Some(row) = self.row {
            path.push_str(&format!("[{row}]"));
        }
        for i in &self.at[..depth] {
            path.push_str(&format!("[{i}]"));
        }
        path
    }

    fn ragged(&self, input: &str, depth: usize, what: &str) -> InferError {
        InferError::invalid(format!(
            "input '{input}': {} {what}; lists must not be ragged",
            self.path(depth)
        ))
    }

    fn open(&mut self, input: &str, depth: usize) -> Result<(), InferError> {
        // A row that starts past max_batch_size is refused as a row, before its elements are
        // read (they would otherwise trip the less telling element limit first).
        if depth == 1 {
            self.counted(input, 0, self.at[0] + 1)?;
        }
        if self.leaf_depth.is_some_and(|leaf| depth >= leaf) {
            return Err(self.ragged(input, depth, "is a list where a value was expected"));
        }
        if self.dims.len() <= depth {
            self.dims.resize(depth + 1, None);
        }
        self.at.push(0);
        Ok(())
    }

    /// Entry `index` of the open list at `depth` is next.
    fn entry(&mut self, depth: usize, index: usize) {
        self.at[depth] = index;
    }

    /// The open list at `depth` has `len` entries so far: too many rows is refused at once.
    fn counted(&self, input: &str, depth: usize, len: usize) -> Result<(), InferError> {
        match self.max_rows {
            Some(max) if depth == 0 && len > max => Err(InferError::invalid(format!(
                "input '{input}': {} has more than {max} rows, the model's max_batch_size; split the request",
                self.path(0)
            ))),
            _ => Ok(()),
        }
    }

    fn close(&mut self, input: &str, depth: usize, len: usize) -> Result<(), InferError> {
        self.at.pop();
        match self.dims[depth] {
            None => self.dims[depth] = Some(len),
            Some(want) if want != len => {
                return Err(self.ragged(
                    input,
                    depth,
                    &format!("has {len} entries where {want} were expected"),
                ));
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn value(&mut self, input: &str, depth: usize) -> Result<(), InferError> {
        match self.leaf_depth {
            None if self.dims.len() > depth => {
                Err(self.ragged(input, depth, "is a value where a list was expected"))
            }
            None => {
                self.leaf_depth = Some(depth);
                Ok(())
            }
            Some(leaf) if leaf != depth => {
                Err(self.ragged(input, depth, "is a value where a list was expected"))
            }
            Some(_) => Ok(()),
        }
    }
}

/// One input's elements and, for TF Serving, the rectangle its lists must fill.
pub(crate) struct Column<'a> {
    pub(crate) elements: Elements<'a>,
    pub(crate) rectangle: Option<Rectangle>,
}

impl Column<'_> {
    fn leaf(&mut self, depth: usize, leaf: Leaf) -> Result<(), InferError> {
        if let Some(rectangle) = &mut self.rectangle {
            rectangle.value(self.elements.input, depth)?;
        }
        self.elements.push(leaf)
    }
}

/// Reads one JSON value (a scalar or nested lists) into a [`Column`]; `depth` is how deeply
/// the value is nested in the input's lists.
pub(crate) struct Nested<'s, 'a> {
    pub(crate) column: &'s mut Column<'a>,
    pub(crate) depth: usize,
    pub(crate) failure: &'s Failure,
}

impl Nested<'_, '_> {
    fn leaf<E: de::Error>(self, leaf: Leaf) -> Result<(), E> {
        self.column
            .leaf(self.depth, leaf)
            .map_err(|e| self.failure.raise(e))
    }
}

impl Nested<'_, '_> {
    /// A `{"b64": TEXT}` value whose key and text were read from `map`: nothing may follow.
    pub(crate) fn b64<'de, A: MapAccess<'de>>(
        self,
        text: &B64Text,
        mut map: A,
    ) -> Result<(), A::Error> {
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(self.refuse_object());
        }
        self.leaf(Leaf::B64(&text.0))
    }

    fn refuse_object<E: de::Error>(&self) -> E {
        self.failure.raise(self.column.elements.object_refused())
    }
}

impl<'de> DeserializeSeed<'de> for Nested<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Nested<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tensor elements (values or nested lists)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Nested {
            column,
            depth,
            failure,
        } = self;
        let input = column.elements.input;
        if let Some(rectangle) = &mut column.rectangle {
            rectangle.open(input, depth).map_err(|e| failure.raise(e))?;
        }
        let mut len = 0;
        loop {
            if let Some(rectangle) = &mut column.rectangle {
                rectangle.entry(depth, len);
            }
            let next = Nested {
                column: &mut *column,
                depth: depth + 1,
                failure,
            };
            if seq.next_element_seed(next)?.is_none() {
                break;
            }
            len += 1;
            if let Some(rectangle) = &column.rectangle {
                rectangle
                    .counted(input, depth, len)
                    .map_err(|e| failure.raise(e))?;
            }
        }
        if let Some(rectangle) = &mut column.rectangle {
            rectangle
                .close(input, depth, len)
                .map_err(|e| failure.raise(e))?;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if !self.column.elements.b64 {
            return Err(self.refuse_object());
        }
        match map.next_key::<std::borrow::Cow<'de, str>>()? {
            Some(key) if key == "b64" => {}
            _ => return Err(self.refuse_object()),
        }
        let text: B64Text = map.next_value()?;
        self.b64(&text, map)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.leaf(Leaf::Float(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.leaf(Leaf::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.leaf(Leaf::Uint(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.leaf(Leaf::Bool(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.leaf(Leaf::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf(Leaf::Null)
    }
}

/// The text of a `{"b64": ...}` value: borrowed from the body unless it holds escapes.
pub(crate) struct B64Text<'de>(std::borrow::Cow<'de, str>);

impl<'de> de::Deserialize<'de> for B64Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = B64Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(B64Text(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(B64Text(v.to_owned().into()))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

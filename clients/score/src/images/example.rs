//! `tf.train.Example`, the record TensorFlow's image pipelines store in TFRecord files, as
//! `prost` messages (`tensorflow/core/example/{example,feature}.proto`), and the three features
//! the image builders write: `image/encoded`, `image/class/label`, `image/format`.

use super::RecordProblem;
use prost::Message;
use std::collections::HashMap;

/// The encoded image (JPEG or PNG bytes).
pub const ENCODED: &str = "image/encoded";
/// The class index (int64).
pub const LABEL: &str = "image/class/label";
/// `JPEG` or `PNG`, optional.
pub const FORMAT: &str = "image/format";

/// `tf.train.Example`.
#[derive(Clone, PartialEq, Message)]
pub struct Example {
    /// Its features.
    #[prost(message, optional, tag = "1")]
    pub features: Option<Features>,
}

/// `tf.train.Features`: named features.
#[derive(Clone, PartialEq, Message)]
pub struct Features {
    /// Feature name to value.
    #[prost(map = "string, message", tag = "1")]
    pub feature: HashMap<String, Feature>,
}

/// `tf.train.Feature`: one list of bytes, floats or int64s.
#[derive(Clone, PartialEq, Message)]
pub struct Feature {
    /// The list.
    #[prost(oneof = "Kind", tags = "1, 2, 3")]
    pub kind: Option<Kind>,
}

/// The kinds of list a feature holds.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// `bytes_list`.
    #[prost(message, tag = "1")]
    BytesList(BytesList),
    /// `float_list`.
    #[prost(message, tag = "2")]
    FloatList(FloatList),
    /// `int64_list`.
    #[prost(message, tag = "3")]
    Int64List(Int64List),
}

/// `tf.train.BytesList`.
#[derive(Clone, PartialEq, Message)]
pub struct BytesList {
    /// Values.
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub value: Vec<Vec<u8>>,
}

/// `tf.train.FloatList`.
#[derive(Clone, PartialEq, Message)]
pub struct FloatList {
    /// Values (packed or not; both decode).
    #[prost(float, repeated, tag = "1")]
    pub value: Vec<f32>,
}

/// `tf.train.Int64List`.
#[derive(Clone, PartialEq, Message)]
pub struct Int64List {
    /// Values (packed or not; both decode).
    #[prost(int64, repeated, tag = "1")]
    pub value: Vec<i64>,
}

/// What an image Example holds.
#[derive(Debug, PartialEq)]
pub struct ImageExample {
    /// The encoded image.
    pub encoded: Vec<u8>,
    /// The class, when the example has one.
    pub label: Option<i64>,
    /// `image/format`, when given.
    pub format: Option<String>,
}

/// An Example of one image, as the image builders write it.
pub fn image_example(encoded: &[u8], label: Option<i64>, format: &str) -> Vec<u8> {
    let mut feature = HashMap::new();
    let bytes = |v: &[u8]| Feature {
        kind: Some(Kind::BytesList(BytesList {
            value: vec![v.to_vec()],
        })),
    };
    feature.insert(ENCODED.to_string(), bytes(encoded));
    feature.insert(FORMAT.to_string(), bytes(format.as_bytes()));
    if let Some(label) = label {
        feature.insert(
            LABEL.to_string(),
            Feature {
                kind: Some(Kind::Int64List(Int64List { value: vec![label] })),
            },
        );
    }
    Example {
        features: Some(Features { feature }),
    }
    .encode_to_vec()
}

/// Parses an image Example, naming what is missing or of the wrong kind.
pub fn parse_image_example(payload: &[u8]) -> Result<ImageExample, RecordProblem> {
    let bad = |why: String| RecordProblem::Example(why);
    let example =
        Example::decode(payload).map_err(|e| bad(format!("not a tf.train.Example: {e}")))?;
    let mut features = example.features.map(|f| f.feature).unwrap_or_default();
    let mut present: Vec<&str> = features.keys().map(String::as_str).collect();
    present.sort_unstable();
    let present = format!("[{}]", present.join(", "));
    let mut single_bytes = |name: &str| -> Result<Option<Vec<u8>>, RecordProblem> {
        match features.remove(name).and_then(|f| f.kind) {
            None => Ok(None),
            Some(Kind::BytesList(mut list)) if list.value.len() == 1 => Ok(list.value.pop()),
            Some(Kind::BytesList(list)) => Err(bad(format!(
                "'{name}' holds {} values, expected 1",
                list.value.len()
            ))),
            Some(other) => Err(bad(format!(
                "'{name}' is {}, expected a bytes_list",
                kind_name(&other)
            ))),
        }
    };
    let encoded = single_bytes(ENCODED)?
        .ok_or_else(|| bad(format!("no '{ENCODED}' feature (it has {present})")))?;
    let format = single_bytes(FORMAT)?.map(|f| String::from_utf8_lossy(&f).into_owned());
    let label = match features.remove(LABEL).and_then(|f| f.kind) {
        None => None,
        Some(Kind::Int64List(list)) if list.value.len() == 1 => Some(list.value[0]),
        Some(Kind::Int64List(list)) => {
            return Err(bad(format!(
                "'{LABEL}' holds {} values, expected 1",
                list.value.len()
            )));
        }
        Some(other) => {
            return Err(bad(format!(
                "'{LABEL}' is {}, expected an int64_list",
                kind_name(&other)
            )));
        }
    };
    Ok(ImageExample {
        encoded,
        label,
        format,
    })
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::BytesList(_) => "a bytes_list",
        Kind::FloatList(_) => "a float_list",
        Kind::Int64List(_) => "an int64_list",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_what_is_wrong() {
        let payload = image_example(b"\xff\xd8jpeg", Some(7), "JPEG");
        let parsed = parse_image_example(&payload).unwrap();
        assert_eq!(
            parsed,
            ImageExample {
                encoded: b"\xff\xd8jpeg".to_vec(),
                label: Some(7),
                format: Some("JPEG".into())
            }
        );
        let unlabelled = parse_image_example(&image_example(b"png", None, "PNG")).unwrap();
        assert_eq!(unlabelled.label, None);

        let err = parse_image_example(b"\xff\xff\xff").unwrap_err();
        assert!(err.to_string().contains("not a tf.train.Example"), "{err}");
        let mut feature = HashMap::new();
        feature.insert(
            LABEL.to_string(),
            Feature {
                kind: Some(Kind::FloatList(FloatList { value: vec![1.0] })),
            },
        );
        feature.insert(
            ENCODED.to_string(),
            Feature {
                kind: Some(Kind::BytesList(BytesList {
                    value: vec![b"x".to_vec()],
                })),
            },
        );
        let wrong = Example {
            features: Some(Features { feature }),
        }
        .encode_to_vec();
        let err = parse_image_example(&wrong).unwrap_err();
        assert!(
            err.to_string()
                .contains("'image/class/label' is a float_list, expected an int64_list"),
            "{err}"
        );
        let empty = Example::default().encode_to_vec();
        let err = parse_image_example(&empty).unwrap_err();
        assert!(
            err.to_string().contains("no 'image/encoded' feature"),
            "{err}"
        );
    }
}

//! TensorFlow's `TensorProto` to and from the core's tensors.
//!
//! A request tensor carries its elements either as little-endian bytes in `tensor_content`
//! (what `tf.make_tensor_proto` writes for numeric arrays) or in the typed field of its dtype
//! (`float_val`, `int_val`, ...; strings always in `string_val`). Answers use the typed fields,
//! as TF Serving does by default.

use crate::infer::accepts_dtype;
use spindle_core::config::TensorSpec;
use spindle_core::dtype::DataType;
use spindle_core::error::InferError;
use spindle_core::tensor::{Tensor, TensorData, element_count};
use spindle_proto::tensorflow::tensor_shape_proto::Dim;
use spindle_proto::tensorflow::{DataType as TfType, TensorProto, TensorShapeProto};

/// TensorFlow's dtype for a core type.
pub(super) fn tf_type(dtype: DataType) -> TfType {
    match dtype {
        DataType::Bool => TfType::DtBool,
        DataType::U8 => TfType::DtUint8,
        DataType::I8 => TfType::DtInt8,
        DataType::I16 => TfType::DtInt16,
        DataType::I32 => TfType::DtInt32,
        DataType::I64 => TfType::DtInt64,
        DataType::F32 => TfType::DtFloat,
        DataType::F64 => TfType::DtDouble,
        DataType::Bytes => TfType::DtString,
    }
}

/// What input `spec` takes, in TensorFlow's names: its dtype, and DT_STRING for encoded inputs.
fn expected_dtype(spec: &TensorSpec) -> String {
    let also = match spec.preprocess {
        Some(pre) => format!(" (or DT_STRING holding {} input)", pre.name()),
        None => String::new(),
    };
    format!("{}{also}", tf_type(spec.dtype).as_str_name())
}

/// The core type of a request tensor's dtype, which must be one `spec` accepts.
fn request_type(dtype: i32, spec: &TensorSpec) -> Result<DataType, InferError> {
    let refuse = |got: String| {
        InferError::invalid(format!(
            "input '{}': expected dtype {} but got {got}",
            spec.name,
            expected_dtype(spec)
        ))
    };
    let Ok(tf) = TfType::try_from(dtype) else {
        return Err(refuse(format!(
            "{dtype}, which is not a TensorFlow DataType"
        )));
    };
    let Some(core) = DataType::ALL.into_iter().find(|&d| tf_type(d) == tf) else {
        return Err(refuse(format!(
            "{}, a dtype Spindle does not serve",
            tf.as_str_name()
        )));
    };
    accepts_dtype(spec, core).map_err(|_| refuse(tf.as_str_name().to_string()))?;
    Ok(core)
}

/// A shape in TensorFlow's form (size -1: unknown, as signatures write the batch dimension).
pub(super) fn tf_shape(dims: impl IntoIterator<Item = i64>) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims
            .into_iter()
            .map(|size| Dim {
                size,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    }
}

/// The typed value fields of a `TensorProto` with how many values each holds.
fn filled_fields(p: &TensorProto) -> [(&'static str, usize); 6] {
    [
        ("float_val", p.float_val.len()),
        ("double_val", p.double_val.len()),
        ("int_val", p.int_val.len()),
        ("int64_val", p.int64_val.len()),
        ("bool_val", p.bool_val.len()),
        ("string_val", p.string_val.len()),
    ]
}

/// The typed field that carries `dtype`'s values.
fn value_field(dtype: DataType) -> &'static str {
    match dtype {
        DataType::F32 => "float_val",
        DataType::F64 => "double_val",
        DataType::I32 | DataType::I16 | DataType::I8 | DataType::U8 => "int_val",
        DataType::I64 => "int64_val",
        DataType::Bool => "bool_val",
        DataType::Bytes => "string_val",
    }
}

/// Decodes the request tensor for input `spec`, refusing what the model cannot take with the
/// input's name, what was expected and what came.
pub(super) fn decode(spec: &TensorSpec, proto: TensorProto) -> Result<Tensor, InferError> {
    let name = spec.name.as_str();
    let dtype = request_type(proto.dtype, spec)?;
    let shape = shape(proto.tensor_shape.as_ref(), name)?;
    let own = value_field(dtype);
    if let Some((field, _)) = filled_fields(&proto)
        .into_iter()
        .find(|&(field, n)| n > 0 && field != own)
    {
        return Err(InferError::invalid(format!(
            "input '{name}': a {} tensor carries its values in {own}{}, but {field} is filled",
            tf_type(dtype).as_str_name(),
            if dtype == DataType::Bytes {
                ""
            } else {
                " or tensor_content"
            }
        )));
    }
    if !proto.tensor_content.is_empty() {
        if dtype == DataType::Bytes {
            return Err(InferError::invalid(format!(
                "input '{name}': DT_STRING values travel in string_val, not tensor_content"
            )));
        }
        if filled_fields(&proto).iter().any(|&(_, n)| n > 0) {
            return Err(InferError::invalid(format!(
                "input '{name}': both tensor_content and {own} are filled; send one"
            )));
        }
        return Tensor::from_le_bytes(dtype, shape, &proto.tensor_content)
            .map_err(|e| InferError::invalid(format!("input '{name}' (tensor_content): {e}")));
    }
    let data = typed_values(dtype, proto, name)?;
    let expected = element_count(&shape);
    if data.len() != expected {
        // TensorFlow would repeat the last value to fill the shape; Spindle refuses instead,
        // since a short list is far more often a client's mistake than a wish to broadcast.
        return Err(InferError::invalid(format!(
            "input '{name}': tensor_shape {shape:?} needs {expected} values but {own} holds {} (Spindle does not repeat values to fill a shape)",
            data.len()
        )));
    }
    Tensor::new(shape, data).map_err(|e| InferError::invalid(format!("input '{name}': {e}")))
}

/// The request's dimensions; an unknown rank or an unknown (negative) size is refused.
fn shape(shape: Option<&TensorShapeProto>, input: &str) -> Result<Vec<usize>, InferError> {
    // No tensor_shape is a scalar, as in TensorFlow.
    let Some(shape) = shape else {
        return Ok(Vec::new());
    };
    if shape.unknown_rank {
        return Err(InferError::invalid(format!(
            "input '{input}': tensor_shape has unknown_rank set; a request tensor needs its dimensions"
        )));
    }
    shape
        .dim
        .iter()
        .map(|d| {
            usize::try_from(d.size).map_err(|_| {
                let sizes: Vec<i64> = shape.dim.iter().map(|d| d.size).collect();
                InferError::invalid(format!(
                    "input '{input}': tensor_shape {sizes:?} has a negative size; a request tensor needs every size"
                ))
            })
        })
        .collect()
}

/// Takes the values of `dtype`'s typed field, narrowing `int_val` with a range check.
fn typed_values(dtype: DataType, p: TensorProto, input: &str) -> Result<TensorData, InferError> {
    fn narrow<T: TryFrom<i32>>(v: Vec<i32>, input: &str, ty: TfType) -> Result<Vec<T>, InferError> {
        v.into_iter()
            .enumerate()
            .map(|(i, x)| {
                T::try_from(x).map_err(|_| {
                    InferError::invalid(format!(
                        "input '{input}': int_val[{i}] ({x}) is out of range for {}",
                        ty.as_str_name()
                    ))
                })
            })
            .collect()
    }
    Ok(match dtype {
        DataType::Bool => TensorData::Bool(p.bool_val),
        DataType::U8 => TensorData::U8(narrow(p.int_val, input, TfType::DtUint8)?),
        DataType::I8 => TensorData::I8(narrow(p.int_val, input, TfType::DtInt8)?),
        DataType::I16 => TensorData::I16(narrow(p.int_val, input, TfType::DtInt16)?),
        DataType::I32 => TensorData::I32(p.int_val),
        DataType::I64 => TensorData::I64(p.int64_val),
        DataType::F32 => TensorData::F32(p.float_val),
        DataType::F64 => TensorData::F64(p.double_val),
        DataType::Bytes => TensorData::Bytes(p.string_val),
    })
}

/// An answer tensor in the typed field of its dtype (TF Serving's default encoding, which
/// `tf.make_ndarray` and clients reading `float_val` directly both understand).
pub(super) fn encode(tensor: Tensor) -> TensorProto {
    let mut p = TensorProto {
        dtype: tf_type(tensor.dtype()) as i32,
        tensor_shape: Some(tf_shape(tensor.shape.iter().map(|&d| d as i64))),
        ..Default::default()
    };
    match tensor.data {
        TensorData::Bool(v) => p.bool_val = v,
        TensorData::U8(v) => p.int_val = v.into_iter().map(i32::from).collect(),
        TensorData::I8(v) => p.int_val = v.into_iter().map(i32::from).collect(),
        TensorData::I16(v) => p.int_val = v.into_iter().map(i32::from).collect(),
        TensorData::I32(v) => p.int_val = v,
        TensorData::I64(v) => p.int64_val = v,
        TensorData::F32(v) => p.float_val = v,
        TensorData::F64(v) => p.double_val = v,
        TensorData::Bytes(v) => p.string_val = v,
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dtype: DataType) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            dtype,
            dims: vec![-1, 2],
            preprocess: None,
        }
    }

    fn proto(dtype: TfType, dims: &[i64]) -> TensorProto {
        TensorProto {
            dtype: dtype as i32,
            tensor_shape: Some(tf_shape(dims.iter().copied())),
            ..Default::default()
        }
    }

    #[test]
    fn tensor_content_and_typed_values_decode_alike() {
        let values = [1.5f32, -2.0, 0.25, 8.0];
        let mut typed = proto(TfType::DtFloat, &[2, 2]);
        typed.float_val = values.to_vec();
        let mut content = proto(TfType::DtFloat, &[2, 2]);
        content.tensor_content = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = decode(&spec(DataType::F32), typed).unwrap();
        let b = decode(&spec(DataType::F32), content).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.shape, [2, 2]);
        assert_eq!(encode(a).float_val, values);
    }

    #[test]
    fn narrow_integers_are_range_checked_both_ways() {
        let mut p = proto(TfType::DtUint8, &[1, 2]);
        p.int_val = vec![7, 300];
        let err = decode(&spec(DataType::U8), p).unwrap_err();
        assert!(
            err.message
                .contains("int_val[1] (300) is out of range for DT_UINT8"),
            "{}",
            err.message
        );
        let t = Tensor::new(vec![2], TensorData::I8(vec![-3, 4])).unwrap();
        let back = encode(t);
        assert_eq!(back.dtype, TfType::DtInt8 as i32);
        assert_eq!(back.int_val, [-3, 4]);
    }

    #[test]
    fn bad_tensors_name_the_input_and_what_was_expected() {
        let cases: Vec<(TensorProto, DataType, &str)> = vec![
            (
                proto(TfType::DtInt32, &[1, 2]),
                DataType::F32,
                "expected dtype DT_FLOAT but got DT_INT32",
            ),
            (
                proto(TfType::DtHalf, &[1, 2]),
                DataType::F32,
                "expected dtype DT_FLOAT but got DT_HALF, a dtype Spindle does not serve",
            ),
            (
                TensorProto {
                    int_val: vec![1, 2],
                    ..proto(TfType::DtFloat, &[1, 2])
                },
                DataType::F32,
                "carries its values in float_val or tensor_content, but int_val is filled",
            ),
            (
                TensorProto {
                    float_val: vec![1.0],
                    ..proto(TfType::DtFloat, &[1, 2])
                },
                DataType::F32,
                "needs 2 values but float_val holds 1",
            ),
            (
                TensorProto {
                    tensor_content: vec![0; 7],
                    ..proto(TfType::DtFloat, &[1, 2])
                },
                DataType::F32,
                "(tensor_content): shape [1, 2] of FP32 needs 8 bytes but 7 were given",
            ),
            (
                TensorProto {
                    tensor_content: vec![0; 8],
                    float_val: vec![1.0, 2.0],
                    ..proto(TfType::DtFloat, &[1, 2])
                },
                DataType::F32,
                "both tensor_content and float_val",
            ),
            (
                proto(TfType::DtFloat, &[-1, 2]),
                DataType::F32,
                "has a negative size",
            ),
            (
                TensorProto {
                    tensor_content: vec![1],
                    ..proto(TfType::DtString, &[1])
                },
                DataType::Bytes,
                "DT_STRING values travel in string_val",
            ),
        ];
        for (p, dtype, expected) in cases {
            let err = decode(&spec(dtype), p).unwrap_err();
            assert!(err.message.starts_with("input 'x'"), "{}", err.message);
            assert!(err.message.contains(expected), "{}", err.message);
        }
    }
}

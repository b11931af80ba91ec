//! Element types and tensors between Spindle and ONNX Runtime.
//!
//! Inputs move into ONNX Runtime without a copy: an `ort` tensor can own a `Vec` and hand its
//! buffer to the runtime. Outputs live in buffers the runtime allocated, so they are copied once
//! into the returned tensors. `BYTES` maps to ONNX string tensors, whose elements must be UTF-8.

use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, ValueType};
use spindle_core::{DataType, Tensor, TensorData};

/// The Spindle element type for an ONNX Runtime one, or ONNX Runtime's name for a type
/// Spindle cannot carry.
pub(crate) fn data_type(ty: &ValueType) -> Result<DataType, String> {
    let ValueType::Tensor { ty, .. } = ty else {
        return Err(format!("{ty} (not a tensor)"));
    };
    Ok(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::U8,
        TensorElementType::Int8 => DataType::I8,
        TensorElementType::Int16 => DataType::I16,
        TensorElementType::Int32 => DataType::I32,
        TensorElementType::Int64 => DataType::I64,
        TensorElementType::Float32 => DataType::F32,
        TensorElementType::Float64 => DataType::F64,
        TensorElementType::String => DataType::Bytes,
        other => return Err(format!("{other}")),
    })
}

/// Model dimensions as declared (`None`: variable), or `None` for a non-tensor.
pub(crate) fn dims(ty: &ValueType) -> Option<Vec<Option<i64>>> {
    let ValueType::Tensor { shape, .. } = ty else {
        return None;
    };
    Some(shape.iter().map(|&d| (d >= 0).then_some(d)).collect())
}

/// Moves a Spindle tensor into an ONNX Runtime value (no copy except for `BYTES`).
pub(crate) fn to_ort(tensor: Tensor) -> Result<DynValue, String> {
    let shape = tensor.shape;
    let value = match tensor.data {
        TensorData::Bool(v) => OrtTensor::from_array((shape, v)).map(OrtTensor::into_dyn),
        TensorData::U8(v) => OrtTensor::from_array((shape, v)).map(OrtTensor::into_dyn),
        TensorData::I8(v) => OrtTensor::from_array((shape, v)).map(OrtTensor::into_dyn),
        TensorData::I16(v) => OrtTensor::from_array((shape, v)).map(OrtTensor::into_dyn),
        TensorData::I32(v) => OrtTensor::from_array((shape, v)).map(OrtTensor::into_dyn),
        TensorData::I64(v) => OrtTensor::from_array((shape, v)).map(OrtTensor::into_dyn),
        TensorData::F32(v) => OrtTensor::from_array((shape, v)).map(OrtTensor::into_dyn),
        TensorData::F64(v) => OrtTensor::from_array((shape, v)).map(OrtTensor::into_dyn),
        TensorData::Bytes(v) => {
            let strings = v
                .into_iter()
                .enumerate()
                .map(|(i, bytes)| {
                    String::from_utf8(bytes).map_err(|_| {
                        format!("BYTES element {i} is not UTF-8, which ONNX string tensors require")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            OrtTensor::from_string_array((shape, &*strings)).map(OrtTensor::into_dyn)
        }
    };
    value.map_err(|e| e.to_string())
}

/// Copies an ONNX Runtime output of element type `dtype` into a Spindle tensor.
pub(crate) fn from_ort(value: &DynValue, dtype: DataType) -> Result<Tensor, String> {
    macro_rules! copy {
        ($t:ty, $variant:ident) => {{
            let (shape, data) = value
                .try_extract_tensor::<$t>()
                .map_err(|e| e.to_string())?;
            (shape.clone(), TensorData::$variant(data.to_vec()))
        }};
    }
    let (shape, data) = match dtype {
        DataType::Bool => copy!(bool, Bool),
        DataType::U8 => copy!(u8, U8),
        DataType::I8 => copy!(i8, I8),
        DataType::I16 => copy!(i16, I16),
        DataType::I32 => copy!(i32, I32),
        DataType::I64 => copy!(i64, I64),
        DataType::F32 => copy!(f32, F32),
        DataType::F64 => copy!(f64, F64),
        DataType::Bytes => {
            let (shape, strings) = value.try_extract_strings().map_err(|e| e.to_string())?;
            (
                shape.clone(),
                TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()),
            )
        }
    };
    let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
    Tensor::new(shape, data).map_err(|e| e.to_string())
}

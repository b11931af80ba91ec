//! Element types and tensors between Spindle and tract.
//!
//! tract keeps tensor data in its own aligned buffers, so each direction costs one copy.

use spindle_core::{DataType, Tensor, TensorData};
use tract_onnx::prelude::{DatumType, Tensor as TractTensor};

/// The tract element type for a Spindle one; `None` for `BYTES`, which tract cannot run.
pub(crate) fn datum_type(dtype: DataType) -> Option<DatumType> {
    Some(match dtype {
        DataType::Bool => DatumType::Bool,
        DataType::U8 => DatumType::U8,
        DataType::I8 => DatumType::I8,
        DataType::I16 => DatumType::I16,
        DataType::I32 => DatumType::I32,
        DataType::I64 => DatumType::I64,
        DataType::F32 => DatumType::F32,
        DataType::F64 => DatumType::F64,
        DataType::Bytes => return None,
    })
}

/// The Spindle element type for a tract one, or tract's name for a type Spindle cannot carry.
pub(crate) fn data_type(dt: DatumType) -> Result<DataType, String> {
    Ok(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::U8,
        DatumType::I8 => DataType::I8,
        DatumType::I16 => DataType::I16,
        DatumType::I32 => DataType::I32,
        DatumType::I64 => DataType::I64,
        DatumType::F32 => DataType::F32,
        DatumType::F64 => DataType::F64,
        other => return Err(format!("{other:?}")),
    })
}

/// Copies a Spindle tensor into a tract one.
pub(crate) fn to_tract(tensor: &Tensor) -> Result<TractTensor, String> {
    let shape = &tensor.shape;
    let converted = match &tensor.data {
        TensorData::Bool(v) => TractTensor::from_shape(shape, v),
        TensorData::U8(v) => TractTensor::from_shape(shape, v),
        TensorData::I8(v) => TractTensor::from_shape(shape, v),
        TensorData::I16(v) => TractTensor::from_shape(shape, v),
        TensorData::I32(v) => TractTensor::from_shape(shape, v),
        TensorData::I64(v) => TractTensor::from_shape(shape, v),
        TensorData::F32(v) => TractTensor::from_shape(shape, v),
        TensorData::F64(v) => TractTensor::from_shape(shape, v),
        TensorData::Bytes(_) => return Err("BYTES tensors are not supported by tract".into()),
    };
    converted.map_err(|e| format!("{e:#}"))
}

/// Copies a tract tensor into a Spindle one.
pub(crate) fn from_tract(tensor: &TractTensor) -> Result<Tensor, String> {
    let view = tensor.try_as_plain_ram().map_err(|e| format!("{e:#}"))?;
    macro_rules! copy {
        ($t:ty, $variant:ident) => {
            TensorData::$variant(
                view.as_slice::<$t>()
                    .map_err(|e| format!("{e:#}"))?
                    .to_vec(),
            )
        };
    }
    let data = match tensor.datum_type() {
        DatumType::Bool => copy!(bool, Bool),
        DatumType::U8 => copy!(u8, U8),
        DatumType::I8 => copy!(i8, I8),
        DatumType::I16 => copy!(i16, I16),
        DatumType::I32 => copy!(i32, I32),
        DatumType::I64 => copy!(i64, I64),
        DatumType::F32 => copy!(f32, F32),
        DatumType::F64 => copy!(f64, F64),
        other => return Err(format!("the model produced {other:?} elements")),
    };
    Tensor::new(tensor.shape().to_vec(), data).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_supported_type() {
        let tensors = [
            Tensor::new(vec![2], TensorData::Bool(vec![true, false])).unwrap(),
            Tensor::new(vec![1, 2], TensorData::U8(vec![0, 255])).unwrap(),
            Tensor::new(vec![2], TensorData::I8(vec![-1, 7])).unwrap(),
            Tensor::new(vec![2], TensorData::I16(vec![-300, 7])).unwrap(),
            Tensor::new(vec![2, 1], TensorData::I32(vec![i32::MIN, 1])).unwrap(),
            Tensor::new(vec![2], TensorData::I64(vec![i64::MAX, -2])).unwrap(),
            Tensor::new(vec![1, 3], TensorData::F32(vec![1.5, -0.0, 3.0])).unwrap(),
            Tensor::new(vec![1], TensorData::F64(vec![0.1])).unwrap(),
        ];
        for t in tensors {
            let tract = to_tract(&t).unwrap();
            assert_eq!(data_type(tract.datum_type()).unwrap(), t.dtype());
            assert_eq!(from_tract(&tract).unwrap(), t);
        }
    }

    #[test]
    fn bytes_are_refused() {
        let t = Tensor::new(vec![1], TensorData::Bytes(vec![b"x".to_vec()])).unwrap();
        assert!(to_tract(&t).unwrap_err().contains("BYTES"));
        assert!(datum_type(DataType::Bytes).is_none());
    }
}

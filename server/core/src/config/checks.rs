//! Request tensors against the config: the checks every request's inputs pass before they are
//! queued, and that engines repeat on what they are handed.

use super::TensorSpec;
use crate::tensor::Tensor;

impl TensorSpec {
    /// Checks a request tensor against this spec: the element type, the rank, and every fixed
    /// dimension (a `-1` takes any size; the caller checks the batch size against the model's
    /// `max_batch_size`). The message names the input and what was expected.
    pub fn check(&self, tensor: &Tensor) -> Result<(), String> {
        if tensor.dtype() != self.dtype {
            return Err(format!(
                "input '{}': expected datatype {} but got {}",
                self.name,
                self.dtype,
                tensor.dtype()
            ));
        }
        self.check_shape(&tensor.shape)
    }

    /// Checks a request's shape alone against this spec's dims (what a front end can do from a
    /// request's header, before its data is read).
    pub fn check_shape(&self, shape: &[usize]) -> Result<(), String> {
        let fits = shape.len() == self.dims.len()
            && self
                .dims
                .iter()
                .zip(shape)
                .all(|(&want, &got)| want < 0 || want as usize == got);
        if !fits {
            return Err(format!(
                "input '{}': expected shape {} but got {:?}",
                self.name,
                self.dims_display(),
                shape
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DataType;
    use crate::tensor::TensorData;

    #[test]
    fn checks_request_tensors() {
        let spec = TensorSpec {
            name: "images".to_string(),
            dtype: DataType::F32,
            dims: vec![-1, 24, 24, 3],
            preprocess: None,
        };
        let good = Tensor::new(
            vec![2, 24, 24, 3],
            TensorData::F32(vec![0.0; 2 * 24 * 24 * 3]),
        )
        .unwrap();
        spec.check(&good).unwrap();
        let wrong = Tensor::new(vec![1, 3], TensorData::F32(vec![0.0; 3])).unwrap();
        assert_eq!(
            spec.check(&wrong).unwrap_err(),
            "input 'images': expected shape [-1, 24, 24, 3] but got [1, 3]"
        );
    }
}

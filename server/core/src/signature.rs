//! Comparing what a model declares with what its `config.toml` says.
//!
//! The rules: the same number of inputs (and of outputs) with the same names; the same element
//! type; the same rank; and wherever the model fixes a dimension the config states that size
//! (a config `-1` against a fixed model dimension is a lie that would only surface at run time).
//! Where the model leaves a dimension variable, any config value is accepted.

use crate::config::{TensorSpec, spec_names};
use crate::engine::EngineError;

/// What the model declares for one tensor, as far as it is known.
pub struct Declared {
    /// The element type, or the engine's name for a type Spindle cannot carry.
    pub dtype: Result<crate::DataType, String>,
    /// Dimensions (`None`: variable), or `None` when even the rank is unknown.
    pub dims: Option<Vec<Option<i64>>>,
}

/// For each spec, the index of the model tensor with the same name; fails unless both sides have
/// the same count and every spec names a model tensor.
pub fn match_names(
    kind: &str,
    specs: &[TensorSpec],
    model_names: &[String],
) -> Result<Vec<usize>, EngineError> {
    if specs.len() != model_names.len() {
        return Err(EngineError::SignatureMismatch(format!(
            "config declares {} {kind}s ({}) but the model has {} ({})",
            specs.len(),
            spec_names(specs),
            model_names.len(),
            model_names.join(", ")
        )));
    }
    specs
        .iter()
        .map(|spec| {
            model_names
                .iter()
                .position(|n| *n == spec.name)
                .ok_or_else(|| {
                    EngineError::SignatureMismatch(format!(
                        "{kind} '{}' is not an {kind} of the model (the model's {kind}s: {})",
                        spec.name,
                        model_names.join(", ")
                    ))
                })
        })
        .collect()
}

/// Checks one tensor's element type, rank and fixed dimensions.
pub fn check(kind: &str, spec: &TensorSpec, declared: &Declared) -> Result<(), EngineError> {
    let mismatch =
        |what: String| EngineError::SignatureMismatch(format!("{kind} '{}': {what}", spec.name));
    match &declared.dtype {
        Ok(dtype) if *dtype == spec.dtype => {}
        Ok(dtype) => {
            return Err(mismatch(format!(
                "config says datatype {} but the model has {dtype}",
                spec.dtype
            )));
        }
        Err(other) => {
            return Err(mismatch(format!(
                "config says datatype {} but the model has {other}, which Spindle does not support",
                spec.dtype
            )));
        }
    }
    let Some(dims) = &declared.dims else {
        return Ok(());
    };
    let fits = dims.len() == spec.dims.len()
        && dims
            .iter()
            .zip(&spec.dims)
            .all(|(model, &config)| model.is_none_or(|m| m == config));
    if !fits {
        return Err(mismatch(format!(
            "config says dims {:?} but the model has {}",
            spec.dims,
            format_dims(dims)
        )));
    }
    Ok(())
}

/// Checks the tensors handed to a runner: one per spec, in order, each matching its spec.
/// Engines call it before converting, so a caller that bypassed validation gets a clear
/// [`EngineError::Run`] instead of an engine's internal error.
pub fn check_run_inputs(specs: &[TensorSpec], inputs: &[crate::Tensor]) -> Result<(), EngineError> {
    if inputs.len() != specs.len() {
        return Err(EngineError::Run(format!(
            "expected {} inputs ({}) but got {}",
            specs.len(),
            spec_names(specs),
            inputs.len()
        )));
    }
    for (spec, tensor) in specs.iter().zip(inputs) {
        spec.check(tensor).map_err(EngineError::Run)?;
    }
    Ok(())
}

/// Formats model dimensions the way configs write them: `-1` for variable.
fn format_dims(dims: &[Option<i64>]) -> String {
    format!(
        "{:?}",
        dims.iter().map(|d| d.unwrap_or(-1)).collect::<Vec<_>>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataType;

    fn spec(dims: Vec<i64>) -> TensorSpec {
        TensorSpec {
            name: "images".into(),
            dtype: DataType::F32,
            dims,
            preprocess: None,
        }
    }

    fn declared(dims: Vec<Option<i64>>) -> Declared {
        Declared {
            dtype: Ok(DataType::F32),
            dims: Some(dims),
        }
    }

    #[test]
    fn variable_model_dims_accept_any_config() {
        check("input", &spec(vec![-1, 3]), &declared(vec![None, Some(3)])).unwrap();
        check("input", &spec(vec![4, 3]), &declared(vec![None, Some(3)])).unwrap();
    }

    #[test]
    fn fixed_model_dims_must_be_stated() {
        let err = check(
            "input",
            &spec(vec![-1, 3]),
            &declared(vec![Some(1), Some(3)]),
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "model does not match its config: input 'images': config says dims [-1, 3] but the model has [1, 3]"
        );
        let err = check(
            "input",
            &spec(vec![-1, 3]),
            &declared(vec![None, Some(3), Some(1)]),
        );
        assert!(err.unwrap_err().to_string().contains("[-1, 3, 1]"));
    }

    #[test]
    fn names_must_match() {
        let err = match_names("input", &[spec(vec![-1])], &["x".to_string()]).unwrap_err();
        assert!(err.to_string().contains("'images'"), "{err}");
        assert!(err.to_string().contains("x"), "{err}");
        let err = match_names("input", &[spec(vec![-1])], &[]).unwrap_err();
        assert!(err.to_string().contains("1 inputs"), "{err}");
    }
}

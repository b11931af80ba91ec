//! Tensors to and from KServe v2 gRPC messages: typed `contents` and `raw_*_contents`.

use crate::infer::{
    InferAnswer, InferRequest, InputSlots, OutputRequest, accepts_dtype, output_index,
    output_parameters,
};
use spindle_core::config::ModelConfig;
use spindle_core::dtype::DataType;
use spindle_core::error::InferError;
use spindle_core::tensor::{Tensor, TensorData, element_count};
use spindle_proto::inference::infer_parameter::ParameterChoice;
use spindle_proto::inference::model_infer_request::InferInputTensor;
use spindle_proto::inference::model_infer_response::InferOutputTensor;
use spindle_proto::inference::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse,
};
use std::collections::HashMap;
use std::time::Duration;

/// Parses a `ModelInferRequest` into the shared request, inputs in config order.
pub fn parse_request(
    config: &ModelConfig,
    request: ModelInferRequest,
) -> Result<InferRequest, InferError> {
    let raw = request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(InferError::invalid(format!(
            "raw_input_contents has {} entries but the request has {} inputs; send one per input, in order",
            raw.len(),
            request.inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    let mut slots = InputSlots::new(config);
    for input in request.inputs {
        let index = slots.index(&input.name)?;
        let bytes = raw.next();
        slots.set(index, decode_input(config, index, input, bytes)?);
    }
    let inputs = slots.finish()?;
    let timeout = match request.parameters.get("timeout") {
        None => None,
        Some(p) => Some(Duration::from_micros(uint_param(p).ok_or_else(|| {
            InferError::invalid("parameter 'timeout' must be a whole number of microseconds")
        })?)),
    };
    let outputs = if request.outputs.is_empty() {
        crate::infer::all_outputs(config, true)
    } else {
        request
            .outputs
            .into_iter()
            .map(|out| {
                let index = output_index(config, &out.name)?;
                let classification = output_parameters(
                    &out.name,
                    out.parameters.get("classification").map(uint_param),
                    out.parameters.keys(),
                    &["classification", "binary_data"],
                )?;
                Ok(OutputRequest {
                    index,
                    binary: true,
                    classification,
                })
            })
            .collect::<Result<Vec<_>, InferError>>()?
    };
    Ok(InferRequest {
        id: (!request.id.is_empty()).then_some(request.id),
        inputs,
        outputs,
        timeout,
    })
}

fn uint_param(p: &InferParameter) -> Option<u64> {
    match p.parameter_choice {
        Some(ParameterChoice::Int64Param(v)) => u64::try_from(v).ok(),
        Some(ParameterChoice::Uint64Param(v)) => Some(v),
        _ => None,
    }
}

fn decode_input(
    config: &ModelConfig,
    index: usize,
    input: InferInputTensor,
    raw: Option<Vec<u8>>,
) -> Result<Tensor, InferError> {
    let spec = &config.inputs[index];
    let name = &spec.name;
    let dtype: DataType = input
        .datatype
        .parse()
        .map_err(|e| InferError::invalid(format!("input '{name}': {e}")))?;
    accepts_dtype(spec, dtype)?;
    let shape = input
        .shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                InferError::invalid(format!(
                    "input '{name}': shape {:?} has a negative dimension",
                    input.shape
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(bytes) = raw {
        if input.contents.is_some() {
            return Err(InferError::invalid(format!(
                "input '{name}' has both typed contents and raw_input_contents; send one"
            )));
        }
        return Tensor::from_le_bytes(dtype, shape, &bytes)
            .map_err(|e| InferError::invalid(format!("input '{name}' (raw_input_contents): {e}")));
    }
    let contents = input.contents.ok_or_else(|| {
        InferError::invalid(format!(
            "input '{name}' has no contents and the request has no raw_input_contents"
        ))
    })?;
    let data = typed_contents(dtype, contents, name)?;
    let expected = element_count(&shape);
    if data.len() != expected {
        return Err(InferError::invalid(format!(
            "input '{name}': shape {shape:?} needs {expected} elements but contents hold {}",
            data.len()
        )));
    }
    Tensor::new(shape, data).map_err(|e| InferError::invalid(format!("input '{name}': {e}")))
}

/// Takes the contents list that belongs to `dtype`, narrowing integers with a range check.
fn typed_contents(
    dtype: DataType,
    c: InferTensorContents,
    name: &str,
) -> Result<TensorData, InferError> {
    fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
        v: Vec<S>,
        name: &str,
        ty: &str,
    ) -> Result<Vec<T>, InferError> {
        v.into_iter()
            .enumerate()
            .map(|(i, x)| {
                T::try_from(x).map_err(|_| {
                    InferError::invalid(format!(
                        "input '{name}': element {i} ({x}) is out of range for {ty}"
                    ))
                })
            })
            .collect()
    }
    Ok(match dtype {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::U8 => TensorData::U8(narrow(c.uint_contents, name, "UINT8")?),
        DataType::I8 => TensorData::I8(narrow(c.int_contents, name, "INT8")?),
        DataType::I16 => TensorData::I16(narrow(c.int_contents, name, "INT16")?),
        DataType::I32 => TensorData::I32(c.int_contents),
        DataType::I64 => TensorData::I64(c.int64_contents),
        DataType::F32 => TensorData::F32(c.fp32_contents),
        DataType::F64 => TensorData::F64(c.fp64_contents),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents),
    })
}

/// Builds the response: raw contents for every output (what Triton's clients expect back).
pub fn encode_response(
    config: &ModelConfig,
    version: u64,
    id: Option<String>,
    answer: InferAnswer,
) -> ModelInferResponse {
    let mut outputs = Vec::with_capacity(answer.outputs.len());
    let mut raw = Vec::with_capacity(answer.outputs.len());
    for out in answer.outputs {
        let mut bytes = Vec::with_capacity(out.tensor.le_byte_len());
        out.tensor.write_le_bytes(&mut bytes);
        outputs.push(InferOutputTensor {
            name: out.name,
            datatype: out.tensor.dtype().name().to_string(),
            shape: out.tensor.shape.iter().map(|&d| d as i64).collect(),
            parameters: HashMap::new(),
            contents: None,
        });
        raw.push(bytes);
    }
    ModelInferResponse {
        model_name: config.name.clone(),
        model_version: version.to_string(),
        id: id.unwrap_or_default(),
        parameters: HashMap::new(),
        outputs,
        raw_output_contents: raw,
    }
}

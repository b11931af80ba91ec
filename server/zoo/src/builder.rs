//! A small ONNX graph builder: layers in, a [`ModelProto`] out, counting as it goes.
//!
//! Each layer method adds its nodes and weights, returns the new value with its per-image shape
//! (no batch dimension) so the next layer can size its weights, and adds its parameters and
//! multiply-adds to the running totals. Convolutions work in NCHW, as ONNX does; a value's shape
//! is whatever the previous operator produced, so NHWC inputs go through [`GraphBuilder::transpose`]
//! first. Weights are He-normal (fan-in based) from a seeded [`NormalRng`], so a seed fixes the
//! whole file.

use crate::onnx::{
    self, AttributeProto, AttributeType, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use crate::rng::NormalRng;

/// The symbolic batch dimension of every graph input and output.
pub const BATCH_DIM: &str = "batch";

/// A value in the graph: its name and its shape for one image (the batch dimension left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// Name in the ONNX graph.
    pub name: String,
    /// Per-image shape; NCHW values are `[channels, height, width]`.
    pub shape: Vec<usize>,
}

/// TensorFlow's padding modes, which the zoo's models were defined with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// No padding; windows that do not fit are dropped.
    Valid,
    /// Output size `ceil(input / stride)`; TF puts the odd padding element after, not before.
    Same,
}

impl Padding {
    /// Output size and (before, after) padding along one axis.
    fn along(self, input: usize, kernel: usize, stride: usize) -> (usize, [usize; 2]) {
        match self {
            Padding::Valid => {
                assert!(
                    input >= kernel,
                    "kernel {kernel} is larger than input {input}"
                );
                ((input - kernel) / stride + 1, [0, 0])
            }
            Padding::Same => {
                let out = input.div_ceil(stride);
                let total = ((out - 1) * stride + kernel).saturating_sub(input);
                (out, [total / 2, total - total / 2])
            }
        }
    }

    /// Output height and width, and ONNX `pads` (`[top, left, bottom, right]`).
    fn window(self, hw: [usize; 2], kernel: [usize; 2], stride: usize) -> ([usize; 2], Vec<i64>) {
        let (h, [top, bottom]) = self.along(hw[0], kernel[0], stride);
        let (w, [left, right]) = self.along(hw[1], kernel[1], stride);
        let pads = [top, left, bottom, right].map(|p| p as i64).to_vec();
        ([h, w], pads)
    }
}

/// Builds one graph; see the module docs.
pub struct GraphBuilder {
    rng: NormalRng,
    bias: f32,
    conv_gain: f32,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    parameters: u64,
    multiply_adds: u64,
}

/// What [`GraphBuilder::finish`] returns.
pub struct Finished {
    /// The model, ready to encode.
    pub model: ModelProto,
    /// Trainable parameters (weights and biases).
    pub parameters: u64,
    /// Multiply-adds of one image through the convolutions and dense layers.
    pub multiply_adds: u64,
}

impl GraphBuilder {
    /// A builder whose weights come from `seed`, whose biases all equal `bias`, and whose
    /// convolution weights are He-normal times `conv_gain`.
    pub fn new(seed: u64, bias: f32, conv_gain: f32) -> GraphBuilder {
        GraphBuilder {
            rng: NormalRng::new(seed),
            bias,
            conv_gain,
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            parameters: 0,
            multiply_adds: 0,
        }
    }

    /// Declares an FP32 graph input of per-image `shape`, batched along a symbolic first axis.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> Value {
        self.inputs.push(value_info(name, shape));
        Value {
            name: name.to_string(),
            shape: shape.to_vec(),
        }
    }

    /// `Transpose` with a permutation of the batched axes (`perm[0]` must be 0).
    pub fn transpose(&mut self, name: &str, x: &Value, perm: &[usize]) -> Value {
        assert_eq!(
            perm.len(),
            x.shape.len() + 1,
            "{name}: perm has the wrong rank"
        );
        assert_eq!(perm[0], 0, "{name}: the batch axis stays first");
        let shape = perm[1..].iter().map(|&p| x.shape[p - 1]).collect();
        let perm = perm.iter().map(|&p| p as i64).collect();
        self.node("Transpose", name, &[&x.name], vec![ints("perm", perm)]);
        out(name, shape)
    }

    /// `Conv` plus bias (batch norm folded in), no activation; `kernel` is `[height, width]`.
    pub fn conv(
        &mut self,
        name: &str,
        x: &Value,
        filters: usize,
        kernel: [usize; 2],
        stride: usize,
        padding: Padding,
    ) -> Value {
        let [channels, h, w] = chw(name, x);
        let ([oh, ow], pads) = padding.window([h, w], kernel, stride);
        let fan_in = channels * kernel[0] * kernel[1];
        let weights = self.he_normal(
            &format!("{name}/weights"),
            &[filters, channels, kernel[0], kernel[1]],
            fan_in,
            self.conv_gain,
        );
        let bias = self.constant(&format!("{name}/bias"), &[filters], self.bias);
        self.parameters += (fan_in * filters + filters) as u64;
        self.multiply_adds += (oh * ow * filters * fan_in) as u64;
        let attrs = vec![
            ints("kernel_shape", kernel.map(|k| k as i64).to_vec()),
            ints("strides", vec![stride as i64; 2]),
            ints("pads", pads),
        ];
        self.node("Conv", name, &[&x.name, &weights, &bias], attrs);
        out(name, vec![filters, oh, ow])
    }

    /// [`conv`](Self::conv) followed by ReLU, the zoo's usual convolution block.
    pub fn conv_relu(
        &mut self,
        name: &str,
        x: &Value,
        filters: usize,
        kernel: [usize; 2],
        stride: usize,
        padding: Padding,
    ) -> Value {
        let conv = self.conv(&format!("{name}/conv"), x, filters, kernel, stride, padding);
        self.relu(name, &conv)
    }

    /// `MaxPool` over a square window.
    pub fn max_pool(
        &mut self,
        name: &str,
        x: &Value,
        size: usize,
        stride: usize,
        padding: Padding,
    ) -> Value {
        self.pool("MaxPool", name, x, size, stride, padding)
    }

    /// `AveragePool` over a square window; padding is left out of the average, as in TF.
    pub fn avg_pool(
        &mut self,
        name: &str,
        x: &Value,
        size: usize,
        stride: usize,
        padding: Padding,
    ) -> Value {
        self.pool("AveragePool", name, x, size, stride, padding)
    }

    fn pool(
        &mut self,
        op: &str,
        name: &str,
        x: &Value,
        size: usize,
        stride: usize,
        padding: Padding,
    ) -> Value {
        let [channels, h, w] = chw(name, x);
        let ([oh, ow], pads) = padding.window([h, w], [size, size], stride);
        let attrs = vec![
            ints("kernel_shape", vec![size as i64; 2]),
            ints("strides", vec![stride as i64; 2]),
            ints("pads", pads),
        ];
        self.node(op, name, &[&x.name], attrs);
        out(name, vec![channels, oh, ow])
    }

    /// Local response normalisation across `size` channels, with ONNX `LRN`'s meaning
    /// (`x / (bias + alpha / size * sum of x^2 over the window) ^ beta`), written with plain
    /// operators rather than the `LRN` operator.
    ///
    /// Why: ONNX Runtime's CPU provider lays convolutions out in its blocked NCHWc format, which
    /// its `LRN` kernel does not read, so every `LRN` costs a reorder out and back plus a slow
    /// scalar kernel: half of cifar10's time. The window sum is a 1x1 convolution with a fixed
    /// 0/1 band matrix (scaled by `alpha / size`, with `bias` as its bias), and `^ 0.75` is a
    /// square root times a fourth root; both stay in the blocked layout. The band is a
    /// constant, not a trainable parameter, so it does not count as one.
    pub fn lrn(
        &mut self,
        name: &str,
        x: &Value,
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
    ) -> Value {
        let [channels, _, _] = chw(name, x);
        // ONNX's window around channel c: floor((size-1)/2) before, ceil((size-1)/2) after.
        let (before, after) = ((size - 1) / 2, size / 2);
        let scale = alpha / size as f32;
        let mut band = Vec::with_capacity(channels * channels * 4);
        for out in 0..channels {
            for input in 0..channels {
                let inside = input + before >= out && input <= out + after;
                band.extend_from_slice(&(if inside { scale } else { 0.0 }).to_le_bytes());
            }
        }
        let square = format!("{name}/square");
        self.node("Mul", &square, &[&x.name, &x.name], Vec::new());
        let band = self.initializer(&format!("{name}/band"), &[channels, channels, 1, 1], band);
        let bias = self.constant(&format!("{name}/bias"), &[channels], bias);
        let base = format!("{name}/base");
        self.node("Conv", &base, &[&square, &band, &bias], Vec::new());
        let denominator = format!("{name}/denominator");
        if beta == 0.75 {
            let (root, fourth) = (format!("{name}/sqrt"), format!("{name}/fourth_root"));
            self.node("Sqrt", &root, &[&base], Vec::new());
            self.node("Sqrt", &fourth, &[&root], Vec::new());
            self.node("Mul", &denominator, &[&root, &fourth], Vec::new());
        } else {
            let exponent =
                self.initializer(&format!("{name}/beta"), &[], beta.to_le_bytes().to_vec());
            self.node("Pow", &denominator, &[&base, &exponent], Vec::new());
        }
        self.node("Div", name, &[&x.name, &denominator], Vec::new());
        out(name, x.shape.clone())
    }

    /// `Concat` along channels.
    pub fn concat(&mut self, name: &str, parts: &[&Value]) -> Value {
        let mut shape = parts[0].shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        for p in parts {
            assert_eq!(p.shape[1..], shape[1..], "{name}: {} does not fit", p.name);
        }
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        self.node("Concat", name, &names, vec![int("axis", 1)]);
        out(name, shape)
    }

    /// `GlobalAveragePool`: `[c, h, w]` to `[c, 1, 1]`.
    pub fn global_avg_pool(&mut self, name: &str, x: &Value) -> Value {
        let [channels, _, _] = chw(name, x);
        self.node("GlobalAveragePool", name, &[&x.name], Vec::new());
        out(name, vec![channels, 1, 1])
    }

    /// `Flatten` everything after the batch axis.
    pub fn flatten(&mut self, name: &str, x: &Value) -> Value {
        self.node("Flatten", name, &[&x.name], vec![int("axis", 1)]);
        out(name, vec![x.shape.iter().product()])
    }

    /// Fully connected layer (`Gemm`) with weights stored `[inputs, units]`, TF's layout.
    pub fn dense(&mut self, name: &str, x: &Value, units: usize, gain: f32) -> Value {
        assert_eq!(
            x.shape.len(),
            1,
            "{name}: dense takes a flat input, not {:?}",
            x.shape
        );
        let fan_in = x.shape[0];
        let weights = self.he_normal(&format!("{name}/weights"), &[fan_in, units], fan_in, gain);
        let bias = self.constant(&format!("{name}/bias"), &[units], self.bias);
        self.parameters += (fan_in * units + units) as u64;
        self.multiply_adds += (fan_in * units) as u64;
        self.node("Gemm", name, &[&x.name, &weights, &bias], Vec::new());
        out(name, vec![units])
    }

    /// `Relu`.
    pub fn relu(&mut self, name: &str, x: &Value) -> Value {
        self.node("Relu", name, &[&x.name], Vec::new());
        out(name, x.shape.clone())
    }

    /// `Softmax` over the last axis of a flat value.
    pub fn softmax(&mut self, name: &str, x: &Value) -> Value {
        self.node("Softmax", name, &[&x.name], vec![int("axis", -1)]);
        out(name, x.shape.clone())
    }

    /// The finished model with `outputs` as its graph outputs.
    pub fn finish(self, graph_name: &str, doc: &str, outputs: &[&Value]) -> Finished {
        let graph = GraphProto {
            node: self.nodes,
            name: Some(graph_name.to_string()),
            initializer: self.initializers,
            input: self.inputs,
            output: outputs
                .iter()
                .map(|v| value_info(&v.name, &v.shape))
                .collect(),
            ..GraphProto::default()
        };
        let model = ModelProto {
            ir_version: Some(onnx::IR_VERSION),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(onnx::OPSET_VERSION),
            }],
            producer_name: Some("spindle-zoo".to_string()),
            producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            model_version: Some(1),
            doc_string: Some(doc.to_string()),
            graph: Some(graph),
            ..ModelProto::default()
        };
        Finished {
            model,
            parameters: self.parameters,
            multiply_adds: self.multiply_adds,
        }
    }

    /// He-normal weights: std `gain * sqrt(2 / fan_in)`, which keeps the mean square of a ReLU
    /// network's activations level from layer to layer when `gain` is 1.
    fn he_normal(&mut self, name: &str, dims: &[usize], fan_in: usize, gain: f32) -> String {
        let std = f64::from(gain) * (2.0 / fan_in as f64).sqrt();
        let count: usize = dims.iter().product();
        let mut raw = Vec::with_capacity(count * 4);
        for _ in 0..count {
            raw.extend_from_slice(&((self.rng.next_normal() * std) as f32).to_le_bytes());
        }
        self.initializer(name, dims, raw)
    }

    fn constant(&mut self, name: &str, dims: &[usize], value: f32) -> String {
        let count: usize = dims.iter().product();
        self.initializer(name, dims, value.to_le_bytes().repeat(count))
    }

    fn initializer(&mut self, name: &str, dims: &[usize], raw: Vec<u8>) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(onnx::DataType::Float as i32),
            name: Some(name.to_string()),
            raw_data: Some(raw),
            ..TensorProto::default()
        });
        name.to_string()
    }

    /// One node whose single output (and node name) is `name`.
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.to_string()],
            name: Some(name.to_string()),
            op_type: Some(op.to_string()),
            attribute,
            ..NodeProto::default()
        });
    }
}

fn out(name: &str, shape: Vec<usize>) -> Value {
    Value {
        name: name.to_string(),
        shape,
    }
}

fn chw(name: &str, x: &Value) -> [usize; 3] {
    match x.shape[..] {
        [c, h, w] => [c, h, w],
        _ => panic!(
            "{name}: expected an NCHW value, got {} with shape {:?}",
            x.name, x.shape
        ),
    }
}

fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let batch = Dimension {
        dim_param: Some(BATCH_DIM.to_string()),
        ..Dimension::default()
    };
    let rest = shape.iter().map(|&d| Dimension {
        dim_value: Some(d as i64),
        ..Dimension::default()
    });
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: Some(onnx::DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: std::iter::once(batch).chain(rest).collect(),
                }),
            }),
            denotation: None,
        }),
        doc_string: None,
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(i),
        ..AttributeProto::default()
    }
}

fn ints(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Ints as i32),
        ints,
        ..AttributeProto::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::*;

    fn float(name: &str, f: f32) -> AttributeProto {
        AttributeProto {
            name: Some(name.to_string()),
            r#type: Some(AttributeType::Float as i32),
            f: Some(f),
            ..AttributeProto::default()
        }
    }

    /// The operator-level LRN against ONNX's own `LRN` operator on the same input, in tract.
    #[test]
    fn lrn_matches_the_onnx_operator() {
        for (beta, channels) in [(0.75, 64), (0.5, 7)] {
            let mut g = GraphBuilder::new(3, 0.0, 1.0);
            let x = g.input("x", &[channels, 3, 2]);
            let ours = g.lrn("ours", &x, 9, 0.5, beta, 2.0);
            let attrs = vec![
                int("size", 9),
                float("alpha", 0.5),
                float("beta", beta),
                float("bias", 2.0),
            ];
            g.node("LRN", "reference", &["x"], attrs);
            let reference = out("reference", x.shape.clone());
            let finished = g.finish("lrn", "test", &[&ours, &reference]);
            let mut bytes = Vec::new();
            prost::Message::encode(&finished.model, &mut bytes).unwrap();
            let plan = tract_onnx::onnx()
                .model_for_read(&mut bytes.as_slice())
                .unwrap()
                .with_input_fact(0, f32::fact([2, channels, 3, 2]).into())
                .unwrap()
                .into_optimized()
                .unwrap()
                .into_runnable()
                .unwrap();
            // Large and small values, so both the bias and the window sum matter.
            let input: Vec<f32> = (0..2 * channels * 6)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let input = Tensor::from_shape(&[2, channels, 3, 2], &input).unwrap();
            let outputs = plan.run(tvec!(input.into())).unwrap();
            let (ours, reference) = (
                outputs[0].to_plain_array_view::<f32>().unwrap(),
                outputs[1].to_plain_array_view::<f32>().unwrap(),
            );
            let diff = ours
                .iter()
                .zip(reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(diff < 1e-5, "beta {beta}: max abs diff {diff}");
        }
    }

    #[test]
    fn same_padding_puts_the_odd_element_after() {
        // TF: 24 -> 12 with a 3x3/2 window pads one row and column at the bottom and right.
        assert_eq!(
            Padding::Same.window([24, 24], [3, 3], 2),
            ([12, 12], vec![0, 0, 1, 1])
        );
        assert_eq!(
            Padding::Same.window([17, 17], [1, 7], 1),
            ([17, 17], vec![0, 3, 0, 3])
        );
        assert_eq!(
            Padding::Valid.window([299, 299], [3, 3], 2),
            ([149, 149], vec![0; 4])
        );
    }
}

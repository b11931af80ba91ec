//! KServe v2 datatypes with a fixed element size: their names, sizes, how a synthetic value is
//! drawn for each, and how a little-endian element reads back as JSON.

use anyhow::bail;
use serde_json::Value;

/// A KServe v2 datatype with a fixed element size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    /// BOOL, one byte (0 or 1).
    Bool,
    /// UINT8.
    U8,
    /// UINT16.
    U16,
    /// UINT32.
    U32,
    /// UINT64.
    U64,
    /// INT8.
    I8,
    /// INT16.
    I16,
    /// INT32.
    I32,
    /// INT64.
    I64,
    /// FP16 (IEEE half).
    F16,
    /// BF16 (bfloat16).
    Bf16,
    /// FP32.
    F32,
    /// FP64.
    F64,
}

impl ElementType {
    /// Parses a v2 datatype name; BYTES and unknown names are errors naming the input.
    pub fn parse(name: &str, input: &str) -> anyhow::Result<Self> {
        Ok(match name {
            "BOOL" => ElementType::Bool,
            "UINT8" => ElementType::U8,
            "UINT16" => ElementType::U16,
            "UINT32" => ElementType::U32,
            "UINT64" => ElementType::U64,
            "INT8" => ElementType::I8,
            "INT16" => ElementType::I16,
            "INT32" => ElementType::I32,
            "INT64" => ElementType::I64,
            "FP16" => ElementType::F16,
            "BF16" => ElementType::Bf16,
            "FP32" => ElementType::F32,
            "FP64" => ElementType::F64,
            "BYTES" => bail!(
                "input '{input}' is BYTES, which needs real samples; synthetic data is not supported for it yet"
            ),
            other => bail!(
                "input '{input}' has datatype {other}, which the load generator does not know"
            ),
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElementType::Bool | ElementType::U8 | ElementType::I8 => 1,
            ElementType::U16 | ElementType::I16 | ElementType::F16 | ElementType::Bf16 => 2,
            ElementType::U32 | ElementType::I32 | ElementType::F32 => 4,
            ElementType::U64 | ElementType::I64 | ElementType::F64 => 8,
        }
    }

    /// Appends one element derived from `random`: floats in [0, 1) ([0.5, 1) for the 16-bit
    /// ones), integers in 0..=100 (safe as indices for most models), booleans 0 or 1.
    pub(crate) fn push(self, random: u64, out: &mut Vec<u8>) {
        let small = random % 101;
        match self {
            ElementType::Bool => out.push((random & 1) as u8),
            ElementType::U8 | ElementType::I8 => out.push(small as u8),
            ElementType::U16 | ElementType::I16 => {
                out.extend_from_slice(&(small as u16).to_le_bytes())
            }
            ElementType::U32 | ElementType::I32 => {
                out.extend_from_slice(&(small as u32).to_le_bytes())
            }
            ElementType::U64 | ElementType::I64 => out.extend_from_slice(&small.to_le_bytes()),
            // Exponent fixed at 2^-1, random mantissa: always a normal number in [0.5, 1).
            ElementType::F16 => {
                out.extend_from_slice(&(0x3800 | (random & 0x3ff) as u16).to_le_bytes())
            }
            ElementType::Bf16 => {
                out.extend_from_slice(&(0x3f00 | (random & 0x7f) as u16).to_le_bytes())
            }
            ElementType::F32 => {
                out.extend_from_slice(&((random >> 40) as f32 / (1u64 << 24) as f32).to_le_bytes())
            }
            ElementType::F64 => {
                out.extend_from_slice(&((random >> 11) as f64 / (1u64 << 53) as f64).to_le_bytes())
            }
        }
    }

    /// Reads one little-endian element back as a JSON value.
    pub(crate) fn to_json(self, bytes: &[u8]) -> Value {
        let mut word = [0u8; 8];
        word[..bytes.len()].copy_from_slice(bytes);
        let bits = u64::from_le_bytes(word);
        match self {
            ElementType::Bool => Value::Bool(bits != 0),
            ElementType::U8 | ElementType::U16 | ElementType::U32 | ElementType::U64 => bits.into(),
            ElementType::I8 => (bits as u8 as i8).into(),
            ElementType::I16 => (bits as u16 as i16).into(),
            ElementType::I32 => (bits as u32 as i32).into(),
            ElementType::I64 => (bits as i64).into(),
            ElementType::F16 => f64::from(half_to_f32(bits as u16)).into(),
            ElementType::Bf16 => f64::from(f32::from_bits((bits as u32) << 16)).into(),
            ElementType::F32 => f64::from(f32::from_bits(bits as u32)).into(),
            ElementType::F64 => f64::from_bits(bits).into(),
        }
    }
}

/// Widens an IEEE half to f32 (normal numbers, zeros and subnormals; no NaN is ever generated).
fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((h >> 10) & 0x1f);
    let mantissa = f32::from(h & 0x3ff);
    match exponent {
        0 => sign * mantissa * 2f32.powi(-24),
        31 => sign * f32::INFINITY,
        e => sign * (1.0 + mantissa / 1024.0) * 2f32.powi(e - 15),
    }
}

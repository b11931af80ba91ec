//! KServe v2 datatypes: their names, sizes, how a synthetic value is drawn for each, how a
//! little-endian element reads back as JSON, and how a JSON value is encoded. BYTES elements
//! (variable length) only come from real samples ([`crate::samples`]).

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
    /// BYTES: each element a 4-byte little-endian length, then that many bytes. Never generated,
    /// only read from samples.
    Bytes,
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
                "input '{input}' is BYTES, which needs real samples: give them with --input-data (images, Criteo rows or a JSON file of tensors)"
            ),
            other => bail!(
                "input '{input}' has datatype {other}, which the load generator does not know"
            ),
        })
    }

    /// Bytes per element (for BYTES, the size of each element's length prefix).
    pub fn size(self) -> usize {
        match self {
            ElementType::Bytes => 4,
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
            ElementType::Bytes => unreachable!("BYTES inputs come from samples, never generated"),
        }
    }

    /// Appends one element given as JSON (a number, a boolean for BOOL, a string for BYTES);
    /// the error says why the value does not fit.
    pub(crate) fn push_json(self, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
        fn int<T: TryFrom<i64> + TryFrom<u64>>(value: &Value) -> Result<T, String> {
            let fits = "out of range".to_string();
            match (value.as_i64(), value.as_u64()) {
                (_, Some(u)) => T::try_from(u).map_err(|_| fits),
                (Some(i), None) => T::try_from(i).map_err(|_| fits),
                _ => Err("not a whole number".into()),
            }
        }
        let float = || value.as_f64().ok_or_else(|| "not a number".to_string());
        match self {
            ElementType::Bool => out.push(u8::from(
                value
                    .as_bool()
                    .ok_or_else(|| "not true or false".to_string())?,
            )),
            ElementType::U8 => out.push(int::<u8>(value)?),
            ElementType::I8 => out.extend_from_slice(&int::<i8>(value)?.to_le_bytes()),
            ElementType::U16 => out.extend_from_slice(&int::<u16>(value)?.to_le_bytes()),
            ElementType::I16 => out.extend_from_slice(&int::<i16>(value)?.to_le_bytes()),
            ElementType::U32 => out.extend_from_slice(&int::<u32>(value)?.to_le_bytes()),
            ElementType::I32 => out.extend_from_slice(&int::<i32>(value)?.to_le_bytes()),
            ElementType::U64 => out.extend_from_slice(&int::<u64>(value)?.to_le_bytes()),
            ElementType::I64 => out.extend_from_slice(&int::<i64>(value)?.to_le_bytes()),
            ElementType::F16 => out.extend_from_slice(&f32_to_half(float()? as f32).to_le_bytes()),
            ElementType::Bf16 => {
                out.extend_from_slice(&(((float()? as f32).to_bits() >> 16) as u16).to_le_bytes())
            }
            ElementType::F32 => out.extend_from_slice(&(float()? as f32).to_le_bytes()),
            ElementType::F64 => out.extend_from_slice(&float()?.to_le_bytes()),
            ElementType::Bytes => {
                let text = value.as_str().ok_or_else(|| "not a string".to_string())?;
                let len = u32::try_from(text.len()).map_err(|_| "longer than 4 GiB".to_string())?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
        Ok(())
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
            ElementType::Bytes => {
                unreachable!("BYTES elements vary in length; see InputTensor::json_data")
            }
        }
    }
}

/// The elements of a BYTES tensor's raw form (each a 4-byte little-endian length, then bytes).
pub fn bytes_elements(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = (u32::from_le_bytes(*len) as usize).min(tail.len());
        let (element, tail) = tail.split_at(len);
        rest = tail;
        Some(element)
    })
}

/// Narrows an f32 to an IEEE half, rounding toward zero (NaN stays NaN, overflow becomes
/// infinity, values below the smallest half subnormal become zero).
fn f32_to_half(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x7f_ffff;
    if exponent == 0xff {
        return sign | 0x7c00 | if mantissa != 0 { 0x200 } else { 0 };
    }
    let e = exponent - 127 + 15;
    if e >= 31 {
        sign | 0x7c00
    } else if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = (mantissa | 0x80_0000) >> (14 - e);
        sign | m as u16
    } else {
        sign | ((e as u16) << 10) | (mantissa >> 13) as u16
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

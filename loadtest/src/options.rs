//! The plain values a run is set up with: the wire protocol, how open-loop sends are spaced,
//! fixed shapes for variable inputs, and the load of one level. They live apart from the flags
//! ([`crate::args`]) so that the modules acting on them need neither clap's struct nor each
//! other: this module imports nothing from the crate.

use clap::ValueEnum;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// How inference requests are encoded on the wire.
#[derive(ValueEnum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// KServe v2 binary tensor extension: a JSON header, then raw little-endian tensor bytes.
    HttpBinary,
    /// Plain KServe v2 JSON with `data` arrays.
    HttpJson,
    /// KServe v2 over gRPC with raw contents (URLs are the gRPC addresses).
    Grpc,
    /// TensorFlow Serving REST: `{"instances": [...]}` to `/v1/models/{m}:predict`.
    TfRest,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::HttpBinary => "http-binary",
            Protocol::HttpJson => "http-json",
            Protocol::Grpc => "grpc",
            Protocol::TfRest => "tf-rest",
        })
    }
}

/// How open-loop send times are spaced.
#[derive(ValueEnum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Arrivals {
    /// Evenly: one request every 1/rate seconds.
    Constant,
    /// A Poisson process: exponentially distributed gaps with mean 1/rate (bursts, as real
    /// independent clients make).
    Poisson,
}

/// Fixed dimensions for one input, without its batch dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeOverride {
    /// The input's name.
    pub name: String,
    /// Its dimensions, batch dimension excluded.
    pub dims: Vec<usize>,
}

impl FromStr for ShapeOverride {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || format!("'{text}' is not a shape: use NAME:D1,D2,.. such as tokens:128");
        let (name, dims) = text.rsplit_once(':').ok_or_else(usage)?;
        if name.is_empty() {
            return Err(usage());
        }
        let dims = if dims.trim().is_empty() {
            Vec::new()
        } else {
            dims.split(',')
                .map(|d| d.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|_| usage())?
        };
        Ok(ShapeOverride {
            name: name.to_string(),
            dims,
        })
    }
}

/// How one level loads the server.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Load {
    /// Closed loop: this many connections, each sending its next request when the last returns.
    Concurrency(usize),
    /// Open loop: requests scheduled at this rate, whether or not earlier ones have returned.
    Rate {
        /// Requests per second scheduled.
        rps: f64,
        /// How send times are spaced.
        arrivals: Arrivals,
        /// Requests in flight at most; a request due while all are busy waits and is late.
        max_in_flight: usize,
    },
}

impl Load {
    /// "concurrency 4" or "rate 100/s", for progress lines.
    pub fn label(&self) -> String {
        match self {
            Load::Concurrency(c) => format!("concurrency {c}"),
            Load::Rate { rps, .. } => format!("rate {}/s", format_rate(*rps)),
        }
    }

    /// The level's position on a chart's x axis (connections, or requests per second).
    pub fn x(&self) -> f64 {
        match self {
            Load::Concurrency(c) => *c as f64,
            Load::Rate { rps, .. } => *rps,
        }
    }
}

/// A rate without a pointless fraction: 100, 12.5.
pub fn format_rate(rps: f64) -> String {
    if rps.fract() == 0.0 {
        format!("{rps:.0}")
    } else {
        format!("{rps}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse() {
        let s: ShapeOverride = "tokens:128".parse().unwrap();
        assert_eq!(
            s,
            ShapeOverride {
                name: "tokens".into(),
                dims: vec![128]
            }
        );
        let s: ShapeOverride = "image:224,224,3".parse().unwrap();
        assert_eq!(s.dims, vec![224, 224, 3]);
        assert!("image".parse::<ShapeOverride>().is_err());
        assert!("image:a,b".parse::<ShapeOverride>().is_err());
    }
}

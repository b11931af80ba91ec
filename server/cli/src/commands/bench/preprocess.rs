//! `spindle bench preprocess`: what decoding and preparing one encoded image costs, per
//! preprocessing kind, on this machine (the server runs exactly this code on its blocking pool).

use clap::Args;
use image::ImageEncoder;
use spindle_core::DataType;
use spindle_core::config::{Preprocess, TensorSpec};
use spindle_core::tensor::{Tensor, TensorData};
use spindle_server::preprocess::{DEFAULT_MAX_IMAGE_PIXELS, prepare_inputs};
use std::time::{Duration, Instant};

/// `spindle bench preprocess`.
#[derive(Args, Debug)]
pub struct PreprocessBenchArgs {
    /// How long to time each case.
    #[arg(long, default_value = "2s", value_parser = spindle_core::config::parse_duration)]
    pub duration: Duration,
}

/// A photo-like JPEG: smooth gradients plus texture, so the decoder does real work.
fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let t = ((x * 7 + y * 13) % 31) as u8;
            raw.extend_from_slice(&[
                (x * 255 / width) as u8 ^ t,
                (y * 255 / height) as u8,
                ((x + y) % 256) as u8,
            ]);
        }
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(&raw, width, height, image::ExtendedColorType::Rgb8)
        .expect("encoding an in-memory JPEG");
    out
}

/// Times each case and prints microseconds per image; returns (case, µs per image).
pub fn run(args: &PreprocessBenchArgs) -> anyhow::Result<Vec<(String, f64)>> {
    let cases = [
        (
            "cifar10_image, 32x32 JPEG",
            Preprocess::Cifar10Image,
            24,
            (32, 32),
        ),
        (
            "inception_image, 500x375 JPEG",
            Preprocess::InceptionImage,
            299,
            (500, 375),
        ),
    ];
    println!("{:<34} {:>12} {:>12}", "case", "us/image", "images/s");
    let mut results = Vec::new();
    for (name, pre, side, (w, h)) in cases {
        let spec = TensorSpec {
            name: "images".into(),
            dtype: DataType::F32,
            dims: vec![-1, side, side, 3],
            preprocess: Some(pre),
        };
        let encoded = jpeg(w, h);
        let started = Instant::now();
        let mut images = 0u64;
        while started.elapsed() < args.duration {
            let mut inputs = vec![Tensor::new(
                vec![1],
                TensorData::Bytes(vec![encoded.clone()]),
            )?];
            prepare_inputs(
                std::slice::from_ref(&spec),
                &mut inputs,
                DEFAULT_MAX_IMAGE_PIXELS,
                None,
            )?;
            images += 1;
        }
        let us = started.elapsed().as_secs_f64() * 1e6 / images as f64;
        println!("{name:<34} {us:>12.1} {:>12.0}", 1e6 / us);
        results.push((name.to_string(), us));
    }
    Ok(results)
}

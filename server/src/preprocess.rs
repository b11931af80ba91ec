//! Server-side preprocessing: encoded JPEG/PNG images in, the model's FP32 tensor out, prepared
//! exactly as the model was evaluated in training; raw Criteo TSV rows in, feature ids out,
//! through the version's own `features.toml` (see [`Preprocess`]).
//!
//! Decoding is CPU work measured in milliseconds, so front ends call [`prepare_inputs`] from
//! tokio's blocking pool, never on the async workers that carry other requests' I/O.

use image::{ImageFormat, ImageReader, Limits, RgbImage};
use spindle_core::config::{Preprocess, TensorSpec};
use spindle_core::error::InferError;
use spindle_core::tensor::{Tensor, TensorData};
use spindle_criteo::transform::Transformer;
use std::io::Cursor;

/// Default cap on decoded pixels per image (width x height): far above any camera photo the
/// zoo's models would be sent, far below what a decompression bomb expands to.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 40_000_000;

/// Turns every BYTES tensor sent for a preprocessed input into the input's own tensor, in
/// place. Other inputs are left alone. `features` is the version's row transform, for
/// `criteo_rows` inputs.
pub fn prepare_inputs(
    specs: &[TensorSpec],
    inputs: &mut [Tensor],
    max_pixels: u64,
    features: Option<&Transformer>,
) -> Result<(), InferError> {
    for (spec, tensor) in specs.iter().zip(inputs.iter_mut()) {
        let (Some(pre), TensorData::Bytes(elements)) = (spec.preprocess, &tensor.data) else {
            continue;
        };
        *tensor = match pre {
            Preprocess::Cifar10Image | Preprocess::InceptionImage => {
                decode_images(spec, pre, &tensor.shape, elements, max_pixels)?
            }
            Preprocess::CriteoRows => {
                one_per_row(spec, &tensor.shape, "TSV rows")?;
                let transformer = features.ok_or_else(|| {
                    InferError::new(
                        spindle_core::error::ErrorKind::Internal,
                        format!("input '{}': this version has no features.toml", spec.name),
                    )
                })?;
                transformer
                    .ids_tensor(elements)
                    .map_err(|e| InferError::invalid(format!("input '{}': {e}", spec.name)))?
            }
        };
    }
    Ok(())
}

/// BYTES inputs carry one element per batch row: `[n]` or `[n, 1]`.
fn one_per_row(spec: &TensorSpec, shape: &[usize], what: &str) -> Result<(), InferError> {
    if shape.len() == 1 || (shape.len() == 2 && shape[1] == 1) {
        return Ok(());
    }
    Err(InferError::invalid(format!(
        "input '{}': {what} must be a BYTES tensor of shape [n] or [n, 1] (one per row), got {shape:?}",
        spec.name
    )))
}

/// Whether `inputs` hold anything [`prepare_inputs`] would decode (so callers can skip the hop
/// to the blocking pool for plain tensors).
pub fn needs_preparation(specs: &[TensorSpec], inputs: &[Tensor]) -> bool {
    specs
        .iter()
        .zip(inputs)
        .any(|(spec, t)| spec.preprocess.is_some() && matches!(t.data, TensorData::Bytes(_)))
}

fn decode_images(
    spec: &TensorSpec,
    pre: Preprocess,
    shape: &[usize],
    elements: &[Vec<u8>],
    max_pixels: u64,
) -> Result<Tensor, InferError> {
    let name = &spec.name;
    one_per_row(spec, shape, "encoded images")?;
    let (height, width) = (spec.dims[1] as usize, spec.dims[2] as usize);
    let mut data = Vec::with_capacity(elements.len() * height * width * 3);
    for (i, bytes) in elements.iter().enumerate() {
        let image = decode_one(bytes, max_pixels)
            .map_err(|why| InferError::invalid(format!("input '{name}' element {i}: {why}")))?;
        match pre {
            Preprocess::Cifar10Image => cifar10(&image, height, width, &mut data),
            Preprocess::InceptionImage => inception(&image, height, width, &mut data),
            Preprocess::CriteoRows => unreachable!("rows are not images"),
        }
    }
    Tensor::new(
        vec![elements.len(), height, width, 3],
        TensorData::F32(data),
    )
    .map_err(|e| InferError::invalid(format!("input '{name}': {e}")))
}

/// Decodes one JPEG or PNG to RGB, refusing anything else and anything over the pixel cap
/// before allocating for it.
fn decode_one(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty element; expected an encoded JPEG or PNG image".into());
    }
    let format = image::guess_format(bytes).map_err(|_| {
        format!(
            "not a JPEG or PNG image (starts with {:02x?})",
            &bytes[..bytes.len().min(8)]
        )
    })?;
    if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png) {
        return Err(format!(
            "{format:?} images are not supported; send JPEG or PNG"
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    // RGBA at 4 bytes per pixel is the most a JPEG/PNG decode allocates per pixel here.
    limits.max_alloc = Some(max_pixels.saturating_mul(4));
    reader.limits(limits);
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| format!("corrupt or truncated {format:?}: {e}"))?;
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(format!(
            "image is {w}x{h} = {} pixels, over the server's cap of {max_pixels} (--max-image-pixels)",
            u64::from(w) * u64::from(h)
        ));
    }
    // A JPEG ends with its EOI marker (FF D9; encoders may pad after it). Decoders fill a cut
    // file's missing rows with grey and succeed, so a truncated upload would be scored.
    if format == ImageFormat::Jpeg && !bytes.windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err(format!(
            "truncated JPEG: {} bytes and no end-of-image marker (FF D9); send the whole file",
            bytes.len()
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    // The decode may hold this image at up to 8 bytes per pixel (16-bit RGBA PNGs): allowed for
    // an image under the pixel cap, whose dimensions were checked above.
    let budget = u64::from(w) * u64::from(h) * 8 + (1 << 20);
    limits.max_alloc = Some(budget);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => format!(
            "{w}x{h} {format:?} needs more than {budget} bytes to decode (8 bytes per pixel at most are allowed)"
        ),
        e => format!("corrupt or truncated {format:?}: {e}"),
    })?;
    Ok(image.to_rgb8())
}

/// The CIFAR-10 tutorial's evaluation input: the 32x32 image (resized bilinearly if it is another
/// size), its central `height` x `width` crop, then per-image standardisation
/// `(x - mean) / max(stddev, 1 / sqrt(N))` over all N values, as `tf.image.per_image_standardization`.
fn cifar10(image: &RgbImage, height: usize, width: usize, out: &mut Vec<f32>) {
    let base = if image.dimensions() == (32, 32) {
        to_f32(image)
    } else {
        resize_bilinear(
            &to_f32(image),
            image.height() as usize,
            image.width() as usize,
            32,
            32,
        )
    };
    let (top, left) = (
        (32usize.saturating_sub(height)) / 2,
        (32usize.saturating_sub(width)) / 2,
    );
    let start = out.len();
    for y in 0..height {
        let row = (top + y) * 32 * 3;
        out.extend_from_slice(&base[row + left * 3..row + (left + width) * 3]);
    }
    let values = &mut out[start..];
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let adjusted = var.sqrt().max(1.0 / n.sqrt());
    for v in values {
        *v = ((f64::from(*v) - mean) / adjusted) as f32;
    }
}

/// Inception v3's evaluation input: central crop keeping 87.5 % of each side, bilinear resize to
/// `height` x `width`, values scaled from [0, 255] to [-1, 1].
fn inception(image: &RgbImage, height: usize, width: usize, out: &mut Vec<f32>) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    // tf.image.central_crop: the kept size rounds the removed border down on each side.
    let off_h = ((h as f64 - h as f64 * 0.875) / 2.0) as usize;
    let off_w = ((w as f64 - w as f64 * 0.875) / 2.0) as usize;
    let (crop_h, crop_w) = (h - 2 * off_h, w - 2 * off_w);
    let pixels = to_f32(image);
    let mut cropped = Vec::with_capacity(crop_h * crop_w * 3);
    for y in 0..crop_h {
        let row = (off_h + y) * w * 3;
        cropped.extend_from_slice(&pixels[row + off_w * 3..row + (off_w + crop_w) * 3]);
    }
    let resized = resize_bilinear(&cropped, crop_h, crop_w, height, width);
    out.extend(resized.into_iter().map(|v| (v / 255.0 - 0.5) * 2.0));
}

fn to_f32(image: &RgbImage) -> Vec<f32> {
    image.as_raw().iter().map(|&v| f32::from(v)).collect()
}

/// Bilinear resize of an HWC RGB float image with half-pixel centres (TensorFlow 2's
/// `tf.image.resize(..., 'bilinear')`, antialias off).
fn resize_bilinear(src: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(out_h * out_w * 3);
    let scale_y = h as f32 / out_h as f32;
    let scale_x = w as f32 / out_w as f32;
    let axis = |o: usize, scale: f32, len: usize| {
        let pos = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
        let lo = (pos.floor() as usize).min(len - 1);
        let hi = (lo + 1).min(len - 1);
        (lo, hi, pos - lo as f32)
    };
    for oy in 0..out_h {
        let (y0, y1, fy) = axis(oy, scale_y, h);
        for ox in 0..out_w {
            let (x0, x1, fx) = axis(ox, scale_x, w);
            for c in 0..3 {
                let at = |y: usize, x: usize| src[(y * w + x) * 3 + c];
                let top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * fx;
                let bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * fx;
                out.push(top + (bottom - top) * fy);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, codecs::png::PngEncoder};
    use spindle_core::DataType;

    fn png(w: u32, h: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let mut raw = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                raw.extend_from_slice(&pixel(x, y));
            }
        }
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(&raw, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn spec(pre: Preprocess, side: i64) -> TensorSpec {
        TensorSpec {
            name: "images".into(),
            dtype: DataType::F32,
            dims: vec![-1, side, side, 3],
            preprocess: Some(pre),
        }
    }

    fn bytes_tensor(elements: Vec<Vec<u8>>) -> Tensor {
        Tensor::new(vec![elements.len()], TensorData::Bytes(elements)).unwrap()
    }

    #[test]
    fn cifar10_crops_the_centre_and_standardises() {
        // A gradient: the centre crop starts at column 4, and the result has mean 0, std 1.
        let image = png(32, 32, |x, y| [(x * 8) as u8, (y * 8) as u8, 100]);
        let mut inputs = vec![bytes_tensor(vec![image])];
        prepare_inputs(
            &[spec(Preprocess::Cifar10Image, 24)],
            &mut inputs,
            1 << 20,
            None,
        )
        .unwrap();
        assert_eq!(inputs[0].shape, [1, 24, 24, 3]);
        let TensorData::F32(v) = &inputs[0].data else {
            panic!("FP32 expected")
        };
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let std = (v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        assert!(
            mean.abs() < 1e-5 && (std - 1.0).abs() < 1e-4,
            "{mean} {std}"
        );
        // Standardisation is affine, so ratios of differences survive it. The crop starts at
        // (4, 4): red there is 32 against blue 100, and red grows by 8 per column; a crop at
        // (0, 0) would give (0 - 100) / 8 instead.
        let ratio = (v[0] - v[2]) / (v[3] - v[0]);
        assert!((ratio + 8.5).abs() < 1e-3, "{ratio}");
    }

    #[test]
    fn inception_scales_to_minus_one_one() {
        let white = png(400, 300, |_, _| [255, 255, 255]);
        let black = png(50, 80, |_, _| [0, 0, 0]);
        let mut inputs = vec![bytes_tensor(vec![white, black])];
        prepare_inputs(
            &[spec(Preprocess::InceptionImage, 299)],
            &mut inputs,
            1 << 20,
            None,
        )
        .unwrap();
        assert_eq!(inputs[0].shape, [2, 299, 299, 3]);
        let TensorData::F32(v) = &inputs[0].data else {
            panic!("FP32 expected")
        };
        let per = 299 * 299 * 3;
        assert!(v[..per].iter().all(|&x| (x - 1.0).abs() < 1e-6));
        assert!(v[per..].iter().all(|&x| (x + 1.0).abs() < 1e-6));
    }

    #[test]
    fn bilinear_matches_half_pixel_centres() {
        // 2x1 -> 4x1: TF gives 0, 0.25, 0.75, 1 of the way between the two pixels.
        let src = [0.0, 0.0, 0.0, 100.0, 100.0, 100.0];
        let out = resize_bilinear(&src, 1, 2, 1, 4);
        let reds: Vec<f32> = out.chunks(3).map(|p| p[0]).collect();
        assert_eq!(reds, [0.0, 25.0, 75.0, 100.0]);
    }

    #[test]
    fn bad_images_name_the_element() {
        let good = png(32, 32, |_, _| [1, 2, 3]);
        let s = [spec(Preprocess::Cifar10Image, 24)];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"hello world".to_vec(), "not a JPEG or PNG"),
            (good[..good.len() / 2].to_vec(), "corrupt or truncated"),
            (Vec::new(), "empty element"),
            (b"GIF89a\x01\x00\x01\x00".to_vec(), "not supported"),
        ];
        for (bytes, expected) in cases {
            let mut inputs = vec![bytes_tensor(vec![good.clone(), bytes])];
            let err = prepare_inputs(&s, &mut inputs, 1 << 20, None).unwrap_err();
            assert!(
                err.message.contains("input 'images' element 1") && err.message.contains(expected),
                "{}",
                err.message
            );
        }
        let big = png(2000, 2000, |_, _| [0, 0, 0]);
        let mut inputs = vec![bytes_tensor(vec![big])];
        let err = prepare_inputs(&s, &mut inputs, 1_000_000, None).unwrap_err();
        assert!(err.message.contains("4000000 pixels"), "{}", err.message);
        let mut ragged =
            vec![Tensor::new(vec![1, 2], TensorData::Bytes(vec![good.clone(), good])).unwrap()];
        let err = prepare_inputs(&s, &mut ragged, 1 << 20, None).unwrap_err();
        assert!(err.message.contains("[n] or [n, 1]"), "{}", err.message);
    }

    #[test]
    fn a_truncated_jpeg_is_refused_and_a_whole_one_is_not() {
        let (w, h) = (200u32, 150u32);
        let raw: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .write_image(&raw, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        let s = [spec(Preprocess::Cifar10Image, 24)];
        let mut whole = vec![bytes_tensor(vec![jpeg.clone()])];
        prepare_inputs(&s, &mut whole, 1 << 20, None).unwrap();
        let mut cut = vec![bytes_tensor(vec![jpeg[..jpeg.len() / 3].to_vec()])];
        let err = prepare_inputs(&s, &mut cut, 1 << 20, None).unwrap_err();
        assert!(err.message.contains("truncated JPEG"), "{}", err.message);
    }

    #[test]
    fn a_16_bit_png_under_the_cap_decodes() {
        let (w, h) = (64u32, 48u32);
        let raw: Vec<u8> = (0..w * h * 8).map(|i| (i % 256) as u8).collect();
        let mut png16 = Vec::new();
        PngEncoder::new(&mut png16)
            .write_image(&raw, w, h, image::ExtendedColorType::Rgba16)
            .unwrap();
        let s = [spec(Preprocess::Cifar10Image, 24)];
        let mut inputs = vec![bytes_tensor(vec![png16])];
        // The cap is exactly this image's pixels: 16-bit RGBA must still fit its budget.
        prepare_inputs(&s, &mut inputs, u64::from(w * h), None).unwrap();
        assert_eq!(inputs[0].shape, [1, 24, 24, 3]);
    }
}

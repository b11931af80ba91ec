//! Server-side preprocessing: encoded JPEG/PNG images in, the model's FP32 tensor out, prepared
//! exactly as the model was evaluated in training; raw Criteo TSV rows in, feature ids out,
//! through the version's own `features.toml` (see [`Preprocess`]).
//!
//! Decoding is CPU work measured in milliseconds, so front ends call [`prepare_inputs`] from
//! tokio's blocking pool, never on the async workers that carry other requests' I/O.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};
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
        // Ids sent already transformed: checked against the id space once their shape is the
        // model's ([rows, fields]); any other shape is refused by the shape check that follows.
        if let (Some(Preprocess::CriteoRows), TensorData::I64(ids), Some(transformer)) =
            (spec.preprocess, &tensor.data, features)
        {
            if tensor.shape.len() != 2 || tensor.shape[1] != transformer.fields() {
                continue;
            }
            transformer
                .check_ids(ids)
                .map_err(|e| InferError::invalid(format!("input '{}': {e}", spec.name)))?;
            continue;
        }
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
        .any(|(spec, t)| match (spec.preprocess, &t.data) {
            (Some(_), TensorData::Bytes(_)) => true,
            // Ids sent already transformed are checked against the id space (prepare_inputs).
            (Some(Preprocess::CriteoRows), TensorData::I64(_)) => true,
            _ => false,
        })
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
    SCRATCH.with_borrow_mut(|scratch| {
        for (i, bytes) in elements.iter().enumerate() {
            let at =
                |why: String| InferError::invalid(format!("input '{name}' element {i}: {why}"));
            let image = decode_one(bytes, max_pixels).map_err(at)?;
            match pre {
                Preprocess::Cifar10Image => cifar10(scratch, &image, height, width, &mut data),
                Preprocess::InceptionImage => inception(scratch, &image, height, width, &mut data),
                Preprocess::CriteoRows => unreachable!("rows are not images"),
            }
            .map_err(at)?;
        }
        scratch.trim();
        Ok::<_, InferError>(())
    })?;
    Tensor::new(
        vec![elements.len(), height, width, 3],
        TensorData::F32(data),
    )
    .map_err(|e| InferError::invalid(format!("input '{name}': {e}")))
}

/// What decoding a request's images holds in memory at most, from their headers alone: every
/// image's float tensor (which grows as the images are decoded one after another) plus the
/// largest one image's decoding ([`ImageHeader::decode_bytes`]). Zero when nothing is an
/// image. Images that are not JPEG or PNG, or over `max_pixels`, are refused here already,
/// naming the element.
pub fn decode_cost(
    specs: &[TensorSpec],
    inputs: &[Tensor],
    max_pixels: u64,
) -> Result<DecodeCost, InferError> {
    let mut cost = DecodeCost::default();
    for (spec, tensor) in specs.iter().zip(inputs) {
        let (
            Some(Preprocess::Cifar10Image | Preprocess::InceptionImage),
            TensorData::Bytes(elements),
        ) = (spec.preprocess, &tensor.data)
        else {
            continue;
        };
        let tensor_bytes = (spec.dims[1] as u64) * (spec.dims[2] as u64) * 3 * 4;
        for (i, bytes) in elements.iter().enumerate() {
            let header = ImageHeader::read(bytes, max_pixels).map_err(|why| {
                InferError::invalid(format!("input '{}' element {i}: {why}", spec.name))
            })?;
            cost.images += 1;
            cost.tensors += tensor_bytes;
            let decode = header.decode_bytes();
            if decode > cost.largest_decode {
                cost.largest_decode = decode;
                cost.largest = format!(
                    "input '{}' element {i} ({}x{} {:?})",
                    spec.name, header.width, header.height, header.format
                );
            }
        }
    }
    Ok(cost)
}

/// The memory a request's images take to decode and prepare (see [`decode_cost`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeCost {
    /// Images in the request.
    pub images: usize,
    /// Bytes of the model's float tensors for all of them.
    pub tensors: u64,
    /// Bytes the largest image holds while it is decoded and converted.
    pub largest_decode: u64,
    /// Which element that is, and its declared size, for messages.
    pub largest: String,
}

impl DecodeCost {
    /// The bytes held at most: decoding is one image at a time, so only the largest image's
    /// decode is added to the tensors.
    pub fn total(&self) -> u64 {
        self.tensors + self.largest_decode
    }
}

/// An image's format, size and pixel layout as its header declares them, read without decoding.
#[derive(Debug)]
struct ImageHeader {
    format: ImageFormat,
    width: u32,
    height: u32,
    color: image::ColorType,
}

impl ImageHeader {
    /// Reads and checks the header: JPEG or PNG, not over `max_pixels`, and for JPEG an
    /// end-of-image marker present.
    fn read(bytes: &[u8], max_pixels: u64) -> Result<ImageHeader, String> {
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
        // Metadata chunks read with the header (PNG's iCCP, text) are held to what the image
        // itself may take.
        limits.max_alloc = Some(max_pixels.saturating_mul(4));
        reader.limits(limits);
        let decoder = reader
            .into_decoder()
            .map_err(|e| format!("corrupt or truncated {format:?}: {e}"))?;
        let (width, height) = decoder.dimensions();
        let color = decoder.color_type();
        let pixels = u64::from(width) * u64::from(height);
        if pixels > max_pixels {
            return Err(format!(
                "image is {width}x{height} = {pixels} pixels, over the server's cap of {max_pixels} (--max-image-pixels)"
            ));
        }
        // A JPEG ends with its EOI marker (FF D9; encoders may pad after it). Decoders fill a
        // cut file's missing rows with grey and succeed, so a truncated upload would be scored.
        if format == ImageFormat::Jpeg && !bytes.windows(2).any(|w| w == [0xFF, 0xD9]) {
            return Err(format!(
                "truncated JPEG: {} bytes and no end-of-image marker (FF D9); send the whole file",
                bytes.len()
            ));
        }
        Ok(ImageHeader {
            format,
            width,
            height,
            color,
        })
    }

    /// Bytes this image holds at most while it is decoded and turned into floats, each buffer
    /// counted as if all were alive at once: the decoded pixels in the file's own layout (up
    /// to 8 bytes per pixel for 16-bit RGBA PNGs), a JPEG decoder's coefficients (2 bytes per
    /// sample for progressive files), the RGB8 copy when the file is not RGB8 already, and the
    /// float copy preprocessing resizes from (12 bytes per pixel). A JPEG photo costs 21 bytes
    /// per pixel: a 615x65000 one of 631 bytes, 840 MB.
    fn decode_bytes(&self) -> u64 {
        let pixels = u64::from(self.width) * u64::from(self.height);
        let decoded = u64::from(self.color.bytes_per_pixel());
        let coefficients = match self.format {
            ImageFormat::Jpeg => u64::from(self.color.channel_count()) * 2,
            _ => 0,
        };
        let rgb8 = if self.color == image::ColorType::Rgb8 {
            0
        } else {
            3
        };
        pixels * (decoded + coefficients + rgb8 + 12) + (1 << 20)
    }
}

/// Decodes one JPEG or PNG to RGB, refusing anything else and anything over the pixel cap
/// before allocating for it.
fn decode_one(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, String> {
    let ImageHeader {
        format,
        width: w,
        height: h,
        ..
    } = ImageHeader::read(bytes, max_pixels)?;
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
    // JPEGs decode to RGB8 already: `into_rgb8` hands that buffer over instead of copying it.
    Ok(image.into_rgb8())
}

/// The CIFAR-10 tutorial's evaluation input: the 32x32 image (resized bilinearly if it is another
/// size), its central `height` x `width` crop, then per-image standardisation
/// `(x - mean) / max(stddev, 1 / sqrt(N))` over all N values, as `tf.image.per_image_standardization`.
fn cifar10(
    scratch: &mut Scratch,
    image: &RgbImage,
    height: usize,
    width: usize,
    out: &mut Vec<f32>,
) -> Result<(), String> {
    let mut base = [0.0; 32 * 32 * 3];
    if image.dimensions() == (32, 32) {
        for (to, &from) in base.iter_mut().zip(image.as_raw()) {
            *to = f32::from(from);
        }
    } else {
        let src = scratch.floats(image.as_raw().len());
        for (to, &from) in src.iter_mut().zip(image.as_raw()) {
            *to = f32::from(from);
        }
        let (w, h) = image.dimensions();
        resize_bilinear(
            &mut scratch.resizer,
            &scratch.pixels,
            (w, h),
            &mut base,
            (32, 32),
        )?;
    }
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
    Ok(())
}

/// Inception v3's evaluation input: central crop keeping 87.5 % of each side, bilinear resize to
/// `height` x `width`, values scaled from [0, 255] to [-1, 1].
fn inception(
    scratch: &mut Scratch,
    image: &RgbImage,
    height: usize,
    width: usize,
    out: &mut Vec<f32>,
) -> Result<(), String> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    // tf.image.central_crop: the kept size rounds the removed border down on each side.
    let off_h = ((h as f64 - h as f64 * 0.875) / 2.0) as usize;
    let off_w = ((w as f64 - w as f64 * 0.875) / 2.0) as usize;
    let (crop_h, crop_w) = (h - 2 * off_h, w - 2 * off_w);
    // Scaling to [-1, 1] before the resize rather than after: bilinear weights sum to one, so
    // the result is the same, and the resize then writes its output straight into `out`.
    let raw = image.as_raw();
    let cropped = scratch.floats(crop_h * crop_w * 3);
    for (y, to) in cropped.chunks_exact_mut(crop_w * 3).enumerate() {
        let row = (off_h + y) * w * 3;
        let from = &raw[row + off_w * 3..row + (off_w + crop_w) * 3];
        for (to, &from) in to.iter_mut().zip(from) {
            *to = f32::from(from) * (2.0 / 255.0) - 1.0;
        }
    }
    let start = out.len();
    out.resize(start + height * width * 3, 0.0);
    resize_bilinear(
        &mut scratch.resizer,
        &scratch.pixels,
        (crop_w as u32, crop_h as u32),
        &mut out[start..],
        (width as u32, height as u32),
    )
}

/// What resizing needs between images, kept per thread of the blocking pool: the resizer's own
/// buffers and the float copy of the image being resized. A fresh 1.7 MB buffer per 500x375
/// image cost more than the SIMD resize itself (1.5 ms against 0.6 ms, measured): the kernel
/// zero-fills every page of a new large allocation on first touch.
struct Scratch {
    resizer: Resizer,
    pixels: Vec<f32>,
}

/// A thread keeps at most this many bytes of float pixels between images (a 2,000 x 1,500
/// photo); a larger image's buffer is freed after its batch, so a few huge uploads cannot pin
/// memory in every blocking thread.
const SCRATCH_KEEP_BYTES: usize = 2_000 * 1_500 * 3 * 4;

impl Scratch {
    /// The float buffer, `len` long, its contents unspecified (callers overwrite all of it).
    fn floats(&mut self, len: usize) -> &mut [f32] {
        self.pixels.resize(len, 0.0);
        &mut self.pixels[..len]
    }

    /// Gives back a buffer grown past [`SCRATCH_KEEP_BYTES`].
    fn trim(&mut self) {
        if self.pixels.capacity() * 4 > SCRATCH_KEEP_BYTES {
            self.pixels = Vec::new();
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch {
        resizer: Resizer::new(),
        pixels: Vec::new(),
    });
}

/// Bilinear resize of an HWC RGB float image with half-pixel centres (TensorFlow 2's
/// `tf.image.resize(..., 'bilinear')`, antialias off), on `fast_image_resize`'s SIMD kernels.
/// Its `Interpolation` keeps the two-tap bilinear kernel when shrinking (as TensorFlow does with
/// antialias off) instead of widening it, and its edge handling (taps outside the image dropped,
/// the rest renormalised) equals TensorFlow's clamping of the sample position. `sizes` are
/// (width, height).
///
/// The resizer runs its horizontal pass first, into a `dst_w` x `src_h` intermediate. For a tall,
/// narrow image that is far more than the image itself: a 657-byte JPEG declaring 16 x 63,243
/// pixels (found by the `image` fuzz target) made a 227 MB intermediate and 2 s of CPU on its way
/// to 299 x 299. Such an image is resized vertically first ([`vertical_first`]); bilinear
/// resizing is separable, so the order changes only float rounding.
fn resize_bilinear(
    resizer: &mut Resizer,
    src: &[f32],
    (src_w, src_h): (u32, u32),
    dst: &mut [f32],
    (dst_w, dst_h): (u32, u32),
) -> Result<(), String> {
    if vertical_first((src_w, src_h), (dst_w, dst_h)) {
        let mut tall = vec![0.0f32; src_w as usize * dst_h as usize * 3];
        resize_once(resizer, src, (src_w, src_h), &mut tall, (src_w, dst_h))?;
        return resize_once(resizer, &tall, (src_w, dst_h), dst, (dst_w, dst_h));
    }
    resize_once(resizer, src, (src_w, src_h), dst, (dst_w, dst_h))
}

/// Whether resizing the rows first (an `src_w` x `dst_h` intermediate) is much cheaper than the
/// resizer's own order (a `dst_w` x `src_h` one).
fn vertical_first((src_w, src_h): (u32, u32), (dst_w, dst_h): (u32, u32)) -> bool {
    let horizontal_first = u64::from(dst_w) * u64::from(src_h);
    let rows_first = u64::from(src_w) * u64::from(dst_h);
    horizontal_first > 4 * rows_first.max(1)
}

fn resize_once(
    resizer: &mut Resizer,
    src: &[f32],
    (src_w, src_h): (u32, u32),
    dst: &mut [f32],
    (dst_w, dst_h): (u32, u32),
) -> Result<(), String> {
    let src = ImageRef::new(src_w, src_h, bytemuck::cast_slice(src), PixelType::F32x3)
        .map_err(|e| format!("resizing a {src_w}x{src_h} image: {e}"))?;
    let mut dst = Image::from_slice_u8(
        dst_w,
        dst_h,
        bytemuck::cast_slice_mut(dst),
        PixelType::F32x3,
    )
    .map_err(|e| format!("resizing to {dst_w}x{dst_h}: {e}"))?;
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear));
    resizer
        .resize(&src, &mut dst, &options)
        .map_err(|e| format!("resizing {src_w}x{src_h} to {dst_w}x{dst_h}: {e}"))
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
    fn tall_narrow_images_are_resized_rows_first_with_the_same_result() {
        // The fuzz target's 16 x 63,243 JPEG, on its way to 299 x 299: rows first.
        assert!(vertical_first((16, 63_243), (299, 299)));
        // A photo, and a wide strip: the resizer's own order.
        assert!(!vertical_first((500, 375), (299, 299)));
        assert!(!vertical_first((63_243, 16), (299, 299)));
        // Rows first and the resizer's order give the same pixels, to float rounding.
        let (w, h) = (6u32, 700u32);
        let src: Vec<f32> = (0..w * h * 3).map(|i| ((i * 37) % 255) as f32).collect();
        assert!(vertical_first((w, h), (40, 40)));
        let mut two_pass = vec![0.0; 40 * 40 * 3];
        resize_bilinear(&mut Resizer::new(), &src, (w, h), &mut two_pass, (40, 40)).unwrap();
        let mut direct = vec![0.0; 40 * 40 * 3];
        resize_once(&mut Resizer::new(), &src, (w, h), &mut direct, (40, 40)).unwrap();
        let worst = two_pass
            .iter()
            .zip(&direct)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "rows first differs by {worst}");
    }

    #[test]
    fn bilinear_matches_half_pixel_centres() {
        // 2x1 -> 4x1: TF gives 0, 0.25, 0.75, 1 of the way between the two pixels.
        let src = [0.0, 0.0, 0.0, 100.0, 100.0, 100.0];
        let mut out = [0.0; 12];
        resize_bilinear(&mut Resizer::new(), &src, (2, 1), &mut out, (4, 1)).unwrap();
        let reds: Vec<f32> = out.chunks(3).map(|p| p[0]).collect();
        assert_eq!(reds, [0.0, 25.0, 75.0, 100.0]);
        // Shrinking 4 -> 2 keeps two taps (antialias off): centres at 0.5 and 2.5 average
        // pixels 0, 1 and 2, 3; a widened (antialiasing) kernel would blend in more.
        let src: Vec<f32> = [0.0, 0.0, 100.0, 300.0]
            .iter()
            .flat_map(|&v| [v, v, v])
            .collect();
        let mut out = [0.0; 6];
        resize_bilinear(&mut Resizer::new(), &src, (4, 1), &mut out, (2, 1)).unwrap();
        assert_eq!([out[0], out[3]], [0.0, 200.0]);
    }

    /// The scalar preprocessing this module had before the SIMD resize, kept verbatim as the
    /// reference the new code must stay within 1e-3 of.
    mod reference {
        use image::RgbImage;

        pub fn cifar10(image: &RgbImage, height: usize, width: usize, out: &mut Vec<f32>) {
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

        pub fn inception(image: &RgbImage, height: usize, width: usize, out: &mut Vec<f32>) {
            let (w, h) = (image.width() as usize, image.height() as usize);
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

        fn resize_bilinear(
            src: &[f32],
            h: usize,
            w: usize,
            out_h: usize,
            out_w: usize,
        ) -> Vec<f32> {
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
    }

    /// A photo-like JPEG: smooth gradients plus texture, so the decoder and resize do real work.
    fn photo_jpeg(w: u32, h: u32) -> Vec<u8> {
        let mut raw = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let t = ((x * 7 + y * 13) % 31) as u8;
                raw.extend_from_slice(&[
                    (x * 255 / w) as u8 ^ t,
                    (y * 255 / h) as u8,
                    ((x + y) % 256) as u8,
                ]);
            }
        }
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .write_image(&raw, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn prepared(pre: Preprocess, side: i64, encoded: &[u8]) -> Vec<f32> {
        let mut inputs = vec![bytes_tensor(vec![encoded.to_vec()])];
        prepare_inputs(&[spec(pre, side)], &mut inputs, 1 << 24, None).unwrap();
        let TensorData::F32(v) = inputs.remove(0).data else {
            panic!("FP32 expected")
        };
        v
    }

    fn by_reference(pre: Preprocess, side: usize, encoded: &[u8]) -> Vec<f32> {
        let image = decode_one(encoded, 1 << 24).unwrap();
        let mut out = Vec::new();
        match pre {
            Preprocess::Cifar10Image => reference::cifar10(&image, side, side, &mut out),
            Preprocess::InceptionImage => reference::inception(&image, side, side, &mut out),
            Preprocess::CriteoRows => unreachable!(),
        }
        out
    }

    #[test]
    fn simd_preprocessing_stays_within_1e_3_of_the_scalar_reference() {
        // Shrinking, enlarging, odd sizes and the exact 32x32 path, as JPEG and PNG.
        let sizes = [
            (500, 375),
            (32, 32),
            (37, 29),
            (17, 45),
            (640, 480),
            (1, 1),
            (300, 2),
        ];
        for (w, h) in sizes {
            let texture = |x: u32, y: u32| {
                [
                    ((x * 37 + y * 11) % 256) as u8,
                    ((x * y) % 256) as u8,
                    ((x ^ y) * 5 % 256) as u8,
                ]
            };
            for (kind, encoded) in [("JPEG", photo_jpeg(w, h)), ("PNG", png(w, h, texture))] {
                for (pre, side) in [
                    (Preprocess::Cifar10Image, 24),
                    (Preprocess::InceptionImage, 299),
                ] {
                    let got = prepared(pre, side as i64, &encoded);
                    let want = by_reference(pre, side, &encoded);
                    assert_eq!(got.len(), want.len(), "{pre:?} {kind} {w}x{h}");
                    let worst = got
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0f32, f32::max);
                    assert!(worst <= 1e-3, "{pre:?} {kind} {w}x{h}: differs by {worst}");
                }
            }
        }
    }

    /// A measurement, not a check: per-image time of the scalar reference against this module's
    /// code, side by side in one run, for a 500x375 JPEG. Run it with
    /// `cargo test --release -p spindle-server --lib preprocess -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn measure_preprocessing_against_the_scalar_reference() {
        let encoded = photo_jpeg(500, 375);
        let time = |f: &dyn Fn()| {
            let mut rounds = Vec::new();
            for _ in 0..7 {
                let started = std::time::Instant::now();
                for _ in 0..40 {
                    f();
                }
                rounds.push(started.elapsed().as_secs_f64() * 1e6 / 40.0);
            }
            rounds.sort_by(f64::total_cmp);
            rounds[3]
        };
        let decode = time(&|| {
            decode_one(&encoded, 1 << 24).unwrap();
        });
        println!("500x375 JPEG, median of 7 rounds of 40, us per image");
        println!("decode alone: {decode:.1}");
        for (pre, side) in [
            (Preprocess::InceptionImage, 299),
            (Preprocess::Cifar10Image, 24),
        ] {
            let old = time(&|| {
                by_reference(pre, side, &encoded);
            });
            let new = time(&|| {
                prepared(pre, side as i64, &encoded);
            });
            println!(
                "{pre:?}: scalar {old:.1}, SIMD {new:.1}, ratio {:.2}",
                old / new
            );
        }
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

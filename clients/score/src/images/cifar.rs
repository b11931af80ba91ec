//! CIFAR-10 binary, the format of `data_batch_N.bin` and `test_batch.bin` that the TensorFlow
//! tutorial's `cifar10_eval.py` reads: fixed-length records of 1 label byte and 3,072 pixel
//! bytes, the red, green and blue planes of a 32x32 image one after the other, each row-major.

use super::RecordProblem;
use image::ImageEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};

/// Image side.
pub const SIDE: usize = 32;
/// Pixel bytes per record.
pub const PIXELS: usize = SIDE * SIDE * 3;
/// Bytes per record.
pub const RECORD: usize = 1 + PIXELS;

/// The records of one CIFAR-10 file held in memory: `(index, (label, planes))`, then a
/// [`RecordProblem::Truncated`] if the file does not end on a record boundary.
pub fn records(data: &[u8]) -> impl Iterator<Item = (u64, Result<(u8, &[u8]), RecordProblem>)> {
    let whole = data.len() / RECORD;
    let tail = data.len() % RECORD;
    let full = data
        .chunks_exact(RECORD)
        .enumerate()
        .map(|(i, record)| (i as u64, Ok((record[0], &record[1..]))));
    let cut = (tail > 0).then(|| {
        (
            whole as u64,
            Err(RecordProblem::Truncated(format!(
                "the file ends {tail} bytes into a record; CIFAR-10 records are {RECORD} bytes (1 label + 3,072 pixels)"
            ))),
        )
    });
    full.chain(cut)
}

/// The image of one record (R, G, B planes) as interleaved RGB rows, as image decoders give it.
pub fn interleave(planes: &[u8]) -> Vec<u8> {
    let plane = SIDE * SIDE;
    let mut rgb = Vec::with_capacity(PIXELS);
    for i in 0..plane {
        rgb.extend_from_slice(&[planes[i], planes[plane + i], planes[2 * plane + i]]);
    }
    rgb
}

/// The planes of a 32x32 interleaved RGB image: the inverse of [`interleave`].
pub fn planes(rgb: &[u8]) -> Vec<u8> {
    let mut out = vec![0; PIXELS];
    let plane = SIDE * SIDE;
    for (i, pixel) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = pixel[c];
        }
    }
    out
}

/// One record's image as a PNG. The server's preprocessing takes encoded images only; PNG is
/// lossless, so the model sees exactly the record's pixels, and the same bytes can be sent to
/// a server. Fast compression: the file is decoded microseconds later, never stored.
pub fn to_png(planes: &[u8]) -> Vec<u8> {
    let mut png = Vec::with_capacity(PIXELS + 256);
    PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::NoFilter)
        .write_image(
            &interleave(planes),
            SIDE as u32,
            SIDE as u32,
            image::ExtendedColorType::Rgb8,
        )
        .expect("a 32x32 RGB image encodes to memory");
    png
}

/// Appends one record.
pub fn write_record(out: &mut Vec<u8>, label: u8, planes: &[u8]) {
    assert_eq!(
        planes.len(),
        PIXELS,
        "a CIFAR-10 record holds 3,072 pixel bytes"
    );
    out.push(label);
    out.extend_from_slice(planes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_png() {
        let planes: Vec<u8> = (0..PIXELS).map(|i| (i * 31 % 256) as u8).collect();
        let mut file = Vec::new();
        write_record(&mut file, 3, &planes);
        write_record(&mut file, 9, &planes);
        let read: Vec<_> = records(&file).collect();
        assert_eq!(read.len(), 2);
        let (label, got) = read[1].1.clone().unwrap();
        assert_eq!((label, got), (9, &planes[..]));
        // The PNG holds the record's pixels: red of pixel 1 is planes[1], green planes[1025].
        let decoded = image::load_from_memory(&to_png(got)).unwrap().to_rgb8();
        assert_eq!(
            decoded.get_pixel(1, 0).0,
            [planes[1], planes[1025], planes[2049]]
        );
        assert_eq!(planes_of(&decoded), planes);
    }

    fn planes_of(image: &image::RgbImage) -> Vec<u8> {
        planes(image.as_raw())
    }

    #[test]
    fn a_cut_file_reports_the_partial_record() {
        let mut file = Vec::new();
        write_record(&mut file, 1, &[0; PIXELS]);
        file.extend_from_slice(&[2; 100]);
        let read: Vec<_> = records(&file).collect();
        assert!(read[0].1.is_ok());
        assert!(
            matches!(&read[1], (1, Err(RecordProblem::Truncated(why))) if why.contains("100 bytes into a record")),
            "{:?}",
            read[1]
        );
    }
}

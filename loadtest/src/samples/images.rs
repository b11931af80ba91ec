//! Encoded images (JPEG or PNG): one file, a directory of them, or a `.txt`/`.lst` list of their
//! paths. They are sent as BYTES elements to the input that declares image preprocessing, and
//! each must decode here first, so a broken file is named before the load rather than counted
//! as a failure during it.

use super::checks::{MAX_SAMPLES, batches, sample_input};
use super::preprocessing::Preprocessing;
use crate::inputs::GeneratedInputs;
use crate::metadata::{ModelMetadata, TensorMetadata};
use anyhow::{Context, anyhow, ensure};
use std::path::{Path, PathBuf};

/// The preprocessing names the server accepts encoded images for.
const IMAGE_PREPROCESSING: [&str; 2] = ["cifar10_image", "inception_image"];

/// Whether `path` is named like an image this tool reads.
pub(super) fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
}

/// The images in directory `path`, sorted; hidden files and subdirectories are skipped, any
/// other file is an error.
pub(super) fn in_directory(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    for entry in std::fs::read_dir(path)
        .with_context(|| format!("--input-data {}: cannot list it", path.display()))?
    {
        let entry = entry?.path();
        let hidden = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden || !entry.is_file() {
            continue;
        }
        ensure!(
            is_image_name(&entry),
            "--input-data {}: {} is not a .jpg, .jpeg or .png file (a directory of samples holds only images)",
            path.display(),
            entry.display()
        );
        images.push(entry);
    }
    ensure!(
        !images.is_empty(),
        "--input-data {}: the directory holds no .jpg, .jpeg or .png images",
        path.display()
    );
    images.sort();
    Ok(images)
}

/// The images the list file `path` names, one per line relative to the list (blank lines and
/// `#` comments skipped).
pub(super) fn listed_in(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--input-data {}: cannot read it", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut images = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let image = dir.join(line);
        ensure!(
            is_image_name(&image) && image.is_file(),
            "--input-data {} line {}: '{line}' is not a .jpg, .jpeg or .png file (a list names one image per line, relative to the list)",
            path.display(),
            i + 1
        );
        images.push(image);
    }
    ensure!(
        !images.is_empty(),
        "--input-data {}: the list names no images",
        path.display()
    );
    Ok(images)
}

/// Reads up to [`MAX_SAMPLES`] of `files` (found at `path`) and cuts them into requests of
/// `batch` images.
pub(super) fn requests(
    path: &Path,
    files: &[PathBuf],
    model: &ModelMetadata,
    preprocessing: &Preprocessing,
    batch: usize,
) -> anyhow::Result<Vec<GeneratedInputs>> {
    let input = sample_input(model, preprocessing, &IMAGE_PREPROCESSING, "images", path)?;
    let mut images = Vec::with_capacity(files.len().min(MAX_SAMPLES));
    for file in files.iter().take(MAX_SAMPLES) {
        images.push(read_image(file, &input, preprocessing)?);
    }
    Ok(batches(&input, &images, batch))
}

/// Reads one image and checks that it decodes as JPEG or PNG.
fn read_image(
    file: &Path,
    input: &TensorMetadata,
    preprocessing: &Preprocessing,
) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(file)
        .with_context(|| format!("--input-data: cannot read {}", file.display()))?;
    let expected = || {
        format!(
            "input '{}' expects an encoded JPEG or PNG image (preprocess {})",
            input.name, preprocessing.inputs[&input.name]
        )
    };
    let format = image::guess_format(&bytes).map_err(|_| {
        anyhow!(
            "--input-data {}: not a JPEG or PNG image (starts with {:02x?}); {}",
            file.display(),
            &bytes[..bytes.len().min(8)],
            expected()
        )
    })?;
    ensure!(
        matches!(format, image::ImageFormat::Jpeg | image::ImageFormat::Png),
        "--input-data {}: a {format:?} image; {}",
        file.display(),
        expected()
    );
    image::load_from_memory_with_format(&bytes, format).map_err(|e| {
        anyhow!(
            "--input-data {}: cannot decode it as {format:?} ({e}); {}",
            file.display(),
            expected()
        )
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::bytes_elements;
    use crate::options::Protocol;
    use crate::samples::fixtures::{model, preprocessing};
    use crate::samples::load;
    use serde_json::Value;

    fn png(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        image::RgbImage::from_pixel(8, 6, image::Rgb([10, 200, 30]))
            .save(&path)
            .unwrap();
        path
    }

    #[test]
    fn images_become_rotating_bytes_requests() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.png", "b.png", "c.png"] {
            png(dir.path(), name);
        }
        let m = model(&[("x", "FP32", &[-1, 24, 24, 3])]);
        let pre = preprocessing(&[("x", "cifar10_image")]);
        let requests = load(dir.path(), &m, &pre, Protocol::HttpBinary, 2).unwrap();
        assert_eq!(requests.len(), 2, "3 images in batches of 2: 2 requests");
        let first: Vec<&[u8]> = bytes_elements(&requests[0].tensors[0].raw).collect();
        let second: Vec<&[u8]> = bytes_elements(&requests[1].tensors[0].raw).collect();
        let c = std::fs::read(dir.path().join("c.png")).unwrap();
        let a = std::fs::read(dir.path().join("a.png")).unwrap();
        assert_eq!(second, [c.as_slice(), a.as_slice()], "wraps around");
        assert_eq!(first.len(), 2);
        assert_eq!(requests[0].tensors[0].shape, vec![2]);
        assert_eq!(
            (requests[0].rows, requests[0].tensors[0].datatype.as_str()),
            (2, "BYTES")
        );

        let list = dir.path().join("list.txt");
        std::fs::write(&list, "# two images\nb.png\n\nc.png\n").unwrap();
        let requests = load(&list, &m, &pre, Protocol::TfRest, 1).unwrap();
        assert_eq!(requests.len(), 2);
        let body: Value =
            serde_json::from_slice(&crate::payload::encode_tf_rest(&requests[0].tensors).body)
                .unwrap();
        assert!(body["instances"][0]["b64"].is_string(), "{body}");
    }

    #[test]
    fn bad_images_and_models_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let good = png(dir.path(), "good.png");
        let m = model(&[("x", "FP32", &[-1, 24, 24, 3])]);
        let pre = preprocessing(&[("x", "cifar10_image")]);
        let broken = dir.path().join("broken.jpg");
        let mut bytes = std::fs::read(&good).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&broken, &bytes).unwrap();
        let e = format!(
            "{:#}",
            load(dir.path(), &m, &pre, Protocol::HttpBinary, 1).unwrap_err()
        );
        assert!(e.contains("broken.jpg") && e.contains("JPEG or PNG"), "{e}");
        std::fs::remove_file(&broken).unwrap();
        std::fs::write(dir.path().join("notes.md"), "x").unwrap();
        let e = format!(
            "{:#}",
            load(dir.path(), &m, &pre, Protocol::HttpBinary, 1).unwrap_err()
        );
        assert!(e.contains("notes.md"), "{e}");

        let ids = model(&[("ids", "INT64", &[-1, 39])]);
        let e = format!(
            "{:#}",
            load(
                &good,
                &ids,
                &preprocessing(&[("ids", "criteo_rows")]),
                Protocol::HttpBinary,
                1
            )
            .unwrap_err()
        );
        assert!(
            e.contains("good.png")
                && e.contains("no input that takes images")
                && e.contains("ids INT64"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            load(&good, &m, &Preprocessing::default(), Protocol::Grpc, 1).unwrap_err()
        );
        assert!(e.contains("cifar10_image"), "{e}");
        let e = format!(
            "{:#}",
            load(&good, &m, &pre, Protocol::HttpJson, 1).unwrap_err()
        );
        assert!(e.contains("http-json") && e.contains("http-binary"), "{e}");
        let e = format!(
            "{:#}",
            load(&dir.path().join("x.csv"), &m, &pre, Protocol::HttpBinary, 1).unwrap_err()
        );
        assert!(e.contains("x.csv"), "{e}");
        std::fs::write(dir.path().join("x.csv"), "1,2").unwrap();
        let e = format!(
            "{:#}",
            load(&dir.path().join("x.csv"), &m, &pre, Protocol::HttpBinary, 1).unwrap_err()
        );
        assert!(e.contains("not a kind of sample"), "{e}");
    }
}

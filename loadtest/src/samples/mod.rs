//! Real samples for `--input-data PATH` instead of generated tensors: encoded images (a JPEG or
//! PNG file, a directory of them, or a `.txt`/`.lst` list of their paths), Criteo TSV rows
//! (`.tsv`, `.tsv.gz`, `.tsv.bz2`), or KServe v2 JSON tensors (`.json`: one
//! `{"inputs": [...]}` request, or an array of them).
//!
//! Every sample is checked against the model before any load is sent: images must decode and
//! need an input declaring image preprocessing; rows need a `criteo_rows` input and must pass
//! the version's own `features.toml` transform (the server's code, `spindle-criteo`); JSON
//! tensors must match the metadata's names, datatypes and shapes. A mismatch is an error naming
//! the file and what the model expects.
//!
//! Samples are cut into requests of `--batch` rows (wrapping around at the end), and the
//! requests are sent in rotation, so every sample is used.
//!
//! Each kind has its submodule (`images`, `rows`, `json`); `preprocessing` reads what the
//! server declares, and `checks` holds what the kinds share. Dependencies point one way: this
//! module uses the kinds, the kinds use `checks`, and everything uses `preprocessing`.

mod checks;
mod images;
mod json;
mod preprocessing;
mod rows;

pub use preprocessing::{Preprocessing, fetch_preprocessing};

use crate::inputs::GeneratedInputs;
use crate::metadata::ModelMetadata;
use crate::options::Protocol;
use anyhow::{Context, bail};
use checks::check_protocol;
use std::path::{Path, PathBuf};

/// What `--input-data` names, by its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleSource {
    /// Encoded images, in order.
    Images(Vec<PathBuf>),
    /// A file of Criteo TSV rows (plain, gz or bz2).
    Rows(PathBuf),
    /// A file of KServe v2 JSON tensors.
    Json(PathBuf),
}

impl SampleSource {
    /// Classifies `path` by what it is: a directory (of images), or a file by its extension.
    pub fn of(path: &Path) -> anyhow::Result<SampleSource> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("--input-data {}: cannot read it", path.display()))?;
        if meta.is_dir() {
            return images::in_directory(path).map(SampleSource::Images);
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if images::is_image_name(path) {
            Ok(SampleSource::Images(vec![path.to_path_buf()]))
        } else if name.ends_with(".json") {
            Ok(SampleSource::Json(path.to_path_buf()))
        } else if [".tsv", ".tsv.gz", ".tsv.bz2"]
            .iter()
            .any(|e| name.ends_with(e))
        {
            Ok(SampleSource::Rows(path.to_path_buf()))
        } else if name.ends_with(".txt") || name.ends_with(".lst") {
            images::listed_in(path).map(SampleSource::Images)
        } else {
            bail!(
                "--input-data {}: not a kind of sample this tool reads; give a directory of images, an image (.jpg, .jpeg, .png), a list of images (.txt, .lst), Criteo rows (.tsv, .tsv.gz, .tsv.bz2) or KServe v2 tensors (.json)",
                path.display()
            )
        }
    }
}

/// Reads and checks the samples at `path` against `model`, and cuts them into the requests to
/// send in rotation (each of `batch` rows; JSON requests as written).
pub fn load(
    path: &Path,
    model: &ModelMetadata,
    preprocessing: &Preprocessing,
    protocol: Protocol,
    batch: usize,
) -> anyhow::Result<Vec<GeneratedInputs>> {
    let requests = match SampleSource::of(path)? {
        SampleSource::Images(files) => images::requests(path, &files, model, preprocessing, batch)?,
        SampleSource::Rows(file) => rows::requests(&file, model, preprocessing, batch)?,
        SampleSource::Json(file) => json::requests(&file, model, preprocessing, batch)?,
    };
    check_protocol(protocol, path, &requests)?;
    Ok(requests)
}

/// Models and configurations the kinds' tests share.
#[cfg(test)]
mod fixtures {
    use super::Preprocessing;
    use crate::metadata::{ModelMetadata, TensorMetadata};

    pub fn model(inputs: &[(&str, &str, &[i64])]) -> ModelMetadata {
        ModelMetadata {
            name: "m".into(),
            versions: vec!["1".into()],
            inputs: inputs
                .iter()
                .map(|(n, d, s)| TensorMetadata {
                    name: (*n).into(),
                    datatype: (*d).into(),
                    shape: s.to_vec(),
                })
                .collect(),
            outputs: Vec::new(),
        }
    }

    pub fn preprocessing(pairs: &[(&str, &str)]) -> Preprocessing {
        Preprocessing {
            inputs: pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            features: None,
        }
    }
}

//! Criteo TSV rows (`.tsv`, `.tsv.gz`, `.tsv.bz2`), sent as BYTES elements to the input that
//! declares `criteo_rows` preprocessing. Each row must pass the served version's own
//! `features.toml` transform (the server's code, `spindle-criteo`), so a row the server would
//! refuse is found before the load, not counted as a failure during it.

use super::checks::{MAX_SAMPLES, batches, sample_input};
use super::preprocessing::Preprocessing;
use crate::id_slices::CRITEO_ROWS as ROWS_PREPROCESSING;
use crate::inputs::GeneratedInputs;
use crate::metadata::{ModelMetadata, TensorMetadata};
use anyhow::{Context, anyhow, ensure};
use spindle_criteo::spec::FeatureSpec;
use spindle_criteo::transform::Transformer;
use std::io::BufRead;
use std::path::Path;

/// Reads the rows of `file` and cuts them into requests of `batch` rows.
pub(super) fn requests(
    file: &Path,
    model: &ModelMetadata,
    preprocessing: &Preprocessing,
    batch: usize,
) -> anyhow::Result<Vec<GeneratedInputs>> {
    let input = sample_input(model, preprocessing, &[ROWS_PREPROCESSING], "rows", file)?;
    let rows = read_rows(file, &input, preprocessing)?;
    Ok(batches(&input, &rows, batch))
}

/// Reads up to [`MAX_SAMPLES`] rows and checks each with the version's own transform.
fn read_rows(
    file: &Path,
    input: &TensorMetadata,
    preprocessing: &Preprocessing,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let transformer = preprocessing
        .features
        .as_deref()
        .map(|text| {
            FeatureSpec::from_toml(text)
                .map_err(|e| anyhow!("{e}"))
                .and_then(|spec| Transformer::new(spec).map_err(|e| anyhow!("{e}")))
                .context("the server's features.toml for this model cannot be used")
        })
        .transpose()?;
    let mut reader = spindle_criteo::shard::open_shard(file)
        .with_context(|| format!("--input-data: cannot open {}", file.display()))?;
    let mut ids = vec![0i64; transformer.as_ref().map_or(0, Transformer::fields)];
    let mut rows = Vec::new();
    let mut line = Vec::new();
    let mut number = 0;
    while rows.len() < MAX_SAMPLES {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("--input-data: reading {}", file.display()))?;
        if n == 0 {
            break;
        }
        number += 1;
        let row = line
            .strip_suffix(b"\n")
            .map(|r| r.strip_suffix(b"\r").unwrap_or(r))
            .unwrap_or(&line);
        if row.is_empty() {
            continue;
        }
        if let Some(transformer) = &transformer {
            transformer.transform(row, &mut ids).map_err(|problem| {
                anyhow!(
                    "--input-data {} line {number}: {problem}; input '{}' expects Criteo TSV rows (label optional, 13 integer and 26 categorical columns)",
                    file.display(),
                    input.name
                )
            })?;
        }
        rows.push(row.to_vec());
    }
    ensure!(
        !rows.is_empty(),
        "--input-data {}: no rows in the file",
        file.display()
    );
    Ok(rows)
}

//! The one feature transform: a raw Criteo TSV row (label optional, 13 integers, 26 8-hex-digit
//! tokens, any of them empty) into `F` INT64 ids in the spec's shared id space.
//!
//! The trainer, the batch scorer and the server all call [`Transformer::transform`], so a model
//! is served with exactly the ids it was fitted on. It allocates nothing per row: columns are
//! found into a stack array (eight bytes at a time, see [`crate::swar`]), and hashes for crosses
//! are kept on the stack too.

use crate::farmhash::{fingerprint_cat64, fingerprint64, fingerprint64_word};
use crate::spec::{CATEGORICAL_COLUMNS, FeatureRef, FeatureSpec, INTEGER_COLUMNS};
use crate::swar;
use spindle_core::{Tensor, TensorData};
use strength_reduce::StrengthReducedU64;

/// Columns of an unlabelled row.
pub const COLUMNS: usize = INTEGER_COLUMNS + CATEGORICAL_COLUMNS;

/// TensorFlow's default key for hashed crosses (`sparse_cross_hashed`'s `hash_key`).
const CROSS_KEY: u64 = 0xDE_CAFC_AFFE;

/// The cross component of a missing categorical value: `Fingerprint64("")`, what TensorFlow's
/// `tf.sparse.cross_hashed` hashes for the empty string `tf.io.decode_csv` reads from an empty
/// field. (No 8-hex-digit token fingerprints to it in practice, so "missing" still crosses like
/// a value of its own.)
const MISSING_TOKEN: u64 = 0x9ae1_6a3b_2f90_404f;

/// What is wrong with one row; [`RowError`] adds which row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    /// Not 39 or 40 tab-separated columns.
    #[error(
        "expected {COLUMNS} tab-separated columns ({} with the leading label), found {found}; check the delimiter and that no column was dropped",
        COLUMNS + 1
    )]
    ColumnCount {
        /// Columns found.
        found: usize,
    },
    /// An integer column holds something else.
    #[error("column {column} ({name}): '{value}' is not an integer (leave it empty when missing)")]
    NotInteger {
        /// 1-based column in the row as given.
        column: usize,
        /// Feature name from the spec.
        name: String,
        /// The offending text, shortened.
        value: String,
    },
    /// A categorical column holds something other than 8 hex digits.
    #[error(
        "column {column} ({name}): '{value}' is not a categorical token (8 hex digits, like 68fd1e64; leave it empty when missing)"
    )]
    NotHexToken {
        /// 1-based column in the row as given.
        column: usize,
        /// Feature name from the spec.
        name: String,
        /// The offending text, shortened.
        value: String,
    },
    /// The leading label is not 0 or 1.
    #[error("column 1 (label): '{value}' is not 0 or 1")]
    BadLabel {
        /// The offending text, shortened.
        value: String,
    },
}

/// A malformed row: its index (in the batch, or line number in a file) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {row}: {problem}")]
pub struct RowError {
    /// Row index as the caller counts it (0-based in a batch, 1-based line in a file).
    pub row: usize,
    /// What is wrong.
    pub problem: RowProblem,
}

fn shown(bytes: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned();
    if bytes.len() > MAX {
        text + "..."
    } else {
        text
    }
}

struct CompiledCross {
    offset: i64,
    /// `hash_buckets`, prepared for modulo by multiplication.
    buckets: StrengthReducedU64,
    parts: Vec<FeatureRef>,
}

/// A [`FeatureSpec`] compiled for the hot path. Cheap to share (`&self` to run).
pub struct Transformer {
    spec: FeatureSpec,
    int_offsets: [i64; INTEGER_COLUMNS],
    int_boundaries: Vec<Vec<i64>>,
    cat_offsets: [i64; CATEGORICAL_COLUMNS],
    // Each feature's `hash_buckets`, prepared for modulo by multiplication: a row takes 29
    // modulos (26 tokens, 3 crosses), and a 64-bit division costs tens of cycles on many CPUs.
    cat_buckets: [StrengthReducedU64; CATEGORICAL_COLUMNS],
    crosses: Vec<CompiledCross>,
    /// Each id position's name and the ids it may hold (its slice of the model's one id space).
    fields_ids: Vec<(String, std::ops::Range<i64>)>,
    /// The same slices as (first id, count), for [`Transformer::check_ids`]'s one comparison per id.
    id_bounds: Vec<(i64, u64)>,
}

impl Transformer {
    /// Compiles a validated spec.
    pub fn new(spec: FeatureSpec) -> Result<Transformer, crate::spec::SpecError> {
        spec.validate()?;
        let mut offset = 0i64;
        let mut int_offsets = [0; INTEGER_COLUMNS];
        for (slot, f) in int_offsets.iter_mut().zip(&spec.integer) {
            *slot = offset;
            offset += f.size() as i64;
        }
        let mut cat_offsets = [0; CATEGORICAL_COLUMNS];
        let mut cat_buckets = [0; CATEGORICAL_COLUMNS];
        for ((slot, buckets), f) in cat_offsets
            .iter_mut()
            .zip(cat_buckets.iter_mut())
            .zip(&spec.categorical)
        {
            *slot = offset;
            *buckets = f.hash_buckets;
            offset += f.size() as i64;
        }
        let crosses: Vec<CompiledCross> = spec
            .cross
            .iter()
            .map(|c| {
                let compiled = CompiledCross {
                    offset,
                    buckets: StrengthReducedU64::new(c.hash_buckets),
                    parts: c
                        .features
                        .iter()
                        .map(|n| spec.feature(n).expect("validated"))
                        .collect(),
                };
                offset += c.hash_buckets as i64;
                compiled
            })
            .collect();
        let mut fields_ids = Vec::new();
        for (f, start) in spec.integer.iter().zip(int_offsets) {
            fields_ids.push((f.name.clone(), start..start + f.size() as i64));
        }
        for (f, start) in spec.categorical.iter().zip(cat_offsets) {
            fields_ids.push((f.name.clone(), start..start + f.size() as i64));
        }
        for (f, compiled) in spec.cross.iter().zip(&crosses) {
            let start = compiled.offset;
            fields_ids.push((f.name.clone(), start..start + f.hash_buckets as i64));
        }
        Ok(Transformer {
            id_bounds: fields_ids
                .iter()
                .map(|(_, r)| (r.start, r.end.abs_diff(r.start)))
                .collect(),
            fields_ids,
            int_boundaries: spec.integer.iter().map(|f| f.boundaries.clone()).collect(),
            spec,
            int_offsets,
            cat_offsets,
            cat_buckets: cat_buckets.map(StrengthReducedU64::new),
            crosses,
        })
    }

    /// The spec this transformer was compiled from.
    pub fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    /// Ids per row.
    pub fn fields(&self) -> usize {
        INTEGER_COLUMNS + CATEGORICAL_COLUMNS + self.crosses.len()
    }

    /// Checks ids that were sent already transformed (an INT64 tensor of `[rows, fields]`,
    /// row-major): each must lie in its position's slice of the id space. An id outside it would
    /// index past the model's embedding (ONNX Runtime fails the whole batch) or, negative, be
    /// taken from the end of the table and give a wrong answer without a word.
    pub fn check_ids(&self, ids: &[i64]) -> Result<(), String> {
        let fields = self.fields_ids.len();
        // Row by row, position by position: no division per id (a batch is 172,000 ids, and
        // `i % fields` per id was most of this function's cost). The slow path below runs only
        // to name the first id out of range.
        // (`max(1)`: `chunks` panics on 0, and a spec without features has no ids to check.)
        // One unsigned comparison per id (below the start wraps to a huge offset), folded
        // without early exits so the loop has no branches: 1.7x faster than `Range::contains`
        // with `all` on a Criteo batch.
        let out_of_range = ids.chunks(fields.max(1)).fold(false, |bad, row| {
            row.iter()
                .zip(&self.id_bounds)
                .fold(bad, |bad, (&id, &(start, count))| {
                    bad | (id.wrapping_sub(start) as u64 >= count)
                })
        });
        if !out_of_range {
            return Ok(());
        }
        for (i, &id) in ids.iter().enumerate() {
            let (name, range) = &self.fields_ids[i % fields];
            if !range.contains(&id) {
                return Err(format!(
                    "id {id} at row {}, position {} (feature '{name}') is outside that feature's ids {}..{} (features.toml gives {} ids in all); send raw TSV rows as BYTES to have them transformed",
                    i / fields,
                    i % fields,
                    range.start,
                    range.end,
                    self.fields_ids.last().map_or(0, |(_, r)| r.end),
                ));
            }
        }
        Ok(())
    }

    /// Transforms one row (a trailing `\n` or `\r\n` is ignored) into `ids`, which must hold
    /// [`Transformer::fields`] ids. Returns the label when the row has one.
    ///
    /// Well-formed rows take a fast path (tabs found eight bytes at a time, tokens checked and
    /// hashed as one word); anything it does not accept goes through the column-by-column path,
    /// which gives the same ids for every row the fast path accepts and names what is wrong with
    /// the others. `ids` is unspecified after an error.
    pub fn transform(&self, line: &[u8], ids: &mut [i64]) -> Result<Option<bool>, RowProblem> {
        debug_assert_eq!(ids.len(), self.fields());
        let line = strip_line_end(line);
        match self.transform_fast(line, ids) {
            Some(label) => Ok(label),
            None => self.transform_checked(line, ids),
        }
    }

    /// The fast path: `None` for any row it does not take (malformed or unusual), leaving the
    /// verdict to [`Transformer::transform_checked`].
    #[inline]
    fn transform_fast(&self, line: &[u8], ids: &mut [i64]) -> Option<Option<bool>> {
        let mut tabs = [0u32; COLUMNS];
        let tab_count = swar::find_tabs(line, &mut tabs)?;
        let column = |j: usize| {
            let start = if j == 0 { 0 } else { tabs[j - 1] as usize + 1 };
            let end = if j == tab_count {
                line.len()
            } else {
                tabs[j] as usize
            };
            &line[start..end]
        };
        let (label, first) = match tab_count + 1 {
            COLUMNS => (None, 0),
            n if n == COLUMNS + 1 => match column(0) {
                b"0" => (Some(false), 1),
                b"1" => (Some(true), 1),
                _ => return None,
            },
            _ => return None,
        };
        let mut int_buckets = [0u64; INTEGER_COLUMNS];
        for (i, bucket) in int_buckets.iter_mut().enumerate() {
            let text = column(first + i);
            let value = if text.is_empty() {
                None
            } else {
                Some(parse_i64(text)?)
            };
            *bucket = self.integer_bucket(i, value);
        }
        let mut cat_hashes = [MISSING_TOKEN; CATEGORICAL_COLUMNS];
        let mut present = [false; CATEGORICAL_COLUMNS];
        for c in 0..CATEGORICAL_COLUMNS {
            let text = column(first + INTEGER_COLUMNS + c);
            if text.is_empty() {
                continue;
            }
            let word = u64::from_le_bytes(text.try_into().ok()?);
            if !swar::is_hex8(word) {
                return None;
            }
            cat_hashes[c] = fingerprint64_word(word);
            present[c] = true;
        }
        self.write_ids(&int_buckets, &cat_hashes, &present, ids);
        Some(label)
    }

    /// The column-by-column path, which names the first problem of a malformed row.
    fn transform_checked(&self, line: &[u8], ids: &mut [i64]) -> Result<Option<bool>, RowProblem> {
        // Column starts and ends, found once; a 41st column is an error already.
        let mut bounds = [(0u32, 0u32); COLUMNS + 1];
        let mut found = 0usize;
        let mut start = 0usize;
        let mut tabs = memchr::memchr_iter(b'\t', line);
        loop {
            let end = tabs.next().unwrap_or(line.len());
            if found == bounds.len() {
                let found = found + 1 + tabs.count() + usize::from(end < line.len());
                return Err(RowProblem::ColumnCount { found });
            }
            bounds[found] = (start as u32, end as u32);
            found += 1;
            if end == line.len() {
                break;
            }
            start = end + 1;
        }
        let (label, first) = match found {
            COLUMNS => (None, 0),
            n if n == COLUMNS + 1 => {
                let (s, e) = bounds[0];
                let label = match &line[s as usize..e as usize] {
                    b"0" => false,
                    b"1" => true,
                    other => {
                        return Err(RowProblem::BadLabel {
                            value: shown(other),
                        });
                    }
                };
                (Some(label), 1)
            }
            found => return Err(RowProblem::ColumnCount { found }),
        };
        let column = |i: usize| {
            let (s, e) = bounds[first + i];
            &line[s as usize..e as usize]
        };

        let mut int_buckets = [0u64; INTEGER_COLUMNS];
        for (i, bucket) in int_buckets.iter_mut().enumerate() {
            let text = column(i);
            let value = if text.is_empty() {
                None
            } else {
                Some(parse_i64(text).ok_or_else(|| RowProblem::NotInteger {
                    column: first + i + 1,
                    name: self.spec.integer[i].name.clone(),
                    value: shown(text),
                })?)
            };
            *bucket = self.integer_bucket(i, value);
        }

        let mut cat_hashes = [MISSING_TOKEN; CATEGORICAL_COLUMNS];
        let mut present = [false; CATEGORICAL_COLUMNS];
        for c in 0..CATEGORICAL_COLUMNS {
            let text = column(INTEGER_COLUMNS + c);
            if text.is_empty() {
                continue;
            }
            if text.len() != 8 || !text.iter().all(u8::is_ascii_hexdigit) {
                return Err(RowProblem::NotHexToken {
                    column: first + INTEGER_COLUMNS + c + 1,
                    name: self.spec.categorical[c].name.clone(),
                    value: shown(text),
                });
            }
            cat_hashes[c] = fingerprint64(text);
            present[c] = true;
        }
        self.write_ids(&int_buckets, &cat_hashes, &present, ids);
        Ok(label)
    }

    /// Integer column `i`'s bucket: 0 when missing, else 1 + the boundaries at or below it.
    #[inline(always)]
    fn integer_bucket(&self, i: usize, value: Option<i64>) -> u64 {
        value.map_or(0, |v| {
            1 + self.int_boundaries[i].partition_point(|&b| b <= v) as u64
        })
    }

    /// Every id of a row from its integer buckets and token fingerprints (`present` false for a
    /// missing token, whose id is its feature's last and whose cross component is
    /// [`MISSING_TOKEN`]).
    #[inline(always)]
    fn write_ids(
        &self,
        int_buckets: &[u64; INTEGER_COLUMNS],
        cat_hashes: &[u64; CATEGORICAL_COLUMNS],
        present: &[bool; CATEGORICAL_COLUMNS],
        ids: &mut [i64],
    ) {
        for i in 0..INTEGER_COLUMNS {
            ids[i] = self.int_offsets[i] + int_buckets[i] as i64;
        }
        for c in 0..CATEGORICAL_COLUMNS {
            let id = if present[c] {
                cat_hashes[c] % self.cat_buckets[c]
            } else {
                self.cat_buckets[c].get()
            };
            ids[INTEGER_COLUMNS + c] = self.cat_offsets[c] + id as i64;
        }
        for (k, cross) in self.crosses.iter().enumerate() {
            let mut hash = CROSS_KEY;
            for part in &cross.parts {
                let component = match *part {
                    FeatureRef::Integer(i) => int_buckets[i],
                    FeatureRef::Categorical(c) => cat_hashes[c],
                };
                hash = fingerprint_cat64(hash, component);
            }
            ids[INTEGER_COLUMNS + CATEGORICAL_COLUMNS + k] =
                cross.offset + (hash % cross.buckets) as i64;
        }
    }

    /// Transforms a batch of raw rows (BYTES elements, as a server receives them) into the
    /// model's `ids` tensor, INT64 `[rows, F]`. The first malformed row fails the batch, naming
    /// its 0-based index and the column.
    pub fn ids_tensor<R: AsRef<[u8]>>(&self, rows: &[R]) -> Result<Tensor, RowError> {
        let fields = self.fields();
        let mut ids = vec![0i64; rows.len() * fields];
        for (row, (line, out)) in rows.iter().zip(ids.chunks_exact_mut(fields)).enumerate() {
            self.transform(line.as_ref(), out)
                .map_err(|problem| RowError { row, problem })?;
        }
        Ok(Tensor::new(vec![rows.len(), fields], TensorData::I64(ids)).expect("rows x fields ids"))
    }
}

/// `line` without a trailing `\n` or `\r\n`.
#[inline]
fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses a decimal integer as TensorFlow does (`tf.strings.to_number(.., tf.int64)` and
/// `tf.io.decode_csv`'s int64 fields, both `strings::safe_strto64`): optional surrounding ASCII
/// whitespace, an optional `+` or `-`, digits, anything in i64's range. `None` for anything else
/// or on overflow, as TensorFlow refuses them.
#[inline]
fn parse_i64(text: &[u8]) -> Option<i64> {
    // C's isspace, which safe_strto64 skips on both sides.
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
    let text = match (text.first(), text.last()) {
        (Some(first), Some(last)) if space(first) || space(last) => {
            let start = text.iter().position(|b| !space(b))?;
            let end = text.iter().rposition(|b| !space(b))? + 1;
            &text[start..end]
        }
        _ => text,
    };
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() <= 18 {
        // 18 digits always fit: no overflow checks on the common path.
        let value = digits
            .iter()
            .fold(0i64, |v, &d| v * 10 + i64::from(d - b'0'));
        return Some(if negative { -value } else { value });
    }
    // Accumulated negative, so i64::MIN (whose magnitude i64 cannot hold) parses too.
    let value = digits.iter().try_fold(0i64, |v, &d| {
        v.checked_mul(10)?.checked_sub(i64::from(d - b'0'))
    })?;
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

#[cfg(test)]
#[path = "transform_tests.rs"]
mod tests;

//! TFRecord framing, as `tf.io.TFRecordWriter` writes it: per record, the length (u64 little
//! endian), the masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the data.
//!
//! Both checksums are checked. A bad data checksum spoils one record: its length was good, so
//! the next record is found and the shard goes on. A bad length checksum, or a shard that ends
//! inside a record, leaves nothing to find the next record by, so the shard ends there (with
//! that record reported).

use super::RecordProblem;

/// CRC-32C (Castagnoli), slice-by-16 tables: TFRecord's checksum.
const CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// TFRecord's masked CRC-32C: rotated and offset so that a CRC over data that itself holds CRCs
/// does not degenerate (`tensorflow/core/lib/hash/crc32c.h`, `Mask`).
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = CRC32C.checksum(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends one framed record to `out`.
pub fn write_record(out: &mut Vec<u8>, data: &[u8]) {
    let length = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// Whether `head` starts like a TFRecord file: 12 bytes whose last 4 are the masked CRC of the
/// first 8 (a 1-in-4-billion accident for other data).
pub fn looks_like_tfrecord(head: &[u8]) -> bool {
    head.len() >= 12
        && u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) == masked_crc32c(&head[..8])
}

/// The records of one TFRecord file held in memory, in order: each record's payload, or why
/// it could not be read.
pub struct Records<'a> {
    data: &'a [u8],
    at: usize,
    index: u64,
    done: bool,
}

impl<'a> Records<'a> {
    /// Reads records from a whole (decompressed) file.
    pub fn new(data: &'a [u8]) -> Records<'a> {
        Records {
            data,
            at: 0,
            index: 0,
            done: false,
        }
    }
}

impl<'a> Iterator for Records<'a> {
    /// `(record index, payload or problem)`.
    type Item = (u64, Result<&'a [u8], RecordProblem>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.at == self.data.len() {
            return None;
        }
        let index = self.index;
        self.index += 1;
        let rest = &self.data[self.at..];
        let fail = |this: &mut Self, problem| {
            this.done = true;
            Some((index, Err(problem)))
        };
        if rest.len() < 12 {
            return fail(
                self,
                RecordProblem::Truncated(format!(
                    "{} bytes left at offset {}, less than a record header (12)",
                    rest.len(),
                    self.at
                )),
            );
        }
        let length_bytes = &rest[..8];
        let stored = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        let computed = masked_crc32c(length_bytes);
        if stored != computed {
            return fail(
                self,
                RecordProblem::LengthCrc(format!(
                    "at offset {}: length checksum {stored:#010x}, computed {computed:#010x}; the rest of the shard cannot be framed",
                    self.at
                )),
            );
        }
        let length = u64::from_le_bytes(length_bytes.try_into().expect("8 bytes"));
        let available = (rest.len() - 12) as u64;
        if available < length.saturating_add(4) {
            return fail(
                self,
                RecordProblem::Truncated(format!(
                    "at offset {}: the record says {length} bytes of data (+4 of checksum), the shard has {available} left",
                    self.at
                )),
            );
        }
        let length = length as usize;
        let payload = &rest[12..12 + length];
        let stored =
            u32::from_le_bytes(rest[12 + length..16 + length].try_into().expect("4 bytes"));
        self.at += 16 + length;
        let computed = masked_crc32c(payload);
        if stored != computed {
            return Some((
                index,
                Err(RecordProblem::DataCrc(format!(
                    "data checksum {stored:#010x}, computed {computed:#010x} over {length} bytes"
                ))),
            ));
        }
        Some((index, Ok(payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_its_mask_match_tensorflow() {
        // The CRC-32C check value, and the 16 bytes tf.io.TFRecordWriter 2.21 writes for one
        // empty record (read from its output with `xxd`).
        assert_eq!(CRC32C.checksum(b"123456789"), 0xe306_9283);
        let mut out = Vec::new();
        write_record(&mut out, b"");
        let tensorflow = [
            0, 0, 0, 0, 0, 0, 0, 0, 0x29, 0x03, 0x98, 0x07, 0xd8, 0xea, 0x82, 0xa2,
        ];
        assert_eq!(out, tensorflow);
    }

    fn three() -> Vec<u8> {
        let mut out = Vec::new();
        for payload in [&b"first"[..], b"second", b"third!"] {
            write_record(&mut out, payload);
        }
        out
    }

    #[test]
    fn reads_back_what_it_writes() {
        let file = three();
        assert!(looks_like_tfrecord(&file));
        assert!(!looks_like_tfrecord(b"0\t1\t2\t3\t4\t5\t6\t7\n"));
        let read: Vec<_> = Records::new(&file).map(|(i, r)| (i, r.unwrap())).collect();
        assert_eq!(read, [(0, &b"first"[..]), (1, b"second"), (2, b"third!")]);
    }

    #[test]
    fn a_bad_data_crc_spoils_one_record_and_the_shard_goes_on() {
        let mut file = three();
        // Record 1 starts after record 0 (12 + 5 + 4 bytes); flip a byte of its data.
        file[21 + 12] ^= 0x40;
        let read: Vec<_> = Records::new(&file).collect();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].1, Ok(&b"first"[..]));
        assert!(
            matches!(&read[1].1, Err(RecordProblem::DataCrc(why)) if why.contains("over 6 bytes")),
            "{:?}",
            read[1]
        );
        assert_eq!(read[2].1, Ok(&b"third!"[..]));
    }

    #[test]
    fn a_bad_length_crc_or_a_cut_ends_the_shard_with_a_report() {
        let mut file = three();
        file[21] ^= 0x01; // record 1's length
        let read: Vec<_> = Records::new(&file).collect();
        assert_eq!(read.len(), 2);
        assert!(
            matches!(&read[1], (1, Err(RecordProblem::LengthCrc(_)))),
            "{:?}",
            read[1]
        );

        let file = three();
        for cut in [file.len() - 1, file.len() - 10, 21 + 5] {
            let read: Vec<_> = Records::new(&file[..cut]).collect();
            let (index, last) = read.last().unwrap();
            assert!(
                matches!(last, Err(RecordProblem::Truncated(_))),
                "cut at {cut}: {last:?}"
            );
            assert_eq!(*index, read.len() as u64 - 1);
        }
    }
}

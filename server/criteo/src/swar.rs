//! Byte tests eight at a time in one `u64` ("SIMD within a register"), for the transform's fast
//! path: where the tabs of a row are, and whether a token is 8 hex digits. Portable and free of
//! `unsafe`; a row of ~240 bytes is about 30 words, where `memchr` per column paid a call and a
//! vector setup for every one of its 40 short columns.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The high bit of every byte of `word` that is zero, and no other bit (exact: no borrow
/// crosses from one byte into the next, unlike the shorter `(x - ONES) & !x` test).
#[inline(always)]
fn zero_bytes(word: u64) -> u64 {
    !(((word & LOW7).wrapping_add(LOW7)) | word | LOW7)
}

/// The high bit of every byte of `word` equal to `byte`.
#[inline(always)]
pub fn bytes_equal(word: u64, byte: u8) -> u64 {
    zero_bytes(word ^ (ONES * u64::from(byte)))
}

/// Writes the offsets of the tabs in `line` to `tabs` and returns how many there are, or `None`
/// when there are more than `tabs` holds.
#[inline]
pub fn find_tabs(line: &[u8], tabs: &mut [u32]) -> Option<usize> {
    let mut found = 0usize;
    let mut push = |at: usize| -> Option<()> {
        *tabs.get_mut(found)? = at as u32;
        found += 1;
        Some(())
    };
    let mut words = line.chunks_exact(8);
    let mut base = 0usize;
    for word in &mut words {
        let mut mask = bytes_equal(u64::from_le_bytes(word.try_into().expect("8 bytes")), b'\t');
        while mask != 0 {
            push(base + (mask.trailing_zeros() / 8) as usize)?;
            mask &= mask - 1;
        }
        base += 8;
    }
    for (i, &b) in words.remainder().iter().enumerate() {
        if b == b'\t' {
            push(base + i)?;
        }
    }
    Some(found)
}

/// Whether every byte of `word` is in `lo..=hi`; all bytes must be below 0x80 (checked by the
/// caller), so the additions below never carry from one byte into the next.
#[inline(always)]
fn all_in(word: u64, lo: u8, hi: u8) -> u64 {
    let at_least_lo = word.wrapping_add(ONES * u64::from(0x80 - lo));
    let above_hi = word.wrapping_add(ONES * u64::from(0x7f - hi));
    at_least_lo & !above_hi & HIGH
}

/// Whether the 8 bytes of `word` (little-endian) are all ASCII hex digits, either case.
#[inline(always)]
pub fn is_hex8(word: u64) -> bool {
    if word & HIGH != 0 {
        return false;
    }
    let digits = all_in(word, b'0', b'9');
    let lower = all_in(word, b'a', b'f');
    let upper = all_in(word, b'A', b'F');
    digits | lower | upper == HIGH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_are_found_exactly_wherever_they_are() {
        // Every byte value next to a tab at every offset within a word, so a borrow or carry
        // between bytes would show.
        for len in 0..40 {
            for at in 0..len {
                for other in 0..=255u8 {
                    let mut line = vec![other; len];
                    line[at] = b'\t';
                    let mut tabs = [0u32; 64];
                    let n = find_tabs(&line, &mut tabs).unwrap();
                    let want: Vec<u32> = line
                        .iter()
                        .enumerate()
                        .filter(|(_, b)| **b == b'\t')
                        .map(|(i, _)| i as u32)
                        .collect();
                    assert_eq!(tabs[..n], want[..], "len {len}, tab at {at}, other {other}");
                }
            }
        }
    }

    #[test]
    fn too_many_tabs_is_none() {
        let mut tabs = [0u32; 3];
        assert_eq!(find_tabs(b"a\tb\tc\td", &mut tabs), Some(3));
        assert_eq!(find_tabs(b"a\tb\tc\td\t", &mut tabs), None);
        assert_eq!(find_tabs(b"\t\t\t\t\t\t\t\t\t", &mut tabs), None);
    }

    #[test]
    fn hex_agrees_with_the_standard_library_for_every_byte_in_every_position() {
        for at in 0..8 {
            for b in 0..=255u8 {
                let mut token = *b"0aF9b8E7";
                token[at] = b;
                let want = token.iter().all(u8::is_ascii_hexdigit);
                assert_eq!(
                    is_hex8(u64::from_le_bytes(token)),
                    want,
                    "byte {b:#04x} at {at}"
                );
            }
        }
    }
}

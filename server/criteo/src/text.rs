//! Decimal integers written into a byte buffer without allocating: the generator and the batch
//! scorer write one per field or row, millions of times, where `write!` would cost a formatter
//! call each.

/// Appends `value` in decimal.
pub fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// Appends `value` in decimal, with a leading `-` when negative.
pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    write_u64(out, value.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_formatting() {
        for value in [0, 7, 10, -1, -10, 1_234_567, i64::MIN, i64::MAX] {
            let mut out = b"x".to_vec();
            write_i64(&mut out, value);
            assert_eq!(out, format!("x{value}").into_bytes());
        }
        let mut out = Vec::new();
        write_u64(&mut out, u64::MAX);
        assert_eq!(out, u64::MAX.to_string().into_bytes());
    }
}

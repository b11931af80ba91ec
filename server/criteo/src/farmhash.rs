//! FarmHash `Fingerprint64` (farmhashna's `Hash64`), the hash behind TensorFlow's
//! `tf.strings.to_hash_bucket_fast` and feature columns' `categorical_column_with_hash_bucket`:
//! a string's bucket is `fingerprint64(s) % buckets`. It must match bit for bit, or a model fitted
//! with TensorFlow would see different ids here (train/serve skew), so the tests check published
//! reference values for every length class (0-16, 17-32, 33-64 and longer bytes).
//!
//! Also [`fingerprint_cat64`], TensorFlow's way of combining two fingerprints (used by its hashed
//! crosses), which we use to hash feature crosses.

const K0: u64 = 0xc3a5_c85c_97cb_3127;
const K1: u64 = 0xb492_b66f_be98_f273;
const K2: u64 = 0x9ae1_6a3b_2f90_404f;

#[inline(always)]
fn fetch64(s: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"))
}

#[inline(always)]
fn fetch32(s: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(
        s[at..at + 4].try_into().expect("4 bytes"),
    ))
}

#[inline(always)]
fn shift_mix(v: u64) -> u64 {
    v ^ (v >> 47)
}

#[inline(always)]
fn hash_len16(u: u64, v: u64, mul: u64) -> u64 {
    let mut a = (u ^ v).wrapping_mul(mul);
    a ^= a >> 47;
    let mut b = (v ^ a).wrapping_mul(mul);
    b ^= b >> 47;
    b.wrapping_mul(mul)
}

#[inline(always)]
fn hash_len0to16(s: &[u8]) -> u64 {
    let len = s.len();
    if len >= 8 {
        let mul = K2.wrapping_add(len as u64 * 2);
        let a = fetch64(s, 0).wrapping_add(K2);
        let b = fetch64(s, len - 8);
        let c = b.rotate_right(37).wrapping_mul(mul).wrapping_add(a);
        let d = a.rotate_right(25).wrapping_add(b).wrapping_mul(mul);
        return hash_len16(c, d, mul);
    }
    if len >= 4 {
        let mul = K2.wrapping_add(len as u64 * 2);
        let a = fetch32(s, 0);
        return hash_len16((len as u64).wrapping_add(a << 3), fetch32(s, len - 4), mul);
    }
    if len > 0 {
        let (a, b, c) = (s[0] as u32, s[len >> 1] as u32, s[len - 1] as u32);
        let y = a.wrapping_add(b << 8);
        let z = (len as u32).wrapping_add(c << 2);
        return shift_mix(u64::from(y).wrapping_mul(K2) ^ u64::from(z).wrapping_mul(K0))
            .wrapping_mul(K2);
    }
    K2
}

fn hash_len17to32(s: &[u8]) -> u64 {
    let len = s.len();
    let mul = K2.wrapping_add(len as u64 * 2);
    let a = fetch64(s, 0).wrapping_mul(K1);
    let b = fetch64(s, 8);
    let c = fetch64(s, len - 8).wrapping_mul(mul);
    let d = fetch64(s, len - 16).wrapping_mul(K2);
    hash_len16(
        a.wrapping_add(b)
            .rotate_right(43)
            .wrapping_add(c.rotate_right(30))
            .wrapping_add(d),
        a.wrapping_add(b.wrapping_add(K2).rotate_right(18))
            .wrapping_add(c),
        mul,
    )
}

fn hash_len33to64(s: &[u8]) -> u64 {
    let len = s.len();
    let mul = K2.wrapping_add(len as u64 * 2);
    let a = fetch64(s, 0).wrapping_mul(K2);
    let b = fetch64(s, 8);
    let c = fetch64(s, len - 8).wrapping_mul(mul);
    let d = fetch64(s, len - 16).wrapping_mul(K2);
    let y = a
        .wrapping_add(b)
        .rotate_right(43)
        .wrapping_add(c.rotate_right(30))
        .wrapping_add(d);
    let z = hash_len16(
        y,
        a.wrapping_add(b.wrapping_add(K2).rotate_right(18))
            .wrapping_add(c),
        mul,
    );
    let e = fetch64(s, 16).wrapping_mul(mul);
    let f = fetch64(s, 24);
    let g = y.wrapping_add(fetch64(s, len - 32)).wrapping_mul(mul);
    let h = z.wrapping_add(fetch64(s, len - 24)).wrapping_mul(mul);
    hash_len16(
        e.wrapping_add(f)
            .rotate_right(43)
            .wrapping_add(g.rotate_right(30))
            .wrapping_add(h),
        e.wrapping_add(f.wrapping_add(a).rotate_right(18))
            .wrapping_add(g),
        mul,
    )
}

/// farmhash's `WeakHashLen32WithSeeds` over 32 bytes at `at`.
fn weak_hash_len32(s: &[u8], at: usize, a: u64, b: u64) -> (u64, u64) {
    let (w, x, y, z) = (
        fetch64(s, at),
        fetch64(s, at + 8),
        fetch64(s, at + 16),
        fetch64(s, at + 24),
    );
    let mut a = a.wrapping_add(w);
    let mut b = b.wrapping_add(a).wrapping_add(z).rotate_right(21);
    let c = a;
    a = a.wrapping_add(x).wrapping_add(y);
    b = b.wrapping_add(a.rotate_right(44));
    (a.wrapping_add(z), b.wrapping_add(c))
}

/// FarmHash `Fingerprint64` of `s`: stable across platforms and releases.
#[inline]
pub fn fingerprint64(s: &[u8]) -> u64 {
    let len = s.len();
    if len <= 16 {
        return hash_len0to16(s);
    }
    if len <= 32 {
        return hash_len17to32(s);
    }
    if len <= 64 {
        return hash_len33to64(s);
    }
    const SEED: u64 = 81;
    let mut x = SEED;
    let mut y = SEED.wrapping_mul(K1).wrapping_add(113);
    let mut z = shift_mix(y.wrapping_mul(K2).wrapping_add(113)).wrapping_mul(K2);
    let mut v = (0u64, 0u64);
    let mut w = (0u64, 0u64);
    x = x.wrapping_mul(K2).wrapping_add(fetch64(s, 0));
    let end = ((len - 1) / 64) * 64;
    let last64 = end + ((len - 1) & 63) - 63;
    let mut at = 0;
    while at != end {
        x = x
            .wrapping_add(y)
            .wrapping_add(v.0)
            .wrapping_add(fetch64(s, at + 8))
            .rotate_right(37)
            .wrapping_mul(K1);
        y = y
            .wrapping_add(v.1)
            .wrapping_add(fetch64(s, at + 48))
            .rotate_right(42)
            .wrapping_mul(K1);
        x ^= w.1;
        y = y.wrapping_add(v.0).wrapping_add(fetch64(s, at + 40));
        z = z.wrapping_add(w.0).rotate_right(33).wrapping_mul(K1);
        v = weak_hash_len32(s, at, v.1.wrapping_mul(K1), x.wrapping_add(w.0));
        w = weak_hash_len32(
            s,
            at + 32,
            z.wrapping_add(w.1),
            y.wrapping_add(fetch64(s, at + 16)),
        );
        std::mem::swap(&mut z, &mut x);
        at += 64;
    }
    let mul = K1.wrapping_add((z & 0xff) << 1);
    let at = last64;
    w.0 = w.0.wrapping_add(((len - 1) & 63) as u64);
    v.0 = v.0.wrapping_add(w.0);
    w.0 = w.0.wrapping_add(v.0);
    x = x
        .wrapping_add(y)
        .wrapping_add(v.0)
        .wrapping_add(fetch64(s, at + 8))
        .rotate_right(37)
        .wrapping_mul(mul);
    y = y
        .wrapping_add(v.1)
        .wrapping_add(fetch64(s, at + 48))
        .rotate_right(42)
        .wrapping_mul(mul);
    x ^= w.1.wrapping_mul(9);
    y = y
        .wrapping_add(v.0.wrapping_mul(9))
        .wrapping_add(fetch64(s, at + 40));
    z = z.wrapping_add(w.0).rotate_right(33).wrapping_mul(mul);
    v = weak_hash_len32(s, at, v.1.wrapping_mul(mul), x.wrapping_add(w.0));
    w = weak_hash_len32(
        s,
        at + 32,
        z.wrapping_add(w.1),
        y.wrapping_add(fetch64(s, at + 16)),
    );
    std::mem::swap(&mut z, &mut x);
    hash_len16(
        hash_len16(v.0, w.0, mul)
            .wrapping_add(shift_mix(y).wrapping_mul(K0))
            .wrapping_add(z),
        hash_len16(v.1, w.1, mul).wrapping_add(x),
        mul,
    )
}

/// [`fingerprint64`] of exactly 8 bytes, given as one little-endian word: the length of every
/// Criteo categorical token, so the transform's fast path skips the length dispatch.
#[inline(always)]
pub fn fingerprint64_word(word: u64) -> u64 {
    const MUL: u64 = K2.wrapping_add(16);
    let a = word.wrapping_add(K2);
    let c = word.rotate_right(37).wrapping_mul(MUL).wrapping_add(a);
    let d = a.rotate_right(25).wrapping_add(word).wrapping_mul(MUL);
    hash_len16(c, d, MUL)
}

/// TensorFlow's `FingerprintCat64`: combines two fingerprints into one, order-sensitively.
#[inline]
pub fn fingerprint_cat64(fp1: u64, fp2: u64) -> u64 {
    const MUL: u64 = 0xc6a4_a793_5bd1_e995;
    let mut result = fp1 ^ MUL;
    result ^= shift_mix(fp2.wrapping_mul(MUL)).wrapping_mul(MUL);
    result = result.wrapping_mul(MUL);
    result = shift_mix(result).wrapping_mul(MUL);
    shift_mix(result)
}

/// `tf.strings.to_hash_bucket_fast(s, buckets)`: the bucket of `s` among `buckets`.
#[inline]
pub fn hash_bucket_fast(s: &[u8], buckets: u64) -> u64 {
    fingerprint64(s) % buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference `Fingerprint64` values: the `oh64na` column (farmhashna::Hash64, which is
    /// `Fingerprint64`) of dgryski/go-farm's farmhash_test.go, itself checked against Google's
    /// C++ farmhash. Chosen to cover each length branch: 0, 1-3, 4-7, 8-16, 17-32, 33-64, 65+.
    const REFERENCE: &[(&str, u64)] = &[
        ("", 0x9ae16a3b2f90404f),
        ("a", 0xb3454265b6df75e3),
        ("ab", 0xaa8d6e5242ada51e),
        ("abc", 0x24a5b3a074e7f369),
        ("abcd", 0x1a5502de4a1f8101),
        ("abcdefg", 0x3c40c92b1ccb7355),
        ("abcdefgh", 0xfee9d22990c82909),
        ("0123456789'01234", 0x4283d4ef43627f64),
        ("0123456789=012345", 0x46a7416ed4861e3b),
        ("C is as portable as Stonehedge!!", 0xb944f8a16261e414),
        (
            "Discard medicine more than two years old.",
            0xe8f89ab6df9bdd25,
        ),
        (
            "The days of the digital watch are numbered.  -Tom Stoppard",
            0x2a578b80bb82147c,
        ),
        (
            "For every action there is an equal and opposite government program.",
            0x55182f8859eca4ce,
        ),
        (
            "You remind me of a TV show, but that's all right: I watch it anyway.",
            0xabcdb319fcf2826c,
        ),
        (
            "The fugacity of a constituent in a mixture of gases at a given temperature is proportional to its mole fraction.  Lewis-Randall Rule",
            0x98eff6958c5e91a,
        ),
    ];

    #[test]
    fn fingerprint64_matches_farmhash_reference_values() {
        for &(input, expected) in REFERENCE {
            assert_eq!(
                fingerprint64(input.as_bytes()),
                expected,
                "Fingerprint64({input:?}) (length {})",
                input.len()
            );
        }
    }

    /// TensorFlow's own test of `string_to_hash_bucket_fast` (string_to_hash_bucket_op_test.py):
    /// 'a', 'b', 'c', 'd' into 10 buckets give 9, 2, 2, 5, from Fingerprint64 values it states
    /// in its comments.
    #[test]
    fn hash_buckets_match_tensorflow_string_to_hash_bucket_fast() {
        let buckets: Vec<u64> = ["a", "b", "c", "d"]
            .iter()
            .map(|s| hash_bucket_fast(s.as_bytes(), 10))
            .collect();
        assert_eq!(buckets, [9, 2, 2, 5]);
        assert_eq!(fingerprint64(b"a"), 12917804110809363939);
        assert_eq!(fingerprint64(b"b"), 11795596070477164822);
        assert_eq!(fingerprint64(b"c"), 11430444447143000872);
        assert_eq!(fingerprint64(b"d"), 4470636696479570465);
        assert!(
            ["a", "b", "c"]
                .iter()
                .all(|s| hash_bucket_fast(s.as_bytes(), 1) == 0)
        );
    }

    #[test]
    fn the_one_word_fingerprint_is_the_8_byte_fingerprint() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..10_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let bytes = state.to_le_bytes();
            assert_eq!(
                fingerprint64_word(state),
                fingerprint64(&bytes),
                "{bytes:?}"
            );
        }
        for &(input, expected) in REFERENCE.iter().filter(|(s, _)| s.len() == 8) {
            let word = u64::from_le_bytes(input.as_bytes().try_into().unwrap());
            assert_eq!(fingerprint64_word(word), expected, "{input:?}");
        }
    }

    #[test]
    fn cat64_is_order_sensitive() {
        let (a, b) = (fingerprint64(b"68fd1e64"), fingerprint64(b"80e26c9b"));
        assert_ne!(fingerprint_cat64(a, b), fingerprint_cat64(b, a));
        assert_ne!(fingerprint_cat64(a, b), a ^ b);
    }
}

use super::*;
use crate::farmhash::hash_bucket_fast;

const TOKENS: [&str; 26] = [
    "68fd1e64", "80e26c9b", "fb936136", "7b4723c4", "25c83c98", "7e0ccccf", "de7995b8", "1f89b562",
    "a73ee510", "a8cd5504", "b2cb9c98", "37c9c164", "2824a5f6", "1adce6ef", "8ba8b39a", "891b62e7",
    "e5ba7672", "f54016b9", "21ddcdc9", "b1252a9d", "07b5194c", "", "3a171ecb", "c5c50484",
    "e8b83407", "9727dd16",
];

fn row(label: Option<&str>, ints: [&str; 13], tokens: [&str; 26]) -> String {
    let mut cols: Vec<&str> = label.into_iter().collect();
    cols.extend(ints);
    cols.extend(tokens);
    cols.join("\t")
}

fn transformer() -> Transformer {
    Transformer::new(FeatureSpec::criteo_default()).unwrap()
}

#[test]
fn integers_bucketize_with_a_missing_bucket_and_tokens_hash_like_tensorflow() {
    let t = transformer();
    let spec = t.spec().clone();
    let ints = [
        "1", "", "-3", "0", "5", "7", "8", "65536", "100000", "2", "3", "4", "6",
    ];
    let line = row(Some("1"), ints, TOKENS);
    let mut ids = vec![0; t.fields()];
    assert_eq!(t.transform(line.as_bytes(), &mut ids), Ok(Some(true)));

    // Boundaries [0,1,2,3,4,6,8,16,...,65536]: bucket 0 is missing, 1 is (-inf,0), 2 is [0,1)...
    let expected_buckets = [3, 0, 1, 2, 6, 7, 8, 21, 21, 4, 5, 6, 7];
    let size = spec.integer[0].size() as i64;
    for (i, bucket) in expected_buckets.into_iter().enumerate() {
        assert_eq!(
            ids[i],
            i as i64 * size + bucket,
            "integer column I{}",
            i + 1
        );
    }
    // Categoricals: offset + Fingerprint64(token) % buckets, the missing one gets id `buckets`.
    let mut offset = 13 * size;
    for (c, token) in TOKENS.iter().enumerate() {
        let buckets = spec.categorical[c].hash_buckets;
        let want = if token.is_empty() {
            buckets
        } else {
            hash_bucket_fast(token.as_bytes(), buckets)
        };
        assert_eq!(ids[13 + c], offset + want as i64, "categorical C{}", c + 1);
        offset += buckets as i64 + 1;
    }
    // Crosses: in their own ranges, after everything else.
    for k in 0..spec.cross.len() {
        let id = ids[39 + k];
        assert!(id >= offset && id < offset + spec.cross[k].hash_buckets as i64);
        offset += spec.cross[k].hash_buckets as i64;
    }
    assert_eq!(offset as u64, spec.id_space);
}

#[test]
fn the_label_is_optional_and_does_not_change_the_ids() {
    let t = transformer();
    let ints = ["1"; 13];
    let mut with = vec![0; t.fields()];
    let mut without = vec![0; t.fields()];
    let labelled = row(Some("0"), ints, TOKENS) + "\r\n";
    assert_eq!(t.transform(labelled.as_bytes(), &mut with), Ok(Some(false)));
    let unlabelled = row(None, ints, TOKENS);
    assert_eq!(t.transform(unlabelled.as_bytes(), &mut without), Ok(None));
    assert_eq!(with, without);
}

#[test]
fn crosses_change_when_either_component_changes() {
    let t = transformer();
    let mut a = vec![0; t.fields()];
    let mut b = vec![0; t.fields()];
    t.transform(row(None, ["1"; 13], TOKENS).as_bytes(), &mut a)
        .unwrap();
    let mut other = TOKENS;
    other[1] = "00000001"; // C2, in the C1 x C2 cross only
    t.transform(row(None, ["1"; 13], other).as_bytes(), &mut b)
        .unwrap();
    assert_ne!(a[39], b[39], "C1_x_C2 must see C2");
    assert_eq!(a[40..], b[40..], "the other crosses do not involve C2");
}

#[test]
fn every_bad_row_names_the_column() {
    let t = transformer();
    let mut ids = vec![0; t.fields()];
    let mut bad = |line: String| {
        t.transform(line.as_bytes(), &mut ids)
            .unwrap_err()
            .to_string()
    };

    let e = bad(row(None, ["1"; 13], TOKENS).replacen('\t', " ", 1));
    assert!(e.contains("expected 39") && e.contains("found 38"), "{e}");
    let e = bad(row(Some("1"), ["1"; 13], TOKENS) + "\textra");
    assert!(e.contains("found 41"), "{e}");
    let e = bad(row(Some("1"), ["1"; 13], TOKENS) + "\textra\tmore");
    assert!(e.contains("found 42"), "{e}");

    let mut ints = ["1"; 13];
    ints[4] = "12x";
    let e = bad(row(Some("1"), ints, TOKENS));
    assert!(
        e.contains("column 6 (I5)") && e.contains("'12x' is not an integer"),
        "{e}"
    );
    let e = bad(row(None, ints, TOKENS));
    assert!(e.contains("column 5 (I5)"), "{e}");
    ints[4] = "99999999999999999999";
    assert!(bad(row(None, ints, TOKENS)).contains("not an integer"));

    let mut tokens = TOKENS;
    tokens[2] = "zz936136";
    let e = bad(row(Some("0"), ["1"; 13], tokens));
    assert!(
        e.contains("column 17 (C3)") && e.contains("8 hex digits"),
        "{e}"
    );
    tokens[2] = "fb93613";
    assert!(bad(row(None, ["1"; 13], tokens)).contains("column 16 (C3)"));

    let e = bad(row(Some("2"), ["1"; 13], TOKENS));
    assert!(
        e.contains("column 1 (label)") && e.contains("not 0 or 1"),
        "{e}"
    );
}

#[test]
fn a_batch_becomes_one_ids_tensor_and_names_the_bad_row() {
    let t = transformer();
    let good = row(None, ["3"; 13], TOKENS);
    let tensor = t.ids_tensor(&[good.as_bytes(), good.as_bytes()]).unwrap();
    assert_eq!(tensor.shape, [2, t.fields()]);
    let TensorData::I64(ids) = &tensor.data else {
        panic!("ids are INT64")
    };
    assert_eq!(ids[..t.fields()], ids[t.fields()..]);

    let mut ints = ["3"; 13];
    ints[0] = "x";
    let bad = row(None, ints, TOKENS);
    let e = t
        .ids_tensor(&[good.as_bytes(), good.as_bytes(), bad.as_bytes()])
        .unwrap_err();
    assert_eq!(e.row, 2);
    assert!(e.to_string().starts_with("row 2: column 1 (I1)"), "{e}");
}

/// Generated rows, each also with random damage: bytes replaced by tabs, signs, digits, letters,
/// spaces, `\r` and non-ASCII, bytes dropped or doubled, a token case-flipped.
fn generated_and_damaged_rows(n: usize) -> Vec<Vec<u8>> {
    use crate::generate::{RowGenerator, calibrated_model};
    use crate::rng::SplitMix;
    let t = transformer();
    let model = calibrated_model(3, &t);
    let mut generator = RowGenerator::new(7, &t, &model);
    let mut rng = SplitMix::new(99);
    const NOISE: &[u8] = b"\t\t\t-+0159afAFgGz \r\x80\xff\x00.";
    let mut rows = Vec::new();
    for _ in 0..n {
        let mut line = Vec::new();
        generator.row(&mut line);
        let line = line.strip_suffix(b"\n").unwrap_or(&line).to_vec();
        let mut damaged = line.clone();
        for _ in 0..=rng.next_u64() % 3 {
            let at = (rng.next_u64() % damaged.len() as u64) as usize;
            let noise = NOISE[(rng.next_u64() % NOISE.len() as u64) as usize];
            match rng.next_u64() % 4 {
                0 => damaged[at] = noise,
                1 => {
                    damaged.remove(at);
                }
                2 => damaged.insert(at, noise),
                _ => damaged[at] = damaged[at].to_ascii_uppercase(),
            }
        }
        // The label dropped: 39 columns are as valid as 40.
        let unlabelled = line[line.iter().position(|&b| b == b'\t').unwrap() + 1..].to_vec();
        rows.extend([line, damaged, unlabelled]);
    }
    rows
}

#[test]
fn the_fast_path_agrees_with_the_checked_path_on_good_and_damaged_rows() {
    let t = transformer();
    let (mut fast_ids, mut checked_ids) = (vec![0; t.fields()], vec![0; t.fields()]);
    let (mut fast_taken, mut malformed) = (0, 0);
    for line in generated_and_damaged_rows(20_000) {
        if t.transform_fast(&line, &mut fast_ids).is_some() {
            fast_taken += 1;
        }
        // What callers see: `transform`, with and without line ends, against the checked path
        // alone on the line without its end.
        for end in [&b""[..], b"\n", b"\r\n"] {
            let with_end = [&line[..], end].concat();
            let checked = t.transform_checked(strip_line_end(&with_end), &mut checked_ids);
            let got = t.transform(&with_end, &mut fast_ids);
            assert_eq!(got, checked, "{:?}", String::from_utf8_lossy(&with_end));
            if checked.is_ok() {
                assert_eq!(
                    fast_ids,
                    checked_ids,
                    "{:?}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
        malformed += usize::from(t.transform_checked(&line, &mut checked_ids).is_err());
    }
    // Both kinds really were exercised: every good row on the fast path, many bad ones.
    assert!(fast_taken >= 40_000, "fast path took {fast_taken} of 60000");
    assert!(
        malformed > 5_000,
        "only {malformed} damaged rows were malformed"
    );
}

/// Reference values from TensorFlow 2.21 itself: `tf.sparse.cross_hashed([a, b],
/// num_buckets=65536)` on [1, 1] dense inputs, strings as `tf.io.decode_csv` reads the columns (an
/// empty field is ""), integers as their bucket ids (missing 0, else Bucketize + 1).
#[test]
fn crosses_match_tensorflow_including_missing_values() {
    assert_eq!(MISSING_TOKEN, fingerprint64(b""));
    let t = transformer();
    let spec = t.spec();
    let first_cross = (spec.id_space - 3 * 65536) as i64;
    let mut ids = vec![0; t.fields()];
    let mut cross_ids = |ints: [&str; 13], tokens: [&str; 26]| {
        t.transform(row(None, ints, tokens).as_bytes(), &mut ids)
            .unwrap();
        [
            ids[39] - first_cross,
            ids[40] - first_cross - 65536,
            ids[41] - first_cross - 2 * 65536,
        ]
    };
    // C1 x C2: both present, either missing, both missing.
    let mut tokens = TOKENS;
    assert_eq!(cross_ids(["1"; 13], tokens)[0], 44014);
    tokens[1] = "";
    assert_eq!(cross_ids(["1"; 13], tokens)[0], 19439);
    tokens[0] = "";
    assert_eq!(cross_ids(["1"; 13], tokens)[0], 51333);
    tokens[1] = TOKENS[1];
    assert_eq!(cross_ids(["1"; 13], tokens)[0], 15637);
    // I1 x C6: I1 = 2 is bucket id 4 (boundaries 0, 1, 2 at or below it, plus one).
    let mut ints = ["1"; 13];
    ints[0] = "2";
    assert_eq!(cross_ids(ints, TOKENS)[2], 16173);
    // Both missing: bucket id 0 crossed with "".
    ints[0] = "";
    tokens = TOKENS;
    tokens[5] = "";
    assert_eq!(cross_ids(ints, tokens)[2], 35390);
}

/// What `tf.strings.to_number(s, tf.int64)` (TensorFlow 2.21) accepts and refuses: the same here,
/// through both paths of the transform.
#[test]
fn integers_parse_as_tensorflow_parses_them() {
    for (text, value) in [
        ("+5", 5),
        (" 5", 5),
        ("5 ", 5),
        ("007", 7),
        ("-0", 0),
        ("9223372036854775807", i64::MAX),
        ("-9223372036854775808", i64::MIN),
        ("123456789012345678", 123_456_789_012_345_678),
        ("-1234567890123456789", -1_234_567_890_123_456_789),
    ] {
        assert_eq!(parse_i64(text.as_bytes()), Some(value), "{text:?}");
    }
    for text in [
        "9223372036854775808",
        "-9223372036854775809",
        "99999999999999999999",
        "0x10",
        "1e3",
        "+",
        "-",
        "+-5",
        " ",
        "5 5",
    ] {
        assert_eq!(parse_i64(text.as_bytes()), None, "{text:?}");
    }
    // A whole row: the largest value lands in the last bucket, as TensorFlow's Bucketize puts it.
    let t = transformer();
    let mut ints = ["1"; 13];
    ints[2] = "9223372036854775807";
    ints[3] = "+5";
    let mut ids = vec![0; t.fields()];
    t.transform(row(None, ints, TOKENS).as_bytes(), &mut ids)
        .unwrap();
    let size = t.spec().integer[0].size() as i64;
    assert_eq!(ids[2], 2 * size + size - 1);
    // 5: boundaries 0, 1, 2, 3, 4 at or below it, plus one.
    assert_eq!(ids[3], 3 * size + 6);
}

#[test]
fn check_ids_accepts_transformed_rows_and_names_the_first_id_out_of_range() {
    let t = transformer();
    let fields = t.fields();
    let mut ids = vec![0; 3 * fields];
    for chunk in ids.chunks_mut(fields) {
        t.transform(row(Some("0"), ["1"; 13], TOKENS).as_bytes(), chunk)
            .unwrap();
    }
    assert_eq!(t.check_ids(&ids), Ok(()));
    assert_eq!(t.check_ids(&[]), Ok(()));

    // Row 2, position 5: one past its feature's slice, which is the next feature's first id.
    let (_, range) = &t.fields_ids[5];
    ids[2 * fields + 5] = range.end;
    let err = t.check_ids(&ids).unwrap_err();
    assert!(err.contains("at row 2, position 5"), "{err}");
    assert!(
        err.contains(&format!("{}..{}", range.start, range.end)),
        "{err}"
    );
    // A negative id in an earlier row is the one named.
    ids[fields] = -1;
    let err = t.check_ids(&ids).unwrap_err();
    assert!(err.contains("id -1 at row 1, position 0"), "{err}");

    // Each slice's edges, and the extremes, which the check's wrapping subtraction must not
    // carry into range.
    let mut edges = vec![0; fields];
    t.transform(row(Some("0"), ["1"; 13], TOKENS).as_bytes(), &mut edges)
        .unwrap();
    let (_, range) = t.fields_ids[7].clone();
    for (id, ok) in [
        (range.start, true),
        (range.end - 1, true),
        (range.start - 1, false),
        (range.end, false),
        (i64::MIN, false),
        (i64::MAX, false),
    ] {
        edges[7] = id;
        assert_eq!(t.check_ids(&edges).is_ok(), ok, "id {id} for {range:?}");
    }
}

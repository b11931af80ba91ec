use super::*;

fn small(out: &Path, compression: Compression, seed: u64) -> GenerateReport {
    let config = GenerateConfig {
        out: out.to_path_buf(),
        days: 2,
        rows_per_day: 3001,
        shards_per_day: 2,
        compression,
        seed,
    };
    generate(&config, &|_| {}).unwrap()
}

#[test]
fn generated_rows_are_valid_deterministic_and_realistic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let report = small(a.path(), Compression::None, 7);
    small(b.path(), Compression::None, 7);
    assert_eq!(report.rows, 6002);
    assert_eq!(report.shards.len(), 4);
    for shard in &report.shards {
        let x = std::fs::read(a.path().join(shard)).unwrap();
        let y = std::fs::read(b.path().join(shard)).unwrap();
        assert!(x == y, "{shard} differs between two runs with one seed");
    }
    // 3001 rows in 2 shards: 1501 + 1500.
    let first = std::fs::read_to_string(a.path().join("day_0/part-00000")).unwrap();
    assert_eq!(first.lines().count(), 1501);

    let t = Transformer::new(report.spec.clone()).unwrap();
    let mut ids = vec![0; t.fields()];
    let (mut empty_ints, mut empty_tokens, mut max_int) = (0, 0, 0i64);
    for line in first.lines() {
        assert!(t.transform(line.as_bytes(), &mut ids).unwrap().is_some());
        let cols: Vec<&str> = line.split('\t').collect();
        empty_ints += cols[1..14].iter().filter(|c| c.is_empty()).count();
        empty_tokens += cols[14..].iter().filter(|c| c.is_empty()).count();
        max_int = max_int.max(cols[5].parse().unwrap_or(0));
    }
    assert!(
        empty_ints > 1501 && empty_tokens > 1501,
        "{empty_ints} {empty_tokens}"
    );
    assert!(max_int > 10_000, "I5 should be heavy tailed, max {max_int}");
    // A click rate near 3.3 % (binomial noise on 6002 rows is about 0.23 %).
    assert!(
        (0.022..0.045).contains(&report.click_rate),
        "{}",
        report.click_rate
    );
    assert!(report.bayes_log_loss < report.base_rate_entropy);
    let json: GenerateReport =
        serde_json::from_slice(&std::fs::read(a.path().join(REPORT_FILE)).unwrap()).unwrap();
    assert_eq!(json.true_model, report.true_model);

    let other = tempfile::tempdir().unwrap();
    small(other.path(), Compression::None, 8);
    assert!(std::fs::read(other.path().join("day_0/part-00000")).unwrap() != first.as_bytes());
}

#[test]
fn compressed_shards_hold_the_same_rows() {
    let plain = tempfile::tempdir().unwrap();
    let gz = tempfile::tempdir().unwrap();
    let bz = tempfile::tempdir().unwrap();
    small(plain.path(), Compression::None, 3);
    let report = small(gz.path(), Compression::Gzip, 3);
    assert_eq!(report.shards[3], "day_1/part-00001.gz");
    small(bz.path(), Compression::Bzip2, 3);
    let read = |p: PathBuf| {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut crate::shard::open_shard(&p).unwrap(), &mut v).unwrap();
        v
    };
    let want = read(plain.path().join("day_1/part-00001"));
    assert!(read(gz.path().join("day_1/part-00001.gz")) == want);
    assert!(read(bz.path().join("day_1/part-00001.bz2")) == want);
}

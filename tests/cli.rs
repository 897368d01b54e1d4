//! End-to-end tests of the real `refrain` binary on synthesized files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use refrain::synth;

fn refrain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_refrain"))
        .args(args)
        .output()
        .expect("the refrain binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes mono 16-bit PCM WAV.
fn write_wav(path: &Path, samples: &[f32], rate: u32) {
    std::fs::write(path, synth::wav_bytes(samples, rate)).unwrap();
}

fn piece(seed: u64, bars: usize, rate: u32) -> Vec<f32> {
    synth::render(
        &synth::compose(seed, bars),
        &synth::Render {
            sample_rate: rate,
            ..synth::Render::default()
        },
    )
}

#[test]
fn fingerprint_writes_good_files_reports_bad_ones_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    write_wav(&input.join("a.wav"), &piece(1, 4, 22_050), 22_050);
    write_wav(&input.join("sub/b.wav"), &piece(2, 4, 44_100), 44_100);
    std::fs::write(input.join("broken.mp3"), b"this is not audio at all").unwrap();
    std::fs::write(input.join("readme.txt"), b"ignored").unwrap();
    let out = dir.path().join("fp");
    let o = refrain(&[
        "fingerprint",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("broken.mp3"), "{err}");
    assert!(
        err.contains("fingerprinted 2 file(s)") && err.contains("1 failed"),
        "{err}"
    );
    let a: PathBuf = out.join("a.wav.rfp");
    assert!(a.is_file() && out.join("sub/b.wav.rfp").is_file());

    // inspect reads the fingerprint file ...
    let o = refrain(&["inspect", a.to_str().unwrap()]);
    let shown = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for field in [
        "duration",
        "tuning",
        "melody range",
        "voiced share",
        "windows",
    ] {
        assert!(shown.contains(field), "{shown}");
    }
    // ... and analyses audio directly, with the same facts
    let o2 = refrain(&["inspect", input.join("a.wav").to_str().unwrap()]);
    assert!(o2.status.success());
    let windows = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("windows"))
            .map(String::from)
    };
    assert_eq!(windows(&shown), windows(&text(&o2.stdout)));
}

#[test]
fn all_good_inputs_exit_zero_and_missing_paths_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("only.wav");
    write_wav(&wav, &piece(3, 2, 11_025), 11_025);
    let out = dir.path().join("o");
    let o = refrain(&[
        "fingerprint",
        wav.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(out.join("only.wav.rfp").is_file());

    let missing = dir.path().join("nope.flac");
    let o = refrain(&[
        "fingerprint",
        missing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("nope.flac"));

    let o = refrain(&["inspect", missing.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("nope.flac"));
}

#[test]
fn inspect_refuses_a_fingerprint_of_another_version() {
    let dir = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("fingerprints/v1/a4_sine_2s.rfp");
    let mut bytes = std::fs::read(sample).unwrap();
    bytes[8] = 9; // version 9
    let p = dir.path().join("future.rfp");
    std::fs::write(&p, bytes).unwrap();
    let o = refrain(&["inspect", p.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("future.rfp") && err.contains("version 9"),
        "{err}"
    );
}

#[test]
fn index_then_audit_end_to_end_with_the_exact_csv_header() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train");
    std::fs::create_dir_all(&train).unwrap();
    let rate = 22_050;
    for seed in 1..=4u64 {
        write_wav(
            &train.join(format!("song{seed}.wav")),
            &piece(seed, 16, rate),
            rate,
        );
    }
    let index = dir.path().join("index");
    let o = refrain(&[
        "index",
        train.to_str().unwrap(),
        "--out",
        index.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("indexed 4 new item(s)"));

    // queries: an excerpt of song 2, an original, and a broken file
    let q = dir.path().join("q");
    std::fs::create_dir_all(&q).unwrap();
    let song2 = piece(2, 16, rate);
    write_wav(
        &q.join("copy.wav"),
        &song2[rate as usize * 5..rate as usize * 20],
        rate,
    );
    write_wav(&q.join("original.wav"), &piece(77, 8, rate), rate);
    std::fs::write(q.join("broken.flac"), b"fLaC but not really").unwrap();
    let csv_path = dir.path().join("report.csv");
    let o = refrain(&[
        "audit",
        "--index",
        index.to_str().unwrap(),
        q.to_str().unwrap(),
        "--out",
        csv_path.to_str().unwrap(),
        "--summary",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a broken input makes the run fail at the end"
    );
    assert!(text(&o.stderr).contains("memorization rate"));
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "input,verdict,match,audio_score,melody_score,query_start_s,query_end_s,match_start_s,match_end_s,transpose_semitones,tempo_ratio,error"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{csv}");
    let row = |name: &str| *rows.iter().find(|r| r.contains(name)).unwrap();
    assert!(
        row("copy.wav").contains(",flag,") && row("copy.wav").contains("song2.wav"),
        "{csv}"
    );
    assert!(row("original.wav").contains(",pass,"), "{csv}");
    assert!(row("broken.flac").contains(",error,"), "{csv}");

    // JSON carries the candidates and the thresholds
    let o = refrain(&[
        "audit",
        "--index",
        index.to_str().unwrap(),
        q.join("copy.wav").to_str().unwrap(),
        "--format",
        "json",
        "--top",
        "3",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format"], "refrain-audit");
    assert!(v["thresholds"]["audio"].is_number());
    let cands = v["results"][0]["candidates"].as_array().unwrap();
    assert!(!cands.is_empty() && cands.len() <= 3);

    // --add skips what is already there and appends the rest
    let more = dir.path().join("more");
    std::fs::create_dir_all(&more).unwrap();
    write_wav(&more.join("song5.wav"), &piece(5, 8, rate), rate);
    std::fs::copy(train.join("song1.wav"), more.join("again.wav")).unwrap();
    let o = refrain(&[
        "index",
        more.to_str().unwrap(),
        "--out",
        index.to_str().unwrap(),
        "--add",
    ]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("indexed 1 new item(s)") && err.contains("1 already present"),
        "{err}"
    );
}

#[test]
fn demo_runs_and_flags_its_copies() {
    let o = refrain(&["demo"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with("input,verdict,match,"), "{out}");
    for line in out.lines().skip(1) {
        if line.contains("a_copy_of") || line.contains("b_copy_of") || line.contains("c_copy_of") {
            assert!(line.contains(",flag,"), "{line}");
        }
        if line.contains("_original_") {
            assert!(line.contains(",pass,"), "{line}");
        }
    }
}

/// A tiny evaluation set in the development set's layout: 4 training songs,
/// copies of two of them, and 12 negatives from 6 unrelated sources.
fn tiny_devset(root: &Path) {
    let rate = 22_050;
    for d in ["train", "query/copy_plain", "neg"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut truth = String::new();
    for seed in 1..=4u64 {
        write_wav(
            &root.join(format!("train/song{seed}.wav")),
            &piece(seed, 16, rate),
            rate,
        );
    }
    for seed in [1u64, 3] {
        let x = piece(seed, 16, rate);
        let cut = &x[5 * rate as usize..20 * rate as usize];
        let name = format!("query/copy_plain/song{seed}__copy.wav");
        write_wav(&root.join(&name), cut, rate);
        truth.push_str(&format!("{name}\tsong{seed}\tcopy_plain\n"));
    }
    for src in 0..6u64 {
        let x = piece(500 + src, 12, rate);
        for (k, (a, b)) in [(0usize, 10usize), (8, 20)].into_iter().enumerate() {
            let name = format!("neg/other{src}__part{k}.wav");
            write_wav(
                &root.join(&name),
                &x[a * rate as usize..b * rate as usize],
                rate,
            );
            truth.push_str(&format!("{name}\t-\tneg\n"));
        }
    }
    std::fs::write(root.join("truth.tsv"), truth).unwrap();
}

#[test]
fn calibrate_eval_and_memorization_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    tiny_devset(&dev);
    let work = dir.path().join("work");

    // eval: index, calibrate on half the negative sources, audit, score
    let o = refrain(&[
        "eval",
        dev.to_str().unwrap(),
        "--work",
        work.to_str().unwrap(),
    ]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        err.contains("calibrated on 6 negative file(s) from 3 source(s)"),
        "{err}"
    );
    let copy_row = out
        .lines()
        .find(|l| l.starts_with("copy_plain"))
        .unwrap_or_else(|| panic!("{out}"));
    // both copies identified and flagged
    assert!(copy_row.contains("100.0% 100.0%"), "{copy_row}");
    assert!(
        out.contains("neg (verdict FPR)          6 flagged=0"),
        "{out}"
    );
    let truth_test = std::fs::read_to_string(work.join("truth-test.tsv")).unwrap();
    assert_eq!(truth_test.lines().count(), 2 + 6, "{truth_test}");
    let csv = std::fs::read_to_string(work.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 + 6, "{csv}");

    // calibrate: thresholds stored in the manifest with what they achieved
    let index = work.join("index");
    let o = refrain(&[
        "calibrate",
        "--index",
        index.to_str().unwrap(),
        dev.join("neg").to_str().unwrap(),
        "--fpr",
        "0.05",
    ]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("either: 0 of 12 negatives flagged"), "{out}");
    assert!(
        err.contains("calibrated for 5.0 % false positives on 12 negatives"),
        "{err}"
    );
    let gen = std::fs::read_to_string(index.join("CURRENT")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(index.join(gen.trim()).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let t = &manifest["thresholds"];
    assert_eq!(t["method"], "calibrated", "{t}");
    assert_eq!(t["negatives"], 12, "{t}");
    assert_eq!(t["target_fpr"], 0.05, "{t}");
    // 0 of 12 flagged: the exact one-sided bound is 1 - 0.05^(1/12)
    let up = t["fpr_upper_95"].as_f64().unwrap();
    assert!((up - (1.0 - 0.05f64.powf(1.0 / 12.0))).abs() < 1e-9, "{t}");

    // self-calibration needs no negatives (a dry run leaves the index as it is)
    let o = refrain(&[
        "calibrate",
        "--index",
        index.to_str().unwrap(),
        "--self",
        "--fpr",
        "0.1",
        "--dry-run",
    ]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("self-calibrated (leave-one-out)"), "{err}");
    assert_eq!(
        std::fs::read_to_string(index.join("CURRENT")).unwrap(),
        gen,
        "a dry run writes nothing"
    );

    // memorization: the copies' set against the negatives
    let table = dir.path().join("mem.csv");
    let o = refrain(&[
        "memorization",
        "--index",
        index.to_str().unwrap(),
        "--generated",
        dev.join("query").to_str().unwrap(),
        "--reference",
        dev.join("neg").to_str().unwrap(),
        "--out",
        table.to_str().unwrap(),
    ]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    let rows = std::fs::read_to_string(&table).unwrap();
    let either = |set: &str| {
        rows.lines()
            .find(|l| l.starts_with(&format!("{set},either,")))
            .map(|l| l.split(',').nth(3).unwrap().to_string())
            .unwrap_or_else(|| panic!("{rows}"))
    };
    assert_eq!(either("generated"), "2", "{rows}");
    assert_eq!(either("reference"), "0", "{rows}");
    assert!(out.contains("generated − reference"), "{out}");
}

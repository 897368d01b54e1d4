//! Front-end throughput: decode Ogg Vorbis (44.1 kHz stereo) → all three
//! fingerprints, on one core. Target: ≥ 300× real time.
//!
//! `cargo bench --bench frontend`. The input is `REFRAIN_BENCH_OGG` if set,
//! else 60 s of synthesized music encoded with `ffmpeg` (libvorbis, q5) into
//! the target directory. Before timing, the result is checked: the fingerprint
//! must cover the whole file and find the melody and windows it should.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use refrain::analysis::Analyzer;
use refrain::{decode, synth, AnalysisParams};

const TARGET_X_REAL_TIME: f64 = 300.0;

fn bench_input() -> PathBuf {
    if let Some(p) = std::env::var_os("REFRAIN_BENCH_OGG") {
        return PathBuf::from(p);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let ogg = dir.join("synth60_44k_stereo.ogg");
    if ogg.is_file() {
        return ogg;
    }
    let rate = 44_100;
    let piece = synth::compose(42, 40);
    let render = |transpose: f32| {
        synth::render(
            &piece,
            &synth::Render {
                sample_rate: rate,
                transpose,
                duration_s: Some(60.0),
                ..synth::Render::default()
            },
        )
    };
    let (l, r) = (render(0.0), render(12.0));
    let mut raw = Vec::with_capacity(l.len() * 8);
    for (a, b) in l.iter().zip(&r) {
        raw.extend_from_slice(&a.to_le_bytes());
        raw.extend_from_slice(&(0.7 * a + 0.3 * b).to_le_bytes());
    }
    let raw_path = dir.join("synth60.f32");
    std::fs::write(&raw_path, raw).unwrap();
    let ok = Command::new("ffmpeg")
        .args([
            "-y",
            "-loglevel",
            "error",
            "-f",
            "f32le",
            "-ar",
            "44100",
            "-ac",
            "2",
            "-i",
        ])
        .arg(&raw_path)
        .args(["-c:a", "libvorbis", "-q:a", "5"])
        .arg(&ogg)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this benchmark needs ffmpeg (apt-get install ffmpeg) or REFRAIN_BENCH_OGG=file.ogg"
    );
    ogg
}

fn frontend(c: &mut Criterion) {
    let path = bench_input();
    let params = AnalysisParams::default();
    let mut analyzer = Analyzer::new(&params);
    let run = |a: &mut Analyzer| {
        let audio = decode::decode_file(&path, params.sample_rate).expect("decodes");
        a.analyze(&audio).expect("analyses")
    };

    // result check: the output is a real fingerprint of the whole file
    let fp = run(&mut analyzer);
    let secs = fp.source.duration_s;
    assert!(fp.source.sample_rate == 44_100 && fp.source.channels == 2);
    assert!((fp.chroma.nrows() as f64 - secs * params.chroma_rate()).abs() < 3.0);
    assert!(fp.embeddings.nrows() >= (secs - 4.0) as usize);
    assert!(fp.melody.voiced_share() > 0.3, "melody found");

    // one-core rate, measured directly (median of 7 runs)
    let mut times: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(run(&mut analyzer));
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let x = secs / times[3];
    println!(
        "front end: {secs:.1} s of Vorbis 44.1 kHz stereo in {:.1} ms = {x:.0}x real time on one core \
         (target >= {TARGET_X_REAL_TIME:.0}x): {}",
        times[3] * 1e3,
        if x >= TARGET_X_REAL_TIME { "MET" } else { "MISSED" }
    );

    let mut g = c.benchmark_group("frontend");
    g.sample_size(10);
    g.throughput(Throughput::Elements(secs.round() as u64));
    g.bench_function("vorbis_44k_stereo_to_fingerprint", |b| {
        b.iter(|| run(&mut analyzer))
    });
    g.finish();
}

criterion_group!(benches, frontend);
criterion_main!(benches);

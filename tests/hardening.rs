//! Hardening: the real binary killed mid-build, damaged inputs in batches,
//! and the library under hostile and unusual input and many threads.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use refrain::index::Index;
use refrain::synth::{self, Rng};

fn refrain_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_refrain"));
    c.args(args);
    c
}

fn refrain(args: &[&str]) -> Output {
    refrain_cmd(args).output().expect("the refrain binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn piece(seed: u64, seconds: f32, rate: u32) -> Vec<f32> {
    synth::render(
        &synth::compose(seed, 8),
        &synth::Render {
            sample_rate: rate,
            duration_s: Some(seconds),
            ..synth::Render::default()
        },
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Copies a directory tree (files and directories only).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

/// The content hashes of the items of the index in `dir`, which must open.
fn items_of(dir: &Path) -> BTreeSet<String> {
    let index = Index::open(dir).unwrap_or_else(|e| panic!("the index does not open: {e}"));
    let windows: usize = index
        .manifest
        .items
        .iter()
        .map(|i| i.windows as usize)
        .sum();
    assert_eq!(windows, index.window_item.len());
    for id in 0..index.len() {
        index.item(id).expect("every item decodes");
    }
    index
        .manifest
        .items
        .iter()
        .map(|i| i.content_hash.clone())
        .collect()
}

/// Whether a generation directory other than `old` exists in `dir`.
fn new_generation_exists(dir: &Path, old: &str) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("gen-") && name != old
        })
    })
}

/// `refrain index` and `refrain index --add`, killed with SIGKILL at random
/// points (fixed seed), always leave the old or the new index: it opens,
/// every checksum matches, and it holds exactly the old or the new items.
/// A run after a kill completes.
#[test]
fn index_killed_at_random_points_leaves_the_old_or_the_new_index() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    for seed in 0..3u64 {
        let x = piece(seed + 1, 8.0, 22_050);
        std::fs::write(a.join(format!("a{seed}.wav")), synth::wav_bytes(&x, 22_050)).unwrap();
        let y = piece(seed + 11, 8.0, 22_050);
        std::fs::write(b.join(format!("b{seed}.wav")), synth::wav_bytes(&y, 22_050)).unwrap();
    }
    let base = dir.path().join("base");
    let o = refrain(&["index", s(&a), "--out", s(&base)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let old = items_of(&base);
    assert_eq!(old.len(), 3);

    // the new indexes, and how long an uninterrupted run takes
    let mut expected = Vec::new();
    let mut full = Vec::new();
    for add in [false, true] {
        let mut times = Vec::new();
        for run in 0..3 {
            let out = dir.path().join(format!("full{add}{run}"));
            copy_dir(&base, &out);
            let mut args = vec!["index", s(&b), "--out", s(&out), "--threads", "1"];
            if add {
                args.push("--add");
            }
            let t = Instant::now();
            let o = refrain(&args);
            times.push(t.elapsed());
            assert!(o.status.success(), "{}", text(&o.stderr));
            if run == 0 {
                expected.push(items_of(&out));
            }
        }
        times.sort();
        full.push(times[1]); // the median
    }
    assert_eq!(expected[0].len(), 3);
    assert_eq!(expected[1].len(), 6);

    let base_gen = refrain::index::current_generation(&base).unwrap();
    let mut rng = Rng::new(20_261_125);
    let trials = 48;
    let (mut saw_old, mut saw_new, mut finished) = (0, 0, 0);
    for trial in 0..trials {
        let add = trial % 2 == 1;
        let out = dir.path().join(format!("trial{trial}"));
        copy_dir(&base, &out);
        let mut args = vec!["index", s(&b), "--out", s(&out), "--threads", "1"];
        if add {
            args.push("--add");
        }
        let mut child = refrain_cmd(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // a third at a uniform point of the whole run; the rest while the new
        // generation is being written: from when its directory appears, a
        // random 0-20 ms (writing and syncing it, then switching CURRENT)
        let delay = if trial % 3 == 0 {
            let d = full[add as usize].mul_f32(rng.uniform());
            std::thread::sleep(d);
            d
        } else {
            let wait = Duration::from_micros(rng.below(20_000) as u64);
            let t = Instant::now();
            while child.try_wait().unwrap().is_none() && !new_generation_exists(&out, &base_gen) {
                std::thread::yield_now();
            }
            std::thread::sleep(wait);
            t.elapsed()
        };
        if child.try_wait().unwrap().is_some() {
            finished += 1; // it was faster this time
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let items = items_of(&out);
        if items == old {
            saw_old += 1;
        } else if items == expected[add as usize] {
            saw_new += 1;
        } else {
            panic!("trial {trial} (add: {add}, killed after {delay:?}): neither old nor new");
        }
        // a run after the kill completes and gives the new index
        if trial % 4 < 2 {
            let o = refrain(&args);
            assert!(o.status.success(), "{}", text(&o.stderr));
            assert_eq!(items_of(&out), expected[add as usize], "trial {trial}");
            let gens = std::fs::read_dir(&out)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("gen-"))
                .count();
            assert_eq!(gens, 1, "trial {trial}: orphans were not removed");
        }
    }
    eprintln!(
        "{trials} kill trials ({} killed mid-run, {finished} finished first): {saw_old} left the \
         old index, {saw_new} the new one, 0 damaged (uninterrupted runs: {:?} replace, {:?} --add)",
        trials - finished,
        full[0],
        full[1]
    );
    assert_eq!(saw_old + saw_new, trials);
}

/// Runs the binary, killing it (and failing) if it takes longer than `limit`.
fn run_within(args: &[&str], limit: Duration) -> Output {
    let mut child = refrain_cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            child.kill().unwrap();
            panic!("refrain {args:?} hung (killed after {limit:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/decode")
            .join(name),
    )
    .unwrap()
}

/// A directory of bad inputs beside one good one: every batch command names
/// each bad file, goes on, and exits 1 with the count.
#[test]
fn batch_commands_record_bad_inputs_go_on_and_count_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    let good = piece(4, 6.0, 22_050);
    std::fs::write(input.join("good.wav"), synth::wav_bytes(&good, 22_050)).unwrap();
    let mut bad: Vec<&str> = vec![];
    std::fs::write(input.join("empty.wav"), b"").unwrap();
    bad.push("empty.wav");
    std::fs::write(
        input.join("text.mp3"),
        b"ID3? no: a shopping list\n".repeat(50),
    )
    .unwrap();
    bad.push("text.mp3");
    std::fs::write(input.join("cut.flac"), &fixture("tone.flac")[..60]).unwrap();
    bad.push("cut.flac");
    std::fs::write(input.join("video.m4a"), fixture("no_audio.mp4")).unwrap();
    bad.push("video.m4a");
    let long = piece(5, 12.0, 8_000);
    std::fs::write(input.join("long.wav"), synth::wav_bytes(&long, 8_000)).unwrap();
    bad.push("long.wav"); // over --max-duration 10
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&input, input.join("sub/loop")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone.ogg"), input.join("dangling.ogg"))
            .unwrap();
        bad.push("dangling.ogg");
        std::os::unix::fs::symlink("self.wav", input.join("self.wav")).unwrap();
        bad.push("self.wav"); // a link to itself
        let fifo = input.join("pipe.wav");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        bad.push("pipe.wav"); // opening it would block forever
    }
    let limit = Duration::from_secs(120);
    let out = dir.path().join("fp");
    let o = run_within(
        &[
            "fingerprint",
            s(&input),
            "--out",
            s(&out),
            "--max-duration",
            "10",
        ],
        limit,
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for b in &bad {
        assert!(err.contains(b), "{b} is not named:\n{err}");
    }
    let failed = format!("{} failed", bad.len());
    assert!(
        err.contains("fingerprinted 1 file(s)") && err.contains(&failed),
        "{err}"
    );
    assert!(
        err.contains("refrain: hint:") && err.contains("--max-duration"),
        "{err}"
    );
    assert!(out.join("good.wav.rfp").is_file());

    let index = dir.path().join("index");
    let o = run_within(
        &[
            "index",
            s(&input),
            "--out",
            s(&index),
            "--max-duration",
            "10",
        ],
        limit,
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("indexed 1 new item(s)") && err.contains(&failed),
        "{err}"
    );
    for b in &bad {
        assert!(err.contains(b), "{b} is not named:\n{err}");
    }
    assert_eq!(Index::open(&index).unwrap().len(), 1);

    let o = run_within(
        &[
            "audit",
            "--index",
            s(&index),
            s(&input),
            "--max-duration",
            "10",
        ],
        limit,
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{} error(s)", bad.len())), "{err}");
    assert!(
        err.contains("refrain: hint:") && err.contains("--max-duration"),
        "{err}"
    );
    for b in &bad {
        assert!(text(&o.stdout).contains(b), "{b} is not in the report");
    }
    #[cfg(unix)]
    {
        let o = run_within(&["inspect", s(&input.join("pipe.wav"))], limit);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            text(&o.stderr).contains("not a regular file"),
            "{}",
            text(&o.stderr)
        );
    }
    // --max-bytes refuses before reading
    let o = run_within(
        &[
            "fingerprint",
            s(&input.join("good.wav")),
            "--out",
            s(&out),
            "--max-bytes",
            "1K",
        ],
        limit,
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("more than the limit of 1024 bytes"), "{err}");
}

// ---------------------------------------------------------------------------
// The library under damaged, hostile and unusual input.

mod library {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use refrain::analysis::Analyzer;
    use refrain::decode::{self, DecodeLimits};
    use refrain::fingerprint::Fingerprint;
    use refrain::synth::{self, Rng};
    use refrain::{AnalysisParams, ErrorKind};

    use super::{fixture, piece};

    /// One mutation of `src` (`other` for splices), chosen by `rng`.
    fn mutate(src: &[u8], other: &[u8], rng: &mut Rng) -> (Vec<u8>, &'static str) {
        let mut b = src.to_vec();
        let len = b.len();
        let run = |rng: &mut Rng| {
            let start = rng.below(len);
            let n = (1 + rng.below(256)).min(len - start);
            (start, n)
        };
        let kind = rng.below(10);
        let what = match kind {
            0 => {
                for _ in 0..1 + rng.below(64) {
                    let i = rng.below(len);
                    b[i] ^= 1 << rng.below(8);
                }
                "bit flips"
            }
            1 => {
                let (s, n) = run(rng);
                b[s..s + n]
                    .iter_mut()
                    .for_each(|x| *x = rng.next_u64() as u8);
                "random run"
            }
            2 => {
                let (s, n) = run(rng);
                let v = if rng.below(2) == 0 { 0 } else { 0xff };
                b[s..s + n].fill(v);
                "constant run"
            }
            3 => {
                b.truncate(rng.below(len));
                "truncated"
            }
            4 => {
                let (s, n) = run(rng);
                b.drain(s..s + n);
                "run deleted"
            }
            5 => {
                let (s, n) = run(rng);
                let copy = b[s..s + n].to_vec();
                let at = rng.below(len);
                b.splice(at..at, copy);
                "run duplicated"
            }
            6 => {
                let at = rng.below(len);
                let junk: Vec<u8> = (0..1 + rng.below(64))
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                b.splice(at..at, junk);
                "bytes inserted"
            }
            7 => {
                // a header field set to an extreme value
                let at = rng.below(len.min(96).saturating_sub(4).max(1));
                let v: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000][rng.below(5)];
                let end = (at + 4).min(len);
                b[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
                "header field"
            }
            8 => {
                b.extend((0..1 + rng.below(4096)).map(|_| rng.next_u64() as u8));
                "garbage appended"
            }
            _ => {
                let cut = rng.below(len);
                let from = rng.below(other.len());
                b.truncate(cut);
                b.extend_from_slice(&other[from..]);
                "spliced"
            }
        };
        (b, what)
    }

    /// Hundreds of mutated files of every format (fixed seeds) through
    /// decoding and analysis: each gives audio or an error, never a panic,
    /// never a hang, never non-finite numbers.
    #[test]
    fn mutated_files_of_every_format_never_panic_or_hang() {
        let rate = 22_050;
        let mut sources: Vec<(&str, Vec<u8>)> = [
            "tone.flac",
            "tone.mp3",
            "tone.ogg",
            "tone.opus",
            "tone.m4a",
            "tone_s16.wav",
            "tone_f32.wav",
        ]
        .iter()
        .map(|n| (*n, fixture(n)))
        .collect();
        sources.push((
            "synth_s16.wav",
            synth::wav_bytes(&piece(21, 3.0, rate), rate),
        ));
        let stereo: Vec<f32> = piece(22, 2.0, rate)
            .iter()
            .flat_map(|&x| [x, -0.5 * x])
            .collect();
        sources.push((
            "synth_f32_stereo.wav",
            synth::float_wav_bytes(&stereo, rate, 2),
        ));
        let per_source = 120;
        let (tx, rx) = mpsc::channel::<Option<String>>();
        let worker = std::thread::spawn(move || {
            let params = AnalysisParams::default();
            let mut analyzer = Analyzer::new(&params);
            let limits = DecodeLimits {
                max_duration_s: 60.0,
                max_bytes: 8 << 20,
            };
            let mut rng = Rng::new(0x5eed_0006);
            let (mut tried, mut decoded, mut analysed, mut caught) = (0, 0, 0, 0);
            let mut slowest = (Duration::ZERO, String::new());
            for (si, (name, src)) in sources.iter().enumerate() {
                let other = &sources[(si + 1) % sources.len()].1;
                for m in 0..per_source {
                    let (bytes, what) = mutate(src, other, &mut rng);
                    let label = format!("{name} #{m} ({what})");
                    tx.send(Some(label.clone())).unwrap();
                    let hint = [None, Some("mp3"), Some("wav"), Some("opus")][m % 4];
                    let t = Instant::now();
                    tried += 1;
                    match decode::decode_bytes_with_limits(
                        &bytes,
                        hint,
                        params.sample_rate,
                        &limits,
                    ) {
                        Ok(audio) => {
                            decoded += 1;
                            assert!(audio.samples.iter().all(|x| x.is_finite()), "{label}");
                            assert!(audio.source.duration_s <= 60.0, "{label}");
                            if let Ok(fp) = analyzer.analyze(&audio) {
                                analysed += 1;
                                // every number finite: the file round-trips
                                let back = Fingerprint::from_bytes(&fp.to_bytes(), &params);
                                assert!(back.is_ok(), "{label}: {:?}", back.err());
                            }
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            assert!(msg.len() > 20, "{label}: {msg}");
                            // a panic inside a third-party decoder, caught
                            caught += msg.contains("the decoder failed on damaged data") as usize;
                            assert!(
                                !matches!(e.kind, ErrorKind::InvalidInput(_)),
                                "{label}: {msg}"
                            );
                        }
                    }
                    if t.elapsed() > slowest.0 {
                        slowest = (t.elapsed(), label);
                    }
                }
            }
            tx.send(None).unwrap();
            (tried, decoded, analysed, caught, slowest)
        });
        // a watchdog: every input must finish in well under a minute
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => break, // the worker panicked
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("an input has been decoding for over 60 s: a hang")
                }
            }
        }
        let (tried, decoded, analysed, caught, slowest) = worker.join().expect("no panic");
        eprintln!(
            "{tried} mutated inputs: {decoded} decoded ({analysed} analysed), {} refused \
             ({caught} of them panics caught inside a third-party decoder); slowest {:?} ({})",
            tried - decoded,
            slowest.0,
            slowest.1
        );
        assert_eq!(tried, 9 * per_source);
    }
}

mod api {
    use std::sync::OnceLock;

    use refrain::analysis::{audio_at_analysis_rate, Analyzer};
    use refrain::audit::{AuditConfig, Auditor, Report, Verdict};
    use refrain::decode::{self, DecodeLimits};
    use refrain::fingerprint::Fingerprint;
    use refrain::index::{Index, IndexBuilder};
    use refrain::synth::{self, Rng};
    use refrain::{AnalysisParams, ErrorKind};

    use super::piece;

    fn fp_of(x: Vec<f32>) -> Fingerprint {
        let p = AnalysisParams::default();
        Analyzer::new(&p)
            .analyze(&audio_at_analysis_rate(x, &p))
            .unwrap()
    }

    /// Four synthesized songs (8 bars, about 15 s); the index is built once per test binary.
    fn songs() -> &'static (Index, Vec<Vec<f32>>) {
        static S: OnceLock<(Index, Vec<Vec<f32>>)> = OnceLock::new();
        S.get_or_init(|| {
            let p = AnalysisParams::default();
            let mut b = IndexBuilder::new(&p);
            let songs: Vec<Vec<f32>> = (0..4).map(|i| piece(30 + i, 20.0, p.sample_rate)).collect();
            for (i, x) in songs.iter().enumerate() {
                b.add(&format!("song{i}"), &format!("h{i}"), &fp_of(x.clone()))
                    .unwrap();
            }
            (b.build(), songs)
        })
    }

    fn kind(r: refrain::Result<Report>) -> ErrorKind {
        match r {
            Ok(rep) => panic!("expected an error, got {:?}", rep.verdict),
            Err(e) => {
                assert!(!e.to_string().is_empty());
                e.kind
            }
        }
    }

    #[test]
    fn unusual_signals_through_check_samples() {
        let (index, songs) = songs();
        let auditor = Auditor::new(index);
        let mut rng = Rng::new(77);
        // silence, DC offset, clipped full-scale noise: audited, and passed
        let silence = vec![0.0f32; 44_100 * 2 * 5];
        let dc = vec![0.7f32; 44_100 * 5];
        let noise: Vec<f32> = (0..48_000 * 5)
            .map(|_| (rng.normal() * 3.0).clamp(-1.0, 1.0))
            .collect();
        for (what, x, rate, ch) in [
            ("silence", &silence, 44_100, 2),
            ("DC offset", &dc, 44_100, 1),
            ("clipped noise", &noise, 48_000, 1),
        ] {
            let r = auditor
                .check_samples(x, rate, ch)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(r.verdict, Verdict::Pass, "{what}: {:?}", r.best());
        }
        // music with a DC offset and clipping still finds its song
        let mut x: Vec<f32> = songs[1][22_050..132_300].to_vec();
        x.iter_mut()
            .for_each(|v| *v = (*v * 4.0 + 0.3).clamp(-1.0, 1.0));
        let r = auditor.check_samples(&x, 11_025, 1).unwrap();
        assert_eq!(r.best().map(|c| c.item), Some(1));
        // NaN, infinities, absurd magnitudes: refused, never analysed
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -3e38] {
            let mut y = vec![0.1f32; 22_050];
            y[12_345] = bad;
            let k = kind(auditor.check_samples(&y, 22_050, 1));
            assert!(matches!(k, ErrorKind::InvalidInput(_)), "{bad}: {k}");
            assert!(decode::from_interleaved(&y, 22_050, 1, 11_025).is_err());
        }
        // degenerate shapes
        assert!(matches!(
            kind(auditor.check_samples(&[0.5], 44_100, 1)),
            ErrorKind::Empty(_) | ErrorKind::InvalidInput(_)
        ));
        assert!(matches!(
            kind(auditor.check_samples(&[], 44_100, 1)),
            ErrorKind::Empty(_)
        ));
        assert!(matches!(
            kind(auditor.check_samples(&[0.0; 8], 44_100, 0)),
            ErrorKind::InvalidInput(_)
        ));
        assert!(matches!(
            kind(auditor.check_samples(&[0.0; 8], 0, 1)),
            ErrorKind::InvalidInput(_)
        ));
        assert!(matches!(
            kind(auditor.check_samples(&[0.0; 8], 4_000_000, 1)),
            ErrorKind::InvalidInput(_)
        ));
        // a duration limit
        let short = Auditor::with_config(
            index,
            AuditConfig {
                limits: DecodeLimits {
                    max_duration_s: 4.0,
                    ..DecodeLimits::default()
                },
                ..AuditConfig::default()
            },
        );
        assert!(matches!(
            kind(short.check_samples(&dc, 44_100, 1)),
            ErrorKind::Limit(_)
        ));
        assert!(matches!(
            kind(short.check_fingerprint(&fp_of(songs[0].clone()))),
            ErrorKind::Limit(_)
        ));
    }

    #[test]
    fn extreme_rates_and_channel_counts() {
        let (index, songs) = songs();
        let auditor = Auditor::new(index);
        // 8 channels at 192 kHz: 4 s of song 2, one channel each at another gain
        let src = &songs[2][44_100..88_200];
        let up = decode::from_interleaved(src, 11_025, 1, 192_000)
            .unwrap()
            .samples;
        let eight: Vec<f32> = up
            .iter()
            .flat_map(|&v| (0..8).map(move |c| v * (c as f32 + 1.0) / 8.0))
            .collect();
        let r = auditor.check_samples(&eight, 192_000, 8).unwrap();
        assert_eq!(r.best().map(|c| c.item), Some(2));
        // the same as a WAV file decodes the same
        let wav = synth::float_wav_bytes(&eight, 192_000, 8);
        let a = decode::decode_bytes(&wav, Some("wav"), 11_025).unwrap();
        let b = decode::from_interleaved(&eight, 192_000, 8, 11_025).unwrap();
        assert_eq!(a.source, b.source);
        assert_eq!(a.samples.len(), b.samples.len());
        // 8 kHz mono
        let low = decode::from_interleaved(&songs[3][..110_250], 11_025, 1, 8_000)
            .unwrap()
            .samples;
        let r = auditor.check_samples(&low, 8_000, 1).unwrap();
        assert_eq!(r.best().map(|c| c.item), Some(3));
        // a header claiming 2^32 - 1 bytes of 8-channel 192 kHz audio, holding 1 s
        let mut lying = wav.clone();
        lying.truncate(44 + 192_000 * 8 * 4);
        lying[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let t = std::time::Instant::now();
        let a = decode::decode_bytes(&lying, None, 11_025).unwrap();
        assert!((a.source.duration_s - 1.0).abs() < 1e-9, "{:?}", a.source);
        assert!(a.samples.capacity() < 2 * 11_025 + 1024);
        assert!(t.elapsed().as_secs() < 10);
        // a one-sample WAV file
        let one = synth::wav_bytes(&[0.25], 44_100);
        match decode::decode_bytes(&one, None, 11_025) {
            Ok(a) => assert!(a.samples.len() <= 1),
            Err(e) => assert!(matches!(e.kind, ErrorKind::Empty(_)), "{e}"),
        }
    }

    /// Eight threads auditing 24 queries each, in different orders, through
    /// one `Auditor` over an HNSW index, get exactly the answers of one
    /// thread. (`check` holds no lock: each thread has its own buffers and
    /// the index is only read.)
    #[test]
    fn eight_threads_get_exactly_the_answers_of_one() {
        let (_, songs) = songs();
        let p = AnalysisParams::default();
        let mut b = IndexBuilder::new(&p);
        for (i, x) in songs.iter().enumerate() {
            b.add(&format!("song{i}"), &format!("h{i}"), &fp_of(x.clone()))
                .unwrap();
        }
        for i in 0..2 {
            b.add(
                &format!("filler{i}"),
                &format!("f{i}"),
                &synth::random_fingerprint(90 + i, 2_200),
            )
            .unwrap();
        }
        let index = b.build();
        assert!(index.window_item.len() >= 2_000, "not the HNSW engine");
        let auditor = Auditor::new(&index);
        // 24 queries: 6 s excerpts of each song at six offsets, at 22.05 kHz
        let queries: Vec<Vec<f32>> = (0..24)
            .map(|q| {
                let x = &songs[q % 4];
                let start = (q / 4) * 11_025;
                let excerpt = &x[start..start + 66_150];
                decode::from_interleaved(excerpt, 11_025, 1, 22_050)
                    .unwrap()
                    .samples
            })
            .collect();
        let one: Vec<Report> = queries
            .iter()
            .map(|q| auditor.check_samples(q, 22_050, 1).unwrap())
            .collect();
        for (q, r) in one.iter().enumerate() {
            assert_eq!(r.best().map(|c| c.item), Some(q % 4), "query {q}");
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let (auditor, queries) = (&auditor, &queries);
                    s.spawn(move || {
                        // each thread its own order
                        (0..queries.len())
                            .map(|i| (i * 5 + t * 7) % queries.len())
                            .map(|q| (q, auditor.check_samples(&queries[q], 22_050, 1).unwrap()))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                for (q, r) in h.join().unwrap() {
                    assert_eq!(r, one[q], "query {q}");
                }
            }
        });
    }
}

/// A two-hour file decodes and analyses with bounded memory (the analysis
/// signal only), and a lower duration limit refuses it once the limit is
/// reached, without decoding the rest.
#[test]
fn a_two_hour_file() {
    use refrain::analysis::Analyzer;
    use refrain::decode::{decode_file_with_limits, DecodeLimits};
    use refrain::AnalysisParams;
    let rate = 8_000u32;
    let block = piece(40, 10.0, rate);
    let seconds = 2 * 3600;
    let frames = seconds * rate as usize;
    // a 16-bit mono WAV, written block by block (115 MB)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two_hours.wav");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let header = synth::wav_bytes(&[], rate);
        let data = (frames * 2) as u32;
        f.write_all(&header[..4]).unwrap();
        f.write_all(&(36 + data).to_le_bytes()).unwrap();
        f.write_all(&header[8..40]).unwrap();
        f.write_all(&data.to_le_bytes()).unwrap();
        let pcm: Vec<u8> = block
            .iter()
            .flat_map(|&x| ((x.clamp(-1.0, 1.0) * 32_767.0) as i16).to_le_bytes())
            .collect();
        let mut left = frames * 2;
        while left > 0 {
            let n = left.min(pcm.len());
            f.write_all(&pcm[..n]).unwrap();
            left -= n;
        }
    }
    let p = AnalysisParams::default();
    let t = Instant::now();
    let hour = DecodeLimits {
        max_duration_s: 3600.0,
        ..DecodeLimits::default()
    };
    let e = decode_file_with_limits(&path, p.sample_rate, &hour).unwrap_err();
    assert!(
        e.to_string().contains("longer than the limit of 3600 s"),
        "{e}"
    );
    assert!(e.to_string().contains("two_hours.wav"), "{e}");
    let refused = t.elapsed();
    let t = Instant::now();
    let audio = decode_file_with_limits(&path, p.sample_rate, &DecodeLimits::default()).unwrap();
    let decoded = t.elapsed();
    assert_eq!(audio.source.duration_s, seconds as f64);
    assert_eq!(audio.samples.len(), seconds * p.sample_rate as usize);
    // the output was reserved from the header: no doubling reallocation
    assert!(audio.samples.capacity() <= audio.samples.len() + audio.samples.len() / 8 + 1024);
    let t = Instant::now();
    let fp = Analyzer::new(&p).analyze(&audio).unwrap();
    let analysed = t.elapsed();
    assert!((fp.source.duration_s - 7200.0).abs() < 1e-9);
    assert!(fp.embeddings.nrows() > 7000);
    eprintln!(
        "two hours: refused at 1 h in {refused:?}, decoded in {decoded:?}, analysed in {analysed:?}"
    );
}

/// What the fuzz targets do with their input (`fuzz/`), shared.
#[path = "../fuzz/common/mod.rs"]
mod fuzz_common;

/// Every input the fuzzers found a bug with, kept in `tests/data/fuzz/TARGET/`,
/// replayed through the same code as the fuzz target: fixed stays fixed.
#[test]
fn fuzz_regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    type Replay = fn(&[u8]);
    let targets: [(&str, Replay); 3] = [
        ("decode", fuzz_common::decode),
        ("fingerprint_file", fuzz_common::fingerprint_file),
        ("index_files", fuzz_common::index_files),
    ];
    let mut replayed = 0;
    for (name, run) in targets {
        let Ok(rd) = std::fs::read_dir(root.join(name)) else {
            continue;
        };
        let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            eprintln!("replaying {}", f.display());
            run(&std::fs::read(&f).unwrap());
            replayed += 1;
        }
    }
    fuzz_common::remove_index_dir();
    assert!(replayed > 0, "no fuzz cases found under {}", root.display());
}

/// Every single-bit flip and every truncation of a fingerprint file is
/// refused with a message: none reads as a fingerprint.
#[test]
fn every_flipped_bit_or_cut_of_a_fingerprint_file_is_refused() {
    use refrain::analysis::{audio_at_analysis_rate, Analyzer};
    use refrain::fingerprint::Fingerprint;
    use refrain::AnalysisParams;
    let p = AnalysisParams::default();
    let x = piece(50, 2.0, p.sample_rate);
    let fp = Analyzer::new(&p)
        .analyze(&audio_at_analysis_rate(x, &p))
        .unwrap();
    let good = fp.to_bytes();
    assert_eq!(Fingerprint::from_bytes(&good, &p).unwrap(), fp);
    let mut rng = Rng::new(9);
    let mut refused = 0;
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 1 << rng.below(8);
        let e = Fingerprint::from_bytes(&bad, &p).expect_err("a flipped byte was accepted");
        assert!(!e.to_string().is_empty());
        refused += 1;
    }
    for cut in 0..good.len() {
        assert!(
            Fingerprint::from_bytes(&good[..cut], &p).is_err(),
            "cut at {cut}"
        );
        refused += 1;
    }
    // through the file reader, the message names the file
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.rfp");
    let mut bad = good.clone();
    bad[100] ^= 4;
    std::fs::write(&path, &bad).unwrap();
    let e = Fingerprint::read(&path, &p).unwrap_err().to_string();
    assert!(e.contains("damaged.rfp") && e.contains("checksum"), "{e}");
    eprintln!("{refused} damaged fingerprint files refused");
    assert_eq!(refused, 2 * good.len());
}

/// Samples far beyond full scale given straight to the analyzer (not
/// through `decode`, which refuses them too) are refused: at 1e30 the band
/// energies overflowed into infinities, a fingerprint that cannot be read back.
#[test]
fn the_analyzer_refuses_samples_far_beyond_full_scale() {
    use refrain::analysis::{audio_at_analysis_rate, Analyzer};
    use refrain::fingerprint::Fingerprint;
    use refrain::{AnalysisParams, ErrorKind};
    let p = AnalysisParams::default();
    let x = piece(3, 3.0, p.sample_rate);
    let scaled = |s: f32| audio_at_analysis_rate(x.iter().map(|v| v * s).collect(), &p);
    // up to the limit (+120 dB over full scale), every number stays finite
    let fp = Analyzer::new(&p).analyze(&scaled(1e6)).unwrap();
    assert!(Fingerprint::from_bytes(&fp.to_bytes(), &p).is_ok());
    for s in [1e7f32, 1e30] {
        let e = Analyzer::new(&p).analyze(&scaled(s)).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::InvalidInput(_)), "{s}: {e}");
    }
}

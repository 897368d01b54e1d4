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

/// Writes `song{seed}.wav` for each seed into `dir` (created), 16 bars each.
fn write_songs(dir: &Path, seeds: std::ops::RangeInclusive<u64>, rate: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for seed in seeds {
        write_wav(
            &dir.join(format!("song{seed}.wav")),
            &piece(seed, 16, rate),
            rate,
        );
    }
}

/// Runs `refrain index TRAIN --out INDEX`, which must succeed; returns its stderr.
fn build_index(train: &Path, index: &Path) -> String {
    let o = refrain(&[
        "index",
        train.to_str().unwrap(),
        "--out",
        index.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stderr)
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
    let rate = 22_050;
    write_songs(&train, 1..=4, rate);
    let index = dir.path().join("index");
    assert!(build_index(&train, &index).contains("indexed 4 new item(s)"));

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
        "input,verdict,match,audio_score,melody_score,query_start_s,query_end_s,match_start_s,match_end_s,transpose_semitones,tempo_ratio,error,reason,audio_threshold,melody_threshold,note"
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
    // the appended columns: why it flags, the thresholds it was judged by
    let fields = |name: &str| row(name).split(',').map(String::from).collect::<Vec<_>>();
    let copy = fields("copy.wav");
    assert_eq!(copy.len(), 16, "{csv}");
    assert!(copy[12].starts_with("audio"), "{csv}");
    assert_eq!(
        (copy[13].as_str(), copy[14].as_str()),
        ("0.5000", "0.5000"),
        "{csv}"
    );
    let original = fields("original.wav");
    assert_eq!(original[12], "", "{csv}");
    assert!(row("broken.flac").ends_with(",,,,"), "{csv}");

    // --summary-out: the summary in a file, not on standard error
    let summary = dir.path().join("summary.txt");
    let o = refrain(&[
        "audit",
        "--index",
        index.to_str().unwrap(),
        q.join("copy.wav").to_str().unwrap(),
        "--out",
        csv_path.to_str().unwrap(),
        "--summary-out",
        summary.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("memorization rate"));
    let s = std::fs::read_to_string(&summary).unwrap();
    assert!(s.starts_with("summary over 1 audited input(s):"), "{s}");

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

    // overrides outside [0, 1] are refused; one inside claims no calibration
    let copy = q.join("copy.wav");
    for bad in ["--audio-threshold=-1", "--melody-threshold=1.5"] {
        let o = refrain(&[
            "audit",
            "--index",
            index.to_str().unwrap(),
            copy.to_str().unwrap(),
            bad,
        ]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("outside [0, 1]"), "{bad}: {err}");
    }
    let o = refrain(&[
        "audit",
        "--index",
        index.to_str().unwrap(),
        copy.to_str().unwrap(),
        "--audio-threshold",
        "0.9",
    ]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("thresholds audio 0.900, melody 0.500 (set by the caller: no false-positive rate is claimed for them)"),
        "{err}"
    );

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
    // for a reader, one line per clip: a flag copies its item, a pass only
    // names the nearest one
    let err = text(&o.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("  flag  ") || l.starts_with("  pass  "))
        .collect();
    assert_eq!(lines.len(), 7, "{err}");
    for l in lines {
        let rest = l[8..]
            .split_once(' ')
            .map(|x| x.1.trim_start())
            .unwrap_or("");
        if l.starts_with("  flag") {
            assert!(
                rest.starts_with("copies  song") && rest.contains("audio"),
                "{l}"
            );
        } else {
            assert!(
                rest.starts_with("nearest song") && !l.contains("copies"),
                "{l}"
            );
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
    write_songs(&root.join("train"), 1..=4, rate);
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
    let gen = refrain::index::current_generation(&index).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(index.join(&gen).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let t = &manifest["thresholds"];
    assert_eq!(t["method"], "calibrated", "{t}");
    assert_eq!(t["negatives"], 12, "{t}");
    assert_eq!(t["target_fpr"], 0.05, "{t}");
    // 0 of 12 flagged: the exact one-sided bound is 1 - 0.05^(1/12)
    let up = t["fpr_upper_95"].as_f64().unwrap();
    assert!((up - (1.0 - 0.05f64.powf(1.0 / 12.0))).abs() < 1e-9, "{t}");

    // a negative that is really an excerpt of a training song is named and
    // left out; kept in, it would push the audio threshold to the cap, and
    // that threshold is refused, with nothing stored
    let seeded = dir.path().join("seeded");
    std::fs::create_dir_all(&seeded).unwrap();
    for e in std::fs::read_dir(dev.join("neg")).unwrap().flatten() {
        std::fs::copy(e.path(), seeded.join(e.file_name())).unwrap();
    }
    let rate = 22_050usize;
    let song2 = piece(2, 16, rate as u32);
    write_wav(
        &seeded.join("not_really_new.wav"),
        &song2[5 * rate..17 * rate],
        rate as u32,
    );
    let calibrate_seeded = |extra: &[&str]| {
        let mut args = vec![
            "calibrate",
            "--index",
            index.to_str().unwrap(),
            seeded.to_str().unwrap(),
            "--fpr",
            "0.05",
        ];
        args.extend_from_slice(extra);
        refrain(&args)
    };
    let o = calibrate_seeded(&["--dry-run"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    let suspect = err
        .lines()
        .find(|l| l.starts_with("refrain: suspect: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        suspect.contains("not_really_new.wav looks like a copy of training item")
            && suspect.contains("song2.wav (audio 0.9999")
            && suspect.ends_with("left out of the fit"),
        "{suspect}"
    );
    assert!(err.contains("on 12 negatives"), "{err}");
    let o = calibrate_seeded(&["--keep-suspects"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no score reaches")
            && err.contains("nothing stored")
            && err.contains("not_really_new.wav"),
        "{err}"
    );
    assert_eq!(refrain::index::current_generation(&index).unwrap(), gen);

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
        refrain::index::current_generation(&index).unwrap(),
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
        "--report",
        dir.path().join("per-input.csv").to_str().unwrap(),
        "--html",
        dir.path().join("mem.html").to_str().unwrap(),
    ]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    // the per-input report says which set each row belongs to
    let per = std::fs::read_to_string(dir.path().join("per-input.csv")).unwrap();
    assert!(per.lines().next().unwrap().ends_with(",note,set"), "{per}");
    let sets: Vec<&str> = per
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap())
        .collect();
    assert_eq!(
        sets.iter().filter(|s| **s == "generated").count(),
        2,
        "{per}"
    );
    assert_eq!(
        sets.iter().filter(|s| **s == "reference").count(),
        12,
        "{per}"
    );
    let page = std::fs::read_to_string(dir.path().join("mem.html")).unwrap();
    assert!(page.contains("best audio score") && page.contains("flag rates with 95 % intervals"));
    assert!(!page.contains("plot not drawn"));
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

/// A running `refrain serve`, stopped with SIGTERM when dropped.
struct Server {
    child: std::process::Child,
    addr: String,
    stderr: std::sync::Mutex<std::sync::mpsc::Receiver<String>>,
}

impl Server {
    fn start(index: &Path, extra: &[&str]) -> Server {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_refrain"))
            .args(["serve", "--index", index.to_str().unwrap()])
            .args(["--addr", "127.0.0.1:0"])
            .args(extra)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("refrain serve starts");
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the server says where it listens");
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("{first}"))
            .to_string();
        Server {
            child,
            addr,
            stderr: std::sync::Mutex::new(rx),
        }
    }

    /// One HTTP/1.1 request; returns the status and the body.
    fn request(&self, method: &str, target: &str, body: &[u8]) -> (u16, String) {
        self.request_with(method, target, "", body)
    }

    /// One HTTP/1.1 request with extra header lines (each ending in CRLF).
    fn request_with(
        &self,
        method: &str,
        target: &str,
        headers: &str,
        body: &[u8],
    ) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        // a refused upload is answered once the limit is passed, and the
        // rest of it may meet a closed connection
        let _ = s.write_all(body);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let out = text(&out);
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {out:?}"));
        let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (status, body.to_string())
    }

    fn json(&self, method: &str, target: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let (status, b) = self.request(method, target, body);
        let v = serde_json::from_str(&b).unwrap_or_else(|e| panic!("{e}: {b}"));
        (status, v)
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let t = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status:?}");
                break;
            }
            assert!(
                t.elapsed() < std::time::Duration::from_secs(20),
                "no exit after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // the reader thread ends with the process
        let rx = self.stderr.lock().unwrap();
        let mut lines = Vec::new();
        while let Ok(l) = rx.recv_timeout(std::time::Duration::from_secs(5)) {
            lines.push(l);
        }
        lines
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_answers_checks_over_http_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train");
    let rate = 22_050u32;
    write_songs(&train, 1..=4, rate);
    let index = dir.path().join("index");
    build_index(&train, &index);
    let server = Server::start(&index, &["--max-bytes", "3M", "--workers", "2"]);

    let (status, health) = server.json("GET", "/healthz", b"");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["items"], 4);

    // a WAV file's bytes: 12 s of song 3 from its 4 s mark
    let song3 = piece(3, 16, rate);
    let r = rate as usize;
    let wav = synth::wav_bytes(&song3[4 * r..16 * r], rate);
    let (status, v) = server.json("POST", "/v1/check", &wav);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["verdict"], "flag", "{v}");
    let best = &v["candidates"][0];
    assert!(best["path"].as_str().unwrap().ends_with("song3.wav"), "{v}");
    let located = best["match_start_s"].as_f64().unwrap() - best["query_start_s"].as_f64().unwrap();
    assert!((located - 4.0).abs() <= 1.0, "{v}");
    assert!(v["thresholds"]["audio"].is_number() && v["elapsed_ms"].is_number());

    // raw float32 PCM, stereo at 32 kHz: the same music, and an original
    let pcm = |x: &[f32]| -> Vec<u8> {
        x.iter()
            .flat_map(|&s| [s, 0.5 * s])
            .flat_map(f32::to_le_bytes)
            .collect()
    };
    let copy32 = &piece(3, 16, 32_000)[4 * 32_000..14 * 32_000];
    let (status, v) = server.json(
        "POST",
        "/v1/check?sample_rate=32000&channels=2",
        &pcm(copy32),
    );
    assert_eq!((status, v["verdict"].as_str()), (200, Some("flag")), "{v}");
    let original = &piece(88, 8, 32_000)[..10 * 32_000];
    let (status, v) = server.json(
        "POST",
        "/v1/check?sample_rate=32000&channels=2",
        &pcm(original),
    );
    assert_eq!((status, v["verdict"].as_str()), (200, Some("pass")), "{v}");

    // bad input: a clear 4xx with the reason, never a crash
    let nan: Vec<u8> = [0.1f32, f32::NAN]
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    for (target, body, want, says) in [
        (
            "/v1/check",
            b"not audio at all".to_vec(),
            400,
            "unsupported format",
        ),
        (
            "/v1/check?sample_rate=22050&channels=1",
            b"abc".to_vec(),
            400,
            "whole number",
        ),
        ("/v1/check?sample_rate=22050&channels=1", nan, 400, "NaN"),
        ("/v1/check?sample_rate=fast", vec![0; 8], 400, "sample_rate"),
        ("/v1/check?sample_rate=5", vec![0; 8], 400, "outside"),
    ] {
        let (status, b) = server.request("POST", target, &body);
        assert_eq!(status, want, "{target}: {b}");
        assert!(b.contains(says), "{target}: {b}");
    }
    let (status, b) = server.request("POST", "/v1/check", &vec![0; 4_000_000]);
    assert_eq!(status, 413, "{b}");
    assert!(b.contains("length limit"), "{b}");
    let (status, _) = server.request("GET", "/v1/check", b"");
    assert_eq!(status, 405);

    // eight clients at once against two workers: all answered
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| server.json("POST", "/v1/check", &wav)))
            .collect();
        for h in hs {
            let (status, v) = h.join().unwrap();
            assert_eq!((status, v["verdict"].as_str()), (200, Some("flag")), "{v}");
        }
    });

    let (status, m) = server.request("GET", "/metrics", b"");
    assert_eq!(status, 200);
    for line in [
        "refrain_checks_total{outcome=\"flag\"} 10",
        "refrain_checks_total{outcome=\"pass\"} 1",
        "refrain_checks_total{outcome=\"bad_request\"} 5",
        "refrain_checks_total{outcome=\"too_large\"} 1",
        "refrain_check_seconds_count 11",
        "refrain_checks_in_flight 0",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} in\n{m}");
    }
    let log = server.stop();
    assert!(
        log.iter()
            .any(|l| l.contains("stopped; 10 flagged, 1 passed")),
        "{log:?}"
    );
}

#[test]
fn serve_errors_are_json_with_a_hint_and_a_token_file_locks_it() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train");
    let rate = 22_050u32;
    write_songs(&train, 1..=3, rate);
    let index = dir.path().join("index");
    build_index(&train, &index);
    let token = "s3cret-token-0123456789abcdef";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let server = Server::start(
        &index,
        &[
            "--token-file",
            token_file.to_str().unwrap(),
            "--max-duration",
            "10s",
            "--max-bytes",
            "2M",
        ],
    );
    let auth = format!("Authorization: Bearer {token}\r\n");
    let json = |status_body: (u16, String)| -> (u16, serde_json::Value) {
        let (status, b) = status_body;
        let v: serde_json::Value =
            serde_json::from_str(&b).unwrap_or_else(|e| panic!("{status}: {e}: {b}"));
        (status, v)
    };
    // health needs no token; everything else does
    assert_eq!(server.request("GET", "/healthz", b"").0, 200);
    let r = &piece(2, 16, rate)[4 * rate as usize..12 * rate as usize];
    let wav = synth::wav_bytes(r, rate);
    for headers in [
        "",
        "Authorization: Bearer wrong-token-0123456789\r\n",
        "Authorization: Basic abc\r\n",
    ] {
        let (status, v) = json(server.request_with("POST", "/v1/check", headers, &wav));
        assert_eq!(status, 401, "{v}");
        assert!(
            v["error"].is_string() && v["hint"].as_str().unwrap().contains("Bearer"),
            "{v}"
        );
    }
    let (status, _) = json(server.request("GET", "/metrics", b""));
    assert_eq!(status, 401);
    let (status, v) = json(server.request_with("POST", "/v1/check", &auth, &wav));
    assert_eq!((status, v["verdict"].as_str()), (200, Some("flag")), "{v}");
    // every error is {"error", "hint"}, 404 and 405 included
    let stereo: Vec<u8> = r
        .iter()
        .flat_map(|&s| [s, s])
        .flat_map(f32::to_le_bytes)
        .collect();
    for (method, target, body, want, says) in [
        (
            "POST",
            "/v1/check?sample_rate=22050",
            stereo.clone(),
            400,
            "channels",
        ),
        (
            "POST",
            "/v1/check?sample_rate=0&channels=2",
            stereo.clone(),
            400,
            "sample_rate=0",
        ),
        (
            "POST",
            "/v1/check?sample_rate=22050&channels=0",
            stereo.clone(),
            400,
            "channels=0",
        ),
        (
            "POST",
            "/v1/check?sample_rate=8000&channels=1",
            stereo.clone(),
            413,
            "limit of 10 s",
        ),
        ("POST", "/v1/check", vec![0; 3 << 20], 413, "length limit"),
        ("GET", "/nowhere", vec![], 404, "no route /nowhere"),
        ("GET", "/v1/check", vec![], 405, "GET is not allowed"),
        ("DELETE", "/healthz", vec![], 405, "DELETE is not allowed"),
    ] {
        let (status, v) = json(server.request_with(method, target, &auth, &body));
        assert_eq!(status, want, "{method} {target}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(says),
            "{method} {target}: {v}"
        );
        assert!(!v["hint"].as_str().unwrap().is_empty(), "{v}");
    }
    // the same stereo with its channels named is the copy it is
    let (status, v) = json(server.request_with(
        "POST",
        "/v1/check?sample_rate=22050&channels=2",
        &auth,
        &stereo,
    ));
    assert_eq!((status, v["verdict"].as_str()), (200, Some("flag")), "{v}");
    server.stop();
    // a token too short to be one is refused at start
    std::fs::write(&token_file, "abc").unwrap();
    let o = refrain(&[
        "serve",
        "--index",
        index.to_str().unwrap(),
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("at least 16"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn serve_times_out_slow_checks_and_refuses_a_missing_index() {
    let dir = tempfile::tempdir().unwrap();
    let o = refrain(&[
        "serve",
        "--index",
        dir.path().join("none").to_str().unwrap(),
        "--addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("not found: no such directory"),
        "{}",
        text(&o.stderr)
    );

    let train = dir.path().join("train");
    std::fs::create_dir_all(&train).unwrap();
    write_wav(&train.join("a.wav"), &piece(1, 8, 22_050), 22_050);
    let index = dir.path().join("index");
    build_index(&train, &index);
    // a deadline no check can meet: 60 s of audio in 1 ms
    let server = Server::start(&index, &["--timeout-s", "0.001", "--workers", "1"]);
    let long = piece(2, 30, 22_050);
    let (status, v) = server.json("POST", "/v1/check", &synth::wav_bytes(&long, 22_050));
    assert!(status == 504 || status == 503, "{status} {v}");
    assert!(v["error"].as_str().unwrap().contains("deadline"), "{v}");
    server.stop();
}

#[test]
fn demo_piped_into_head_exits_zero() {
    // `refrain demo | true`: the reader is gone before the report is written
    let mut child = Command::new(env!("CARGO_BIN_EXE_refrain"))
        .arg("demo")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{:?}: {}", o.status, text(&o.stderr));
    // and inspect, whose output is all on stdout
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.wav");
    write_wav(&f, &piece(1, 4, 22_050), 22_050);
    let mut child = Command::new(env!("CARGO_BIN_EXE_refrain"))
        .args(["inspect", f.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    assert!(child.wait().unwrap().success());
}

#[test]
fn folders_say_what_they_skipped_and_nothing_to_audit_fails() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train");
    write_songs(&train, 1..=3, 22_050);
    for name in ["cover.jpg", "notes.txt", "song.xyz", "more.xyz", "README"] {
        std::fs::write(train.join(name), b"x").unwrap();
    }
    let index = dir.path().join("index");
    let err = build_index(&train, &index);
    assert!(
        err.contains("skipped 5 files: unrecognised extension .xyz (2), .jpg (1), .txt (1); no extension (1)"),
        "{err}"
    );
    // a folder with nothing to audit: an error, not an empty success
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("clip.xyz"), b"x").unwrap();
    for cmd in [
        vec![
            "audit",
            "--index",
            index.to_str().unwrap(),
            empty.to_str().unwrap(),
        ],
        vec![
            "fingerprint",
            empty.to_str().unwrap(),
            "--out",
            dir.path().join("fp").to_str().unwrap(),
        ],
        vec![
            "index",
            empty.to_str().unwrap(),
            "--out",
            dir.path().join("i2").to_str().unwrap(),
        ],
    ] {
        let o = refrain(&cmd);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}");
        let e = text(&o.stderr);
        assert!(
            e.contains("skipped 1 file: unrecognised extension .xyz (1)"),
            "{e}"
        );
        assert!(e.contains("nothing to"), "{e}");
    }
}

#[test]
fn fingerprint_files_are_indexed_and_audited_like_audio() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train");
    write_songs(&train, 1..=3, 22_050);
    let fps = dir.path().join("fps");
    let o = refrain(&[
        "fingerprint",
        train.to_str().unwrap(),
        "--out",
        fps.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let index = dir.path().join("index");
    let err = build_index(&fps, &index);
    assert!(err.contains("indexed 3 new item(s)"), "{err}");
    // a clip as audio and as its fingerprint: the same verdict
    let clips = dir.path().join("clips");
    std::fs::create_dir_all(&clips).unwrap();
    let r = 22_050usize;
    write_wav(
        &clips.join("copy.wav"),
        &piece(2, 16, 22_050)[5 * r..17 * r],
        r as u32,
    );
    let cfp = dir.path().join("cfp");
    assert!(refrain(&[
        "fingerprint",
        clips.to_str().unwrap(),
        "--out",
        cfp.to_str().unwrap()
    ])
    .status
    .success());
    let o = refrain(&[
        "audit",
        "--index",
        index.to_str().unwrap(),
        clips.to_str().unwrap(),
        cfp.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    for row in rows {
        assert!(
            row.contains(",flag,") && row.contains("song2.wav.rfp"),
            "{row}"
        );
    }
}

#[test]
fn channels_that_cancel_are_warned_about_by_index_inspect_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train");
    write_songs(&train, 1..=2, 22_050);
    let x = piece(3, 16, 22_050);
    let inverted: Vec<f32> = x.iter().flat_map(|&v| [v, -v]).collect();
    std::fs::write(
        train.join("song3.wav"),
        synth::float_wav_bytes(&inverted, 22_050, 2),
    )
    .unwrap();
    let index = dir.path().join("index");
    let err = build_index(&train, &index);
    assert!(
        err.contains("song3.wav: the channels cancel when averaged"),
        "{err}"
    );
    let o = refrain(&["inspect", train.join("song3.wav").to_str().unwrap()]);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("except"), "{}", text(&o.stdout));
    assert!(
        text(&o.stdout).contains("where they cancel, taken as the left-right difference"),
        "{}",
        text(&o.stdout)
    );
    assert!(text(&o.stderr).contains("warning"), "{}", text(&o.stderr));
    // a copy of it (plain mono) is found; a cancelling query is noted
    let clips = dir.path().join("clips");
    std::fs::create_dir_all(&clips).unwrap();
    let r = 22_050usize;
    write_wav(&clips.join("copy.wav"), &x[4 * r..16 * r], r as u32);
    std::fs::write(
        clips.join("inv.wav"),
        synth::float_wav_bytes(&inverted[8 * r..24 * r], 22_050, 2),
    )
    .unwrap();
    let o = refrain(&[
        "audit",
        "--index",
        index.to_str().unwrap(),
        clips.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.lines()
            .filter(|l| l.contains(",flag,") && l.contains("song3.wav"))
            .count()
            == 2,
        "{out}"
    );
    let err = text(&o.stderr);
    assert!(
        err.contains("note: ") && err.contains("inv.wav: the channels cancel"),
        "{err}"
    );
}

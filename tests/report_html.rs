//! The HTML report, checked in a real browser: the demo's page (written by
//! `refrain demo --html` and by `refrain report` from the audit's JSON) is
//! opened in headless Chromium, which must load it without a console
//! error, run its script, show one evidence panel per flagged clip and
//! render a screenshot that is not blank.
//!
//! Chromium is Debian's `chromium` package (`.ci/run` installs it), or the
//! binary named by `REFRAIN_CHROMIUM`. Without one the test fails, unless
//! `REFRAIN_NO_BROWSER=1` says to skip the browser part.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn refrain(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_refrain"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the refrain binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REFRAIN_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `page` with `extra` arguments; returns
/// (stdout, stderr). Flags: no sandbox (CI runs as root), no GPU, and no
/// background connections (this machine has no network).
fn headless(browser: &Path, profile: &Path, page: &Path, extra: &[&str]) -> (String, String) {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    (text(&o.stdout), text(&o.stderr))
}

/// The page's console messages in Chromium's log (`CONSOLE(line)]`).
fn console_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(String::from)
        .collect()
}

/// (mean, standard deviation) of the luminance of a PNG, and the share of
/// pixels that are not near-white.
fn luminance(png_path: &Path) -> (f64, f64, f64) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let px: Vec<f64> = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| {
            if channels >= 3 {
                0.2126 * p[0] as f64 + 0.7152 * p[1] as f64 + 0.0722 * p[2] as f64
            } else {
                p[0] as f64
            }
        })
        .collect();
    let n = px.len() as f64;
    let mean = px.iter().sum::<f64>() / n;
    let sd = (px.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let inked = px.iter().filter(|&&v| v < 235.0).count() as f64 / n;
    (mean, sd, inked)
}

#[test]
fn the_demo_report_has_a_panel_per_flag_and_loads_cleanly_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let o = refrain(root, &["demo", "--dir", "demo", "--html", "demo.html"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let flagged = text(&o.stdout).matches(",flag,").count();
    // a-c are near copies, d the melodic copy (same tune, other timbre,
    // key and tempo); e-g are originals
    assert_eq!(flagged, 4, "{}", text(&o.stdout));
    let page = std::fs::read_to_string(root.join("demo.html")).unwrap();
    let panels = |p: &str| p.matches("<section class=\"evidence\"").count();
    assert_eq!(panels(&page), flagged);
    // every panel: four plots and both excerpts, all drawn and embedded
    assert_eq!(page.matches("<svg").count(), 4 * flagged);
    assert_eq!(
        page.matches("src=\"data:audio/ogg;codecs=opus;base64,")
            .count(),
        2 * flagged
    );
    for missing in [
        "plot not drawn",
        "excerpt missing",
        "no evidence",
        "not embedded",
    ] {
        assert!(!page.contains(missing), "{missing}");
    }
    assert!(!page.contains("https://") && !page.contains("src=\"http"));
    assert_eq!(
        page.matches("<span class=\"rel\">nearest</span>").count(),
        3
    );

    // the same page from the audit's JSON by `refrain report`
    let o = refrain(
        root,
        &[
            "audit",
            "--index",
            "demo/index",
            "demo/generated",
            "--format",
            "json",
            "--out",
            "audit.json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = refrain(root, &["report", "audit.json", "--out", "report.html"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("4 evidence panel(s), 0 audio excerpt(s) missing"),
        "{err}"
    );
    let again = std::fs::read_to_string(root.join("report.html")).unwrap();
    assert_eq!(panels(&again), flagged);
    assert_eq!(again.matches("data:audio/ogg").count(), 2 * flagged);
    // a report that is not one is refused with the file named
    std::fs::write(root.join("other.json"), "{\"format\": \"something\"}").unwrap();
    let o = refrain(root, &["report", "other.json", "--out", "x.html"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("other.json"),
        "{}",
        text(&o.stderr)
    );

    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("REFRAIN_NO_BROWSER").is_some(),
            "no Chromium: install Debian's `chromium` (as .ci/run does), set REFRAIN_CHROMIUM, \
             or set REFRAIN_NO_BROWSER=1 to skip the browser check"
        );
        eprintln!("REFRAIN_NO_BROWSER: browser check skipped");
        return;
    };

    // the console check catches a page's script error (so its silence on
    // the report means something)
    let broken = root.join("broken.html");
    std::fs::write(
        &broken,
        "<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction();</script></body></html>",
    )
    .unwrap();
    let (_, err) = headless(&browser, &root.join("profile0"), &broken, &["--dump-dom"]);
    let console = console_lines(&err);
    assert!(
        console.iter().any(|l| l.contains("undefinedFunction")),
        "the console log did not show a script error:\n{err}"
    );

    for (name, profile) in [("demo.html", "profile1"), ("report.html", "profile2")] {
        let (dom, err) = headless(
            &browser,
            &root.join(profile),
            &root.join(name),
            &["--dump-dom"],
        );
        let console = console_lines(&err);
        assert!(
            console.is_empty(),
            "{name}: console messages:\n{}",
            console.join("\n")
        );
        // the script ran (it fills in the row count) and every panel is there
        assert!(
            dom.contains("7 of 7 shown"),
            "{name}: the script did not run"
        );
        assert_eq!(dom.matches("class=\"evidence\"").count(), flagged, "{name}");
    }

    // Chromium decodes the embedded excerpts: the first one's duration, read
    // by a page of its own once its metadata has loaded (10 s: the demo's
    // matches are 20 s long, and an excerpt stops at 10)
    let key = "src=\"data:audio/ogg;codecs=opus;base64,";
    let start = page.find(key).unwrap() + "src=\"".len();
    let uri = &page[start..start + page[start..].find('"').unwrap()];
    let probe = root.join("probe.html");
    std::fs::write(
        &probe,
        format!(
            "<!DOCTYPE html><html><body><p id=\"d\">none</p><audio id=\"a\" preload=\"auto\" src=\"{uri}\"></audio>\
             <script>var a=document.getElementById('a'),d=document.getElementById('d');\
             a.addEventListener('loadedmetadata',function(){{d.textContent='duration '+a.duration.toFixed(2);}});\
             a.addEventListener('error',function(){{d.textContent='error '+(a.error&&a.error.code);}});</script></body></html>"
        ),
    )
    .unwrap();
    let (dom, _) = headless(&browser, &root.join("profile4"), &probe, &["--dump-dom"]);
    let shown = dom
        .split("<p id=\"d\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or("");
    let secs: f64 = shown
        .strip_prefix("duration ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the excerpt did not load: {shown:?}"));
    assert!((secs - 10.0).abs() < 0.1, "{secs} s");

    let shot = root.join("shot.png");
    let (_, err) = headless(
        &browser,
        &root.join("profile3"),
        &root.join("demo.html"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1800",
        ],
    );
    assert!(shot.is_file(), "no screenshot:\n{err}");
    let (mean, sd, inked) = luminance(&shot);
    // a blank page is one colour; the report has text, tables and plots
    assert!(
        sd > 30.0 && inked > 0.05,
        "mean {mean:.0}, sd {sd:.1}, {:.1} % inked",
        100.0 * inked
    );
}

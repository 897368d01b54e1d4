//! `refrain report` without audio: read an audit's JSON of 1,000 inputs and
//! render the HTML page, on one core. Target: ≤ 5 s.
//!
//! `cargo bench --bench report`. The inputs are real audits with evidence:
//! 20 synthesized clips (10 copies of training songs, 10 originals) audited
//! against 12 synthesized songs, repeated under 50 names each, so half of
//! the 1,000 inputs are flagged and carry an evidence panel (more than a
//! real batch would). Before timing, the page is checked: a row per input,
//! a panel per flagged input, every plot drawn.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use refrain::analysis::{audio_at_analysis_rate, Analyzer};
use refrain::audit::{AuditConfig, Auditor};
use refrain::index::IndexBuilder;
use refrain::report::{self, IndexInfo, Outcome};
use refrain::synth::{self, Render, Timbre};
use refrain::{html, AnalysisParams};

const TARGET_S: f64 = 5.0;
const INPUTS: usize = 1_000;

fn song(seed: u64, r: Render) -> Vec<f32> {
    synth::render(&synth::compose(seed, 24), &r)
}

/// The JSON text of an audit of 1,000 inputs, and how many are flagged.
fn audit_json() -> (String, usize) {
    let p = AnalysisParams::default();
    let timbres = [Timbre::Piano, Timbre::Pluck, Timbre::Organ, Timbre::Strings];
    let base = |seed: u64| Render {
        melody: timbres[seed as usize % 4],
        accompaniment: timbres[(seed as usize + 1) % 4],
        ..Render::default()
    };
    let fp = |x: Vec<f32>| {
        Analyzer::new(&p)
            .analyze(&audio_at_analysis_rate(x, &p))
            .unwrap()
    };
    let mut b = IndexBuilder::new(&p);
    for seed in 1..=12u64 {
        b.add(
            &format!("training/song{seed:02}.wav"),
            &format!("h{seed}"),
            &fp(song(seed, base(seed))),
        )
        .unwrap();
    }
    let index = b.build();
    let auditor = Auditor::with_config(
        &index,
        AuditConfig {
            evidence: true,
            ..AuditConfig::default()
        },
    );
    let mut clips: Vec<(String, Vec<f32>)> = Vec::new();
    for seed in 1..=10u64 {
        let mut x = song(
            seed,
            Render {
                offset_s: 6.0,
                duration_s: Some(20.0),
                transpose: (seed % 3) as f32,
                ..base(seed)
            },
        );
        synth::add_noise(&mut x, 20.0, seed);
        clips.push((format!("copy{seed}"), x));
    }
    for seed in 400..410u64 {
        let r = Render {
            duration_s: Some(20.0),
            ..base(seed)
        };
        clips.push((format!("original{seed}"), song(seed, r)));
    }
    let audited: Vec<Outcome> = clips
        .iter()
        .map(|(name, x)| Outcome {
            input: format!("{name}.wav"),
            report: Some(auditor.check_fingerprint(&fp(x.clone())).unwrap()),
            error: None,
        })
        .collect();
    let outcomes: Vec<Outcome> = (0..INPUTS)
        .map(|i| {
            let mut o = audited[i % audited.len()].clone();
            o.input = format!("generated/{i:04}_{}", o.input);
            o
        })
        .collect();
    let flagged = outcomes.iter().filter(|o| o.verdict() == "flag").count();
    let info = IndexInfo {
        items: index.len(),
        hours: index.hours(),
        format_version: index.manifest.format_version,
    };
    let mut json = Vec::new();
    report::write_json(
        &mut json,
        "index",
        Some(&info),
        &index.manifest.thresholds,
        &outcomes,
    )
    .unwrap();
    (String::from_utf8(json).unwrap(), flagged)
}

/// What `refrain report --no-audio` does: read the JSON, render the page.
fn report(json: &str) -> String {
    let doc = report::read_json(json).unwrap();
    html::render_audit(&doc, &[])
}

fn bench(c: &mut Criterion) {
    let (json, flagged) = audit_json();
    assert!(flagged >= 400, "{flagged} of {INPUTS} flagged");
    let t = Instant::now();
    let page = report(&json);
    let once = t.elapsed().as_secs_f64();
    assert_eq!(page.matches("<tr data-verdict=").count(), INPUTS);
    assert_eq!(page.matches("<section class=\"evidence\"").count(), flagged);
    assert!(!page.contains("plot not drawn") && !page.contains("no evidence in this report"));
    eprintln!(
        "report of {INPUTS} inputs ({flagged} flagged, JSON {:.1} MB): page {:.1} MB in {once:.2} s (target ≤ {TARGET_S} s)",
        json.len() as f64 / 1e6,
        page.len() as f64 / 1e6
    );
    assert!(once <= TARGET_S, "{once:.2} s");
    let mut g = c.benchmark_group("report");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("json_to_html_1000_inputs", |b| b.iter(|| report(&json)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

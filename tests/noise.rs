//! Noise and silence are not music: with white noise, pink noise, dithered
//! silence and room tone among the training items, fresh noise and silence
//! of 5 to 300 s pass with both scores under 0.1, and the melody tracker
//! finds no melody in them (the melody issue's target).

use refrain::analysis::{audio_at_analysis_rate, Analyzer};
use refrain::audit::{Auditor, Verdict};
use refrain::fingerprint::Fingerprint;
use refrain::index::IndexBuilder;
use refrain::synth::{self, Render, Timbre};
use refrain::AnalysisParams;

/// A xorshift generator: uniform in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    White,
    Pink,
    /// 16-bit silence with TPDF dither (±1 LSB).
    Dither,
    /// Low, brown-ish rumble with a little hiss, at −50 dBFS.
    RoomTone,
}

const KINDS: [Kind; 4] = [Kind::White, Kind::Pink, Kind::Dither, Kind::RoomTone];

fn noise(kind: Kind, seconds: f32, seed: u64) -> Vec<f32> {
    let sr = AnalysisParams::default().sample_rate as f32;
    let n = (seconds * sr) as usize;
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    match kind {
        Kind::White => (0..n).map(|_| 0.3 * r.next()).collect(),
        Kind::Pink => {
            // Paul Kellet's economy pink filter
            let (mut b0, mut b1, mut b2) = (0.0f32, 0.0f32, 0.0f32);
            (0..n)
                .map(|_| {
                    let w = r.next();
                    b0 = 0.99765 * b0 + w * 0.0990460;
                    b1 = 0.96300 * b1 + w * 0.2965164;
                    b2 = 0.57000 * b2 + w * 1.0526913;
                    0.1 * (b0 + b1 + b2 + w * 0.1848)
                })
                .collect()
        }
        Kind::Dither => (0..n)
            .map(|_| (r.next() + r.next()) * 0.5 / 32768.0)
            .collect(),
        Kind::RoomTone => {
            let mut brown = 0.0f32;
            (0..n)
                .map(|_| {
                    brown = 0.995 * brown + 0.05 * r.next();
                    0.003 * (brown + 0.1 * r.next())
                })
                .collect()
        }
    }
}

fn fingerprint(x: Vec<f32>, p: &AnalysisParams) -> Fingerprint {
    Analyzer::new(p)
        .analyze(&audio_at_analysis_rate(x, p))
        .unwrap()
}

#[test]
fn noise_and_silence_pass_and_have_no_melody() {
    let p = AnalysisParams::default();
    let mut b = IndexBuilder::new(&p);
    for (i, kind) in KINDS.iter().enumerate() {
        let fp = fingerprint(noise(*kind, 60.0, 100 + i as u64), &p);
        b.add(&format!("{kind:?}.wav"), &format!("n{i}"), &fp)
            .unwrap();
    }
    let timbres = [Timbre::Piano, Timbre::Strings, Timbre::Organ, Timbre::Pluck];
    for seed in 1..=4u64 {
        let x = synth::render(
            &synth::compose(seed, 16),
            &Render {
                melody: timbres[seed as usize % 4],
                ..Render::default()
            },
        );
        b.add(
            &format!("song{seed}.wav"),
            &format!("s{seed}"),
            &fingerprint(x, &p),
        )
        .unwrap();
    }
    let index = b.build();
    let auditor = Auditor::new(&index);
    for (k, kind) in KINDS.iter().enumerate() {
        for (j, secs) in [5.0f32, 30.0, 300.0].into_iter().enumerate() {
            let fp = fingerprint(noise(*kind, secs, 1000 + 10 * k as u64 + j as u64), &p);
            let voiced = fp.melody.voiced_share();
            let notes = refrain::notes::segment(&fp.melody);
            assert!(
                voiced < 0.005 && notes.is_empty(),
                "{kind:?} {secs} s: {:.1} % voiced, {} notes",
                100.0 * voiced,
                notes.len()
            );
            let r = auditor.check_fingerprint(&fp).unwrap();
            assert_eq!(
                r.verdict,
                Verdict::Pass,
                "{kind:?} {secs} s: {:?}",
                r.best()
            );
            for c in &r.candidates {
                assert!(
                    c.audio_score < 0.1 && c.melody_score < 0.1,
                    "{kind:?} {secs} s against {}: audio {} melody {} ({:?})",
                    c.path,
                    c.audio_score,
                    c.melody_score,
                    c.raw
                );
            }
        }
    }
    // the songs themselves are still found (the noise items do not get in
    // the way)
    let x = synth::render(
        &synth::compose(3, 16),
        &Render {
            melody: timbres[3],
            ..Render::default()
        },
    );
    let r = auditor.check_fingerprint(&fingerprint(x, &p)).unwrap();
    assert_eq!(r.verdict, Verdict::Flag);
    assert_eq!(r.best().unwrap().path, "song3.wav");
}

//! The audit bench's queries, for a profiler: the 20 clips of
//! `benches/audit.rs` (10 s at 32 kHz, 10 cut from indexed songs and 10 from
//! unindexed seeds) audited one after another on one thread, against the
//! bench's index (`target/bench-data/index-1000`, built by
//! `cargo bench --bench audit`). The clips are rendered once and cached in
//! `target/bench-data/clips-1000.f32`, so that a profiler run spends its
//! instructions in the audit, not the synthesizer.
//!
//! ```text
//! cargo build --release --example audit_profile
//! valgrind --tool=callgrind --toggle-collect='*Auditor*check_samples*' \
//!     target/release/examples/audit_profile 1
//! ```
//!
//! The argument is how many times the 20 clips are audited (default 1). It
//! prints one line per clip (item and both scores, bit for bit), so two
//! builds' answers can be compared with `diff`.

use std::path::PathBuf;
use std::time::Instant;

use refrain::audit::{AuditConfig, Auditor};
use refrain::index::Index;
use refrain::synth::{self, Render, Timbre};

const BARS: usize = 80;
const ITEMS: u64 = 1000;
const RATE: u32 = 32_000;

fn render(seed: u64) -> Vec<f32> {
    let t = [Timbre::Piano, Timbre::Pluck, Timbre::Organ, Timbre::Strings];
    synth::render(
        &synth::compose(seed, BARS),
        &Render {
            sample_rate: RATE,
            melody: t[seed as usize % 4],
            accompaniment: t[(seed as usize / 4 + 1) % 4],
            ..Render::default()
        },
    )
}

/// The bench's clips: copies first, then originals.
fn clips(dir: &std::path::Path) -> Vec<Vec<f32>> {
    let len = 10 * RATE as usize;
    let cache = dir.join(format!("clips-{ITEMS}.f32"));
    if let Ok(bytes) = std::fs::read(&cache) {
        if bytes.len() == 20 * len * 4 {
            return bytes
                .chunks_exact(len * 4)
                .map(|c| {
                    c.chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect()
                })
                .collect();
        }
    }
    let clip = |seed: u64, start_s: usize| -> Vec<f32> {
        let x = render(seed);
        x[start_s * RATE as usize..(start_s + 10) * RATE as usize].to_vec()
    };
    let mut out: Vec<Vec<f32>> = (0..10u64)
        .map(|i| clip(i * 97 % ITEMS, 30 + i as usize * 7))
        .collect();
    out.extend((0..10u64).map(|i| clip(1_000_000 + i, 40)));
    let bytes: Vec<u8> = out.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&cache, bytes).unwrap();
    out
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    let index = Index::open(&dir.join(format!("index-{ITEMS}"))).expect("the bench's index");
    let clips = clips(&dir);
    // every candidate listed, so that all their evidence is compared
    let auditor = Auditor::with_config(
        &index,
        AuditConfig {
            top_k: usize::MAX,
            ..AuditConfig::default()
        },
    );
    let t = Instant::now();
    for round in 0..rounds {
        for (k, x) in clips.iter().enumerate() {
            let r = auditor.check_samples(x, RATE, 1).unwrap();
            if round == 0 {
                let line: Vec<String> = r
                    .candidates
                    .iter()
                    .map(|c| {
                        format!(
                            "{}:{:08x}:{:08x} {:?}",
                            c.item,
                            c.audio_score.to_bits(),
                            c.melody_score.to_bits(),
                            c.raw
                        )
                    })
                    .collect();
                println!("clip {k}: {}", line.join("\n  "));
            }
        }
    }
    eprintln!(
        "{} audits in {:.1} ms each",
        rounds * clips.len(),
        t.elapsed().as_secs_f64() * 1e3 / (rounds * clips.len()) as f64
    );
}

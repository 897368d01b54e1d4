//! What each fuzz target does with its input, shared with the test suite:
//! `tests/hardening.rs` replays every input kept in `tests/data/fuzz/TARGET/`
//! through these same functions, so a crash once found stays fixed.
//!
//! Each function panics only on a bug: a panic in the library, or a result
//! that breaks a promise (non-finite samples, a fingerprint that does not
//! read back, a search hit out of range).

#![allow(dead_code)]

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::OnceLock;

use refrain::analysis::{audio_at_analysis_rate, Analyzer};
use refrain::audit::Auditor;
use refrain::decode::{decode_bytes_with_limits, DecodeLimits};
use refrain::fingerprint::{Fingerprint, FORMAT_VERSION, MAGIC};
use refrain::index::{current_generation, FileSum, Index, IndexBuilder, Manifest};
use refrain::search::{CandidateSearch, HnswSearch};
use refrain::{synth, AnalysisParams};

// ---------------------------------------------------------------------------
// decode: arbitrary bytes through the decoder (format recognised by content)
// and, when they decode, through the whole front end.

thread_local! {
    static ANALYZER: RefCell<Analyzer> = RefCell::new(Analyzer::new(&AnalysisParams::default()));
}

pub fn decode(data: &[u8]) {
    let limits = DecodeLimits {
        max_duration_s: 20.0,
        max_bytes: 1 << 22,
    };
    let params = AnalysisParams::default();
    if let Ok(audio) = decode_bytes_with_limits(data, None, params.sample_rate, &limits) {
        assert!(audio.samples.iter().all(|x| x.is_finite()));
        assert!(audio.source.duration_s <= limits.max_duration_s + 1e-9);
        ANALYZER.with(|a| {
            if let Ok(fp) = a.borrow_mut().analyze(&audio) {
                // every number finite and the layout consistent: it reads back
                let back = Fingerprint::from_bytes(&fp.to_bytes(), &params);
                assert!(back.is_ok(), "{:?}", back.err());
            }
        });
    }
}

// ---------------------------------------------------------------------------
// fingerprint_file: arbitrary bytes as a fingerprint file, twice: as they
// are, and wrapped in a valid frame (magic, version, this build's parameter
// hash, CRC-32) so that the section parser and everything downstream of it
// are reached. A fingerprint that parses is added to an index and audited.

/// A fingerprint of 12 s of synthesized music.
fn music(seed: u64) -> Fingerprint {
    let p = AnalysisParams::default();
    let x = synth::render(
        &synth::compose(seed, 6),
        &synth::Render {
            sample_rate: p.sample_rate,
            duration_s: Some(12.0),
            ..synth::Render::default()
        },
    );
    Analyzer::new(&p)
        .analyze(&audio_at_analysis_rate(x, &p))
        .expect("synthesized music analyses")
}

fn base_fingerprint() -> &'static Fingerprint {
    static FP: OnceLock<Fingerprint> = OnceLock::new();
    FP.get_or_init(|| music(5))
}

pub fn fingerprint_file(data: &[u8]) {
    let params = AnalysisParams::default();
    let hash = params.hash();
    let _ = Fingerprint::from_bytes(data, &params);
    if data.len() < 4 {
        return;
    }
    let mut b = Vec::with_capacity(data.len() + 24);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&data[..4]);
    b.extend_from_slice(&hash.to_le_bytes());
    b.extend_from_slice(&data[4..]);
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let Ok(fp) = Fingerprint::from_bytes(&b, &params) else {
        return;
    };
    assert_eq!(
        Fingerprint::from_bytes(&fp.to_bytes(), &params)
            .ok()
            .as_ref(),
        Some(&fp)
    );
    let mut builder = IndexBuilder::new(&params);
    builder
        .add("base", "h0", base_fingerprint())
        .expect("same parameters");
    if builder.add("fuzz", "h1", &fp).is_err() {
        return;
    }
    let index = builder.build();
    let auditor = Auditor::new(&index);
    let _ = auditor.check_fingerprint(&fp);
    let _ = auditor.check_fingerprint(base_fingerprint());
}

// ---------------------------------------------------------------------------
// index_files: arbitrary bytes as one file of an index. The first byte picks
// the file, the rest is its content; the other files are those of a valid
// index, and the checksums covering the fuzzed file are recomputed, so that
// the parsers behind the checksums are reached. An index that opens is
// audited.
//
// 0: manifest.json, 1: items.bin, 2: vectors.bin (through `Index::open`);
// 3: search.hnsw (through `HnswSearch::from_bytes`, then searched);
// 4: CURRENT as it is; 5: one of the files as it is (checksums not fixed).

struct Base {
    dir: PathBuf,
    gen: String,
    manifest: Manifest,
    items: Vec<u8>,
    vectors: Vec<u8>,
    query: Fingerprint,
}

static INDEX: OnceLock<Base> = OnceLock::new();

fn base_index() -> &'static Base {
    INDEX.get_or_init(|| {
        let p = AnalysisParams::default();
        let mut b = IndexBuilder::new(&p);
        for seed in [1u64, 2] {
            b.add(&format!("song{seed}"), &format!("h{seed}"), &music(seed))
                .unwrap();
        }
        let dir = std::env::temp_dir().join(format!(
            "refrain-fuzz-index-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        b.build().save(&dir).unwrap();
        let gen = current_generation(&dir).unwrap();
        let g = dir.join(&gen);
        let manifest_bytes = std::fs::read(g.join("manifest.json")).unwrap();
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).unwrap();
        // `REFRAIN_FUZZ_SEEDS=DIR`: write one valid input per mode as seeds
        if let Some(seeds) = std::env::var_os("REFRAIN_FUZZ_SEEDS") {
            let seeds = PathBuf::from(seeds);
            std::fs::create_dir_all(&seeds).unwrap();
            let dim = refrain::embed::dim();
            let v: Vec<f32> = (0..60 * dim)
                .map(|i| ((i * 2_654_435_761usize) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            HnswSearch::build(&v, dim).save(&g, "seed").unwrap();
            let mut hnsw = std::fs::read(HnswSearch::file_path(&g, "seed")).unwrap();
            hnsw.truncate(hnsw.len() - 4);
            let current = std::fs::read(dir.join("CURRENT")).unwrap();
            for (mode, body) in [
                (0u8, &manifest_bytes),
                (1, &std::fs::read(g.join("items.bin")).unwrap()),
                (2, &std::fs::read(g.join("vectors.bin")).unwrap()),
                (3, &hnsw),
                (4, &current),
            ] {
                let mut seed = vec![mode];
                seed.extend_from_slice(body);
                std::fs::write(seeds.join(format!("seed-{mode}")), seed).unwrap();
            }
        }
        Base {
            items: std::fs::read(g.join("items.bin")).unwrap(),
            vectors: std::fs::read(g.join("vectors.bin")).unwrap(),
            manifest,
            gen,
            dir,
            query: music(2),
        }
    })
}

/// Removes the index directory `index_files` works in (for the tests; the
/// fuzzer leaves it for the next run to replace).
pub fn remove_index_dir() {
    if let Some(b) = INDEX.get() {
        let _ = std::fs::remove_dir_all(&b.dir);
    }
}

fn sum(b: &[u8]) -> FileSum {
    FileSum {
        bytes: b.len() as u64,
        crc32: crc32fast::hash(b),
    }
}

fn write_current(base: &Base, manifest: &[u8]) {
    let rec = format!(
        "{}\nmanifest.json {} {:08x}\n",
        base.gen,
        manifest.len(),
        crc32fast::hash(manifest)
    );
    std::fs::write(base.dir.join("CURRENT"), rec).unwrap();
}

/// Writes the generation with `items` and `vectors`, checksums fixed.
fn write_generation(base: &Base, items: &[u8], vectors: &[u8]) {
    let g = base.dir.join(&base.gen);
    std::fs::write(g.join("items.bin"), items).unwrap();
    std::fs::write(g.join("vectors.bin"), vectors).unwrap();
    let mut m = base.manifest.clone();
    m.files.insert("items.bin".into(), sum(items));
    m.files.insert("vectors.bin".into(), sum(vectors));
    let json = serde_json::to_vec_pretty(&m).unwrap();
    std::fs::write(g.join("manifest.json"), &json).unwrap();
    write_current(base, &json);
}

fn open_and_audit(base: &Base) {
    if let Ok(index) = Index::open(&base.dir) {
        let _ = Auditor::new(&index).check_fingerprint(&base.query);
    }
}

pub fn index_files(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let base = base_index();
    let g = base.dir.join(&base.gen);
    match which % 6 {
        0 => {
            write_generation(base, &base.items, &base.vectors);
            std::fs::write(g.join("manifest.json"), body).unwrap();
            write_current(base, body);
            open_and_audit(base);
        }
        1 => {
            write_generation(base, body, &base.vectors);
            open_and_audit(base);
        }
        2 => {
            write_generation(base, &base.items, body);
            open_and_audit(base);
        }
        3 => {
            let mut b = body.to_vec();
            let crc = crc32fast::hash(&b);
            b.extend_from_slice(&crc.to_le_bytes());
            let dim = refrain::embed::dim();
            // the count the header claims (offset 16), so that it is accepted
            let len = b
                .get(16..20)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as usize)
                .unwrap_or(0);
            if let Ok(h) = HnswSearch::from_bytes(&b, dim, len) {
                let q: Vec<f32> = (0..dim)
                    .map(|i| ((i * 7 % 13) as f32 - 6.0) / 20.0)
                    .collect();
                for k in [1, 20] {
                    for (id, d) in h.search(&q, k) {
                        assert!((id as usize) < h.len(), "id {id} (distance {d})");
                    }
                }
            }
        }
        4 => {
            write_generation(base, &base.items, &base.vectors);
            std::fs::write(base.dir.join("CURRENT"), body).unwrap();
            open_and_audit(base);
        }
        _ => {
            write_generation(base, &base.items, &base.vectors);
            let Some((&f, content)) = body.split_first() else {
                return;
            };
            let name = ["manifest.json", "items.bin", "vectors.bin"][usize::from(f) % 3];
            std::fs::write(g.join(name), content).unwrap();
            open_and_audit(base);
        }
    }
}

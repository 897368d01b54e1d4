//! Refrain as a dependency: an external candidate-search engine, the index
//! it leaves behind, and the error kinds a caller matches on.

use refrain::analysis::Analyzer;
use refrain::audit::{Auditor, Verdict};
use refrain::decode::from_interleaved;
use refrain::index::{Index, IndexBuilder};
use refrain::search::{conformance, CandidateSearch, ExactSearch, HnswSearch};
use refrain::synth;
use refrain::{AnalysisParams, ErrorKind};

fn song(seed: u64, offset_s: f32, seconds: f32) -> Vec<f32> {
    synth::render(
        &synth::compose(seed, 12),
        &synth::Render {
            sample_rate: 22_050,
            offset_s,
            duration_s: Some(seconds),
            ..synth::Render::default()
        },
    )
}

/// Three songs and enough filler for the HNSW engine (≥ 2,000 windows).
fn big_index() -> Index {
    let params = AnalysisParams::default();
    let mut b = IndexBuilder::new(&params);
    let mut an = Analyzer::new(&params);
    for s in 1..=3u64 {
        let a = from_interleaved(&song(s, 0.0, 60.0), 22_050, 1, params.sample_rate).unwrap();
        b.add(
            &format!("song{s}.wav"),
            &format!("h{s}"),
            &an.analyze(&a).unwrap(),
        )
        .unwrap();
    }
    for i in 0..2u64 {
        b.add(
            &format!("filler{i}"),
            &format!("f{i}"),
            &synth::random_fingerprint(40 + i, 2_200),
        )
        .unwrap();
    }
    b.build()
}

/// An engine that answers one window id beyond the index.
struct OffByOne(ExactSearch);

impl CandidateSearch for OffByOne {
    fn search(&self, q: &[f32], k: usize) -> Vec<(u32, f32)> {
        let mut h = self.0.search(q, k);
        if let Some(first) = h.first_mut() {
            first.0 = self.0.len() as u32 + 3;
        }
        h
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn dim(&self) -> usize {
        self.0.dim()
    }
}

#[test]
fn an_external_engine_its_saved_index_and_its_bad_ids() {
    let index = big_index();
    let dim = index.manifest.embedding_dim;
    let windows = index.window_item.len();
    assert!(windows >= 2_000, "{windows}");
    let vectors = index.window_vectors();
    assert_eq!(vectors.len(), windows * dim);
    // the built-in engines, loaded from the index's own vectors, conform
    let exact = conformance::run(&ExactSearch::new(vectors.clone(), dim), &vectors, dim).unwrap();
    assert_eq!(exact.recall_at_10, 1.0);
    let fresh = HnswSearch::build(&vectors, dim);
    for engine in [&fresh as &dyn CandidateSearch, index.search()] {
        let r = conformance::run(engine, &vectors, dim).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.recall_at_10 >= conformance::MIN_RECALL, "{r:?}");
    }

    let copy = song(2, 10.0, 12.0);
    let before = Auditor::new(&index)
        .check_samples(&copy, 22_050, 1)
        .unwrap();
    assert_eq!(before.verdict, Verdict::Flag);
    // an external engine filled from window_vectors gives the same answers
    let index = index.with_search(Box::new(ExactSearch::new(vectors.clone(), dim)));
    let r = Auditor::new(&index)
        .check_samples(&copy, 22_050, 1)
        .unwrap();
    assert_eq!(r.verdict, Verdict::Flag);
    assert_eq!(r.best().unwrap().path, "song2.wav");
    // saved twice (the first generation is then deleted), it opens without it
    let dir = tempfile::tempdir().unwrap();
    let mut index = index;
    index.save(dir.path()).unwrap();
    index.save(dir.path()).unwrap();
    let reopened = Index::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reopened.window_item.len(), windows);
    let r = Auditor::new(&reopened)
        .check_samples(&copy, 22_050, 1)
        .unwrap();
    assert_eq!(r.verdict, Verdict::Flag);
    assert_eq!(r.best().unwrap().path, "song2.wav");

    // an engine out of step with the index: an error, not a panic
    let bad = reopened.with_search(Box::new(OffByOne(ExactSearch::new(vectors, dim))));
    let e = Auditor::new(&bad)
        .check_samples(&copy, 22_050, 1)
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InvalidInput(_)), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("window id {}", windows + 3)),
        "{e}"
    );
}

#[test]
fn a_missing_index_is_not_found_and_kinds_are_matched_with_a_wildcard() {
    let dir = tempfile::tempdir().unwrap();
    for d in [dir.path().to_path_buf(), dir.path().join("absent")] {
        let e = Index::open(&d).unwrap_err();
        let what = match &e.kind {
            ErrorKind::NotFound(m) => m.clone(),
            // ErrorKind is non_exhaustive: callers need this arm
            other => panic!("{other}"),
        };
        assert!(what.contains("refrain index"), "{what}");
        assert_eq!(e.path.as_deref(), Some(d.as_path()));
    }
}

/// Two training items that are one piece played with two lead instruments
/// share a melody
/// (both reach the melody cap against a copy of either); a whole-track
/// exact copy of each must still be attributed to itself, by its
/// same-recording evidence, and never to the other by item order (issue 12).
#[test]
fn exact_copies_of_two_items_sharing_a_melody_are_each_attributed_to_themselves() {
    let render = |seed: u64, melody: synth::Timbre| {
        synth::render(
            &synth::compose(seed, 16),
            &synth::Render {
                sample_rate: 22_050,
                melody,
                ..synth::Render::default()
            },
        )
    };
    let params = AnalysisParams::default();
    let mut b = IndexBuilder::new(&params);
    let mut an = Analyzer::new(&params);
    let mut songs: Vec<(String, Vec<f32>)> = (21..=23u64)
        .map(|s| (format!("song{s}.wav"), render(s, synth::Timbre::Piano)))
        .collect();
    // in item order the strings rendition comes first, so a tie broken by
    // order would name it for a copy of the piano rendition
    songs.insert(0, ("strings.wav".into(), render(9, synth::Timbre::Strings)));
    songs.push(("piano.wav".into(), render(9, synth::Timbre::Piano)));
    for (name, x) in &songs {
        let a = from_interleaved(x, 22_050, 1, params.sample_rate).unwrap();
        b.add(name, name, &an.analyze(&a).unwrap()).unwrap();
    }
    let index = b.build();
    let auditor = Auditor::new(&index);
    for name in ["strings.wav", "piano.wav"] {
        let other = if name == "strings.wav" {
            "piano.wav"
        } else {
            "strings.wav"
        };
        let x = &songs.iter().find(|(n, _)| n == name).unwrap().1;
        let r = auditor.check_samples(x, 22_050, 1).unwrap();
        assert_eq!(r.verdict, Verdict::Flag, "{name}");
        let best = r.best().unwrap();
        assert_eq!(best.path, name, "{:?}", r.candidates);
        // the test means something: the other arrangement is a candidate
        // with the melody evidence of a copy, and only audio tells them apart
        let twin = r
            .candidates
            .iter()
            .find(|c| c.path == other)
            .unwrap_or_else(|| panic!("{other} is not a candidate: {:?}", r.candidates));
        assert!(
            twin.melody_score >= r.thresholds.melody,
            "{other}: melody {}",
            twin.melody_score
        );
        assert!(
            best.audio_score > twin.audio_score,
            "{name} {} vs {other} {}",
            best.audio_score,
            twin.audio_score
        );
    }
}

//! The training-set index: a directory holding a manifest, the per-item
//! sequences re-ranking needs, the window embeddings and their search graph.
//!
//! ```text
//! INDEX_DIR/
//!   CURRENT              name of the live generation ("gen-000004") and the
//!                        size and CRC-32 of its manifest.json
//!   gen-000004/
//!     manifest.json      version, parameters, items, thresholds, file checksums
//!     items.bin          per-item sequences behind an offset table (see
//!                        `fingerprints/FORMAT.md`), decoded per candidate
//!     vectors.bin        window embeddings, 8-bit (for rebuilding on --add)
//!     landmarks.post     the landmark pairs by hash (`postings.rs`)
//!     melodic.post       the melodic n-grams by hash (`postings.rs`)
//!     search.hnsw        the HNSW graph and its vectors (see `search.rs`)
//!   cache/               fingerprints of finished items while a build runs
//! ```
//!
//! Writes are atomic: a new generation is written and synced in full, then
//! `CURRENT` is replaced by a rename. An interrupted build leaves the old
//! generation live (and an orphan directory that the next build removes).
//!
//! Every byte is covered by a checksum: `CURRENT` holds the size and CRC-32
//! of `manifest.json`, the manifest those of the other files, and
//! `search.hnsw` carries its own. [`Index::open`] refuses a generation in
//! which any of them does not match, so a damaged index is an error that
//! says to rebuild, never garbage.
//!
//! Opening maps `items.bin`, `vectors.bin` and the two posting tables
//! (after checking each one's size and CRC-32 in one streaming pass) and
//! views them in place: nothing is rebuilt, and no item is decoded until a
//! query makes it a candidate ([`Index::item`]). `index --add` writes a
//! whole new generation (every file rewritten from the old one's records
//! and the new items), as crash-safe as a first build.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result, Stage};
use crate::fingerprint::{write_atomic, Fingerprint};
use crate::landmarks::{LandmarkIndex, LandmarkPeak};
use crate::mapped::Bytes;
use crate::ngrams::{Event, MelodicIndex};
use crate::params::AnalysisParams;
use crate::postings::{PostingTable, TableKind};
use crate::search::{CandidateSearch, ExactSearch, HnswSearch};
use crate::sequences::Sequences;

/// The index format version this build reads and writes.
///
/// Version 2 added the manifest checksum in `CURRENT`; version 3 the
/// landmark peaks of every item in `items.bin`; version 4 the melodic
/// events; version 5 stores the posting tables built (`landmarks.post`,
/// `melodic.post`) and an offset table in `items.bin`, so that opening maps
/// files instead of rebuilding.
pub const INDEX_VERSION: u32 = 5;
/// Every `WINDOW_STRIDE`-th embedding window of an item is indexed (every
/// 2 s); queries use all of theirs.
pub const WINDOW_STRIDE: usize = 2;
/// Below this many windows an exact search is used instead of HNSW.
const EXACT_BELOW: usize = 2_000;
const ITEMS_MAGIC: &[u8; 8] = b"REFRAINS";
const VECTORS_MAGIC: &[u8; 8] = b"REFRAINV";
const SEARCH_BASENAME: &str = "search";
/// `items.bin` bytes before its offset table: magic, version, parameter
/// hash, item count.
const ITEMS_HEADER: usize = 8 + 4 + 8 + 4;
/// `vectors.bin` bytes before the vectors: magic, version, dim, count.
const VECTORS_HEADER: usize = 8 + 4 + 4 + 4;
const LANDMARKS_FILE: &str = "landmarks.post";
const MELODIC_FILE: &str = "melodic.post";

/// Decision thresholds on the two scores, and how they were set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Flag when `audio_score` ≥ this.
    pub audio: f32,
    /// Flag when `melody_score` ≥ this.
    pub melody: f32,
    /// How they were set: `default`, `calibrated`, `self-calibrated
    /// (leave-one-out)` or `caller` (see [`crate::calibrate`]).
    pub method: String,
    /// The false-positive rate they were calibrated for, if calibrated.
    pub target_fpr: Option<f64>,
    /// Number of negatives used for calibration.
    pub negatives: usize,
    /// 95 % upper confidence bound of the achieved false-positive rate.
    pub fpr_upper_95: Option<f64>,
    /// How many of the calibration negatives these thresholds flag.
    #[serde(default)]
    pub flagged_negatives: Option<usize>,
    /// When they were calibrated (RFC 3339, UTC, to the second); `None`
    /// for default or caller-set thresholds and for indexes written before
    /// it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_at: Option<String>,
    /// Durations of the negatives calibration measured (seconds): an audit
    /// notes inputs outside this range (see
    /// [`crate::calibrate::coverage_note`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durations_s: Option<DurationRange>,
    /// Negatives left out of the fit because they look like copies of a
    /// training item (or, for self-calibration, excerpts of near-duplicate
    /// training items); `negatives` counts the others.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub excluded_suspects: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The spread of a set of durations, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DurationRange {
    /// Shortest.
    pub min: f64,
    /// Median (nearest rank).
    pub median: f64,
    /// Longest.
    pub max: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            audio: 0.5,
            melody: 0.5,
            method: "default".into(),
            target_fpr: None,
            negatives: 0,
            fpr_upper_95: None,
            flagged_negatives: None,
            calibrated_at: None,
            durations_s: None,
            excluded_suspects: 0,
        }
    }
}

/// One training item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The path as given at index time.
    pub path: String,
    /// Duration in seconds.
    pub duration_s: f64,
    /// BLAKE3 of the file's bytes (hex), to skip finished work and duplicates.
    pub content_hash: String,
    /// Indexed windows of this item.
    pub windows: u32,
}

/// Checksum of one file of a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSum {
    /// Size in bytes.
    pub bytes: u64,
    /// CRC-32 (IEEE).
    pub crc32: u32,
}

/// The index manifest (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `refrain-index`.
    pub format: String,
    /// [`INDEX_VERSION`].
    pub format_version: u32,
    /// Hash of the analysis parameters, hex.
    pub params_hash: String,
    /// The analysis parameters.
    pub params: AnalysisParams,
    /// See [`WINDOW_STRIDE`].
    pub window_stride: usize,
    /// Embedding dimension.
    pub embedding_dim: usize,
    /// Seconds between indexed windows of an item.
    pub window_hop_s: f64,
    /// The items, in id order.
    pub items: Vec<Item>,
    /// Default decision thresholds.
    pub thresholds: Thresholds,
    /// Checksums of the generation's other files.
    pub files: std::collections::BTreeMap<String, FileSum>,
    /// The program that wrote it.
    pub created_by: String,
}

/// An opened (or freshly built) index.
pub struct Index {
    /// The manifest.
    pub manifest: Manifest,
    /// Item id of every indexed window.
    pub window_item: Vec<u32>,
    /// Start (seconds, in its item) of every indexed window.
    pub window_start_s: Vec<f32>,
    /// The image of `items.bin`: header, offset table, one record per item
    /// (decoded on demand by [`Index::item`]).
    items: Bytes,
    /// The image of `vectors.bin`: 8-bit window embeddings (×127) after a
    /// header, kept for `--add` rebuilds.
    vectors: Bytes,
    engine: Engine,
    /// The items' landmark pairs by hash.
    landmarks: LandmarkIndex,
    /// The items' melodic n-grams by hash.
    melodic: MelodicIndex,
    /// The generation directory it was opened from (named by errors).
    origin: Option<PathBuf>,
}

/// The candidate-search engine behind an index.
enum Engine {
    Exact(ExactSearch),
    Hnsw(HnswSearch),
    External(Box<dyn CandidateSearch>),
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("items", &self.manifest.items.len())
            .field("windows", &self.window_item.len())
            .finish()
    }
}

/// Collects items, then builds an [`Index`].
pub struct IndexBuilder {
    params: AnalysisParams,
    items: Vec<Item>,
    /// The items' encoded [`Sequences`], one after the other.
    records: Vec<u8>,
    /// End of each item's record in `records`.
    ends: Vec<u64>,
    /// 8-bit window embeddings (×127), as stored.
    vectors_q: Vec<i8>,
    thresholds: Thresholds,
    hashes: HashSet<String>,
}

fn index_err(dir: &Path, stage: Stage, kind: ErrorKind) -> Error {
    Error::at(dir, stage, kind)
}

impl IndexBuilder {
    /// An empty builder.
    pub fn new(params: &AnalysisParams) -> Self {
        IndexBuilder {
            params: params.clone(),
            items: Vec::new(),
            records: Vec::new(),
            ends: Vec::new(),
            vectors_q: Vec::new(),
            thresholds: Thresholds::default(),
            hashes: HashSet::new(),
        }
    }

    /// A builder holding everything `index` holds (for `--add`): its items'
    /// records are copied as stored, each checked to decode.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Corrupt`] at [`Stage::ReadIndex`] when a record of
    /// `index` does not decode (a damaged index).
    pub fn from_index(index: &Index) -> Result<Self> {
        let mut records = Vec::with_capacity(index.items.len());
        let mut ends = Vec::with_capacity(index.len());
        for id in 0..index.len() {
            let rec = index
                .record(id)
                .filter(|r| Sequences::decode(r).is_some_and(|(_, used)| used == r.len()))
                .ok_or_else(|| index.record_err(id))?;
            records.extend_from_slice(rec);
            ends.push(records.len() as u64);
        }
        Ok(IndexBuilder {
            params: index.manifest.params.clone(),
            items: index.manifest.items.clone(),
            records,
            ends,
            vectors_q: index.vectors_q().to_vec(),
            thresholds: index.manifest.thresholds.clone(),
            hashes: index
                .manifest
                .items
                .iter()
                .map(|i| i.content_hash.clone())
                .collect(),
        })
    }

    /// Whether an item with this content hash is already in.
    pub fn contains(&self, content_hash: &str) -> bool {
        self.hashes.contains(content_hash)
    }

    /// Number of items so far.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no items were added.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds one item from its fingerprint.
    ///
    /// # Errors
    ///
    /// At [`Stage::WriteIndex`]: [`ErrorKind::Params`] for a fingerprint
    /// made with other analysis parameters, [`ErrorKind::InvalidInput`] for
    /// one made for queries only (no stored landmark peaks).
    pub fn add(&mut self, path: &str, content_hash: &str, fp: &Fingerprint) -> Result<()> {
        if fp.params_hash != self.params.hash() {
            return Err(Error::new(
                Stage::WriteIndex,
                ErrorKind::Params {
                    found: fp.params_hash,
                    expected: self.params.hash(),
                },
            ));
        }
        if fp.landmarks_index.is_empty() && !fp.landmarks_query.is_empty() {
            return Err(Error::new(
                Stage::WriteIndex,
                ErrorKind::InvalidInput(format!(
                    "{path}: the fingerprint was made for queries only (no stored landmark \
                     peaks); fingerprint the file again with `Analyzer::new`"
                )),
            ));
        }
        let dim = crate::embed::dim();
        let mut windows = 0u32;
        for row in fp.embeddings.rows().into_iter().step_by(WINDOW_STRIDE) {
            self.vectors_q.extend(row.iter().map(|&v| quantize(v)));
            windows += 1;
        }
        debug_assert_eq!(self.vectors_q.len() % dim, 0);
        self.items.push(Item {
            path: path.to_string(),
            duration_s: fp.source.duration_s,
            content_hash: content_hash.to_string(),
            windows,
        });
        Sequences::from_fingerprint(fp, &self.params).encode(&mut self.records);
        self.ends.push(self.records.len() as u64);
        self.hashes.insert(content_hash.to_string());
        Ok(())
    }

    /// Builds the search structure and returns the index.
    pub fn build(self) -> Index {
        let dim = crate::embed::dim();
        let window_hop_s =
            self.params.embed_hop as f64 / self.params.chroma_rate() * WINDOW_STRIDE as f64;
        let mut window_item = Vec::new();
        let mut window_start_s = Vec::new();
        for (id, item) in self.items.iter().enumerate() {
            for w in 0..item.windows {
                window_item.push(id as u32);
                window_start_s.push((w as f64 * window_hop_s) as f32);
            }
        }
        let n = window_item.len();
        // search what is stored: the 8-bit vectors, so that a reopened or
        // extended index gives exactly the answers of the one just built
        let vectors = renormalize(
            self.vectors_q.iter().map(|&q| q as f32 / 127.0).collect(),
            dim,
        );
        let engine = if n < EXACT_BELOW {
            Engine::Exact(ExactSearch::new(vectors, dim))
        } else {
            Engine::Hnsw(HnswSearch::build(&vectors, dim))
        };
        let records: Vec<&[u8]> = (0..self.ends.len())
            .map(|i| {
                let from = if i == 0 { 0 } else { self.ends[i - 1] as usize };
                &self.records[from..self.ends[i] as usize]
            })
            .collect();
        // the records are this builder's own encodings, or were checked to
        // decode by `from_index`
        let landmarks = LandmarkIndex::build(
            records
                .iter()
                .map(|r| Sequences::decode_peaks_of(r).unwrap_or_default()),
            self.params.landmark_index.fan_out,
        );
        let melodic = MelodicIndex::build(
            records
                .iter()
                .map(|r| Sequences::decode_events_of(r).unwrap_or_default()),
        );
        let items = Bytes::from_vec(items_image(self.params.hash(), &self.records, &self.ends));
        let vectors = Bytes::from_vec(vectors_image(dim, n, &self.vectors_q));
        drop(records);
        Index {
            landmarks,
            melodic,
            items,
            vectors,
            origin: None,
            manifest: Manifest {
                format: "refrain-index".into(),
                format_version: INDEX_VERSION,
                params_hash: format!("{:016x}", self.params.hash()),
                params: self.params,
                window_stride: WINDOW_STRIDE,
                embedding_dim: dim,
                window_hop_s,
                items: self.items,
                thresholds: self.thresholds,
                files: Default::default(),
                created_by: format!("refrain {}", env!("CARGO_PKG_VERSION")),
            },
            window_item,
            window_start_s,
            engine,
        }
    }
}

/// A window embedding value as stored: × 127, rounded, in `-127..=127`.
fn quantize(v: f32) -> i8 {
    (v * 127.0).round().clamp(-127.0, 127.0) as i8
}

/// The bytes of `items.bin` (see `fingerprints/FORMAT.md`): header, the
/// offset table (`count + 1` absolute `u64` positions: record `i` is
/// `offsets[i]..offsets[i + 1]`, the last is the file length), records.
fn items_image(params_hash: u64, records: &[u8], ends: &[u64]) -> Vec<u8> {
    let table = ITEMS_HEADER + 8 * (ends.len() + 1);
    let mut b = Vec::with_capacity(table + records.len());
    b.extend_from_slice(ITEMS_MAGIC);
    b.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    b.extend_from_slice(&params_hash.to_le_bytes());
    b.extend_from_slice(&(ends.len() as u32).to_le_bytes());
    b.extend_from_slice(&(table as u64).to_le_bytes());
    for &e in ends {
        b.extend_from_slice(&(table as u64 + e).to_le_bytes());
    }
    b.extend_from_slice(records);
    b
}

/// The bytes of `vectors.bin`: magic, version, dim, count, then `count ×
/// dim` 8-bit values.
fn vectors_image(dim: usize, count: usize, vectors_q: &[i8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(VECTORS_HEADER + vectors_q.len());
    v.extend_from_slice(VECTORS_MAGIC);
    v.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    v.extend_from_slice(&(dim as u32).to_le_bytes());
    v.extend_from_slice(&(count as u32).to_le_bytes());
    v.extend_from_slice(bytemuck::cast_slice(vectors_q));
    v
}

/// Reads a little-endian `u64` at `o` (`None` past the end).
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Checks the header and offset table of an `items.bin` image of `count`
/// items (one pass over the table; the records are decoded when used).
fn check_items(b: &[u8], params_hash: u64, count: usize) -> std::result::Result<(), &'static str> {
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
    };
    if b.len() < ITEMS_HEADER
        || &b[..8] != ITEMS_MAGIC
        || u32_at(8) != Some(INDEX_VERSION)
        || b[12..20] != params_hash.to_le_bytes()
    {
        return Err("items.bin header");
    }
    if u32_at(20).map(|c| c as usize) != Some(count) {
        return Err("items.bin item count");
    }
    let table = ITEMS_HEADER as u64 + 8 * (count as u64 + 1);
    let mut prev = table;
    if u64_at(b, ITEMS_HEADER) != Some(table) {
        return Err("items.bin offset table");
    }
    for i in 1..=count {
        match u64_at(b, ITEMS_HEADER + 8 * i) {
            Some(o) if o >= prev => prev = o,
            _ => return Err("items.bin offset table"),
        }
    }
    if prev != b.len() as u64 {
        return Err("items.bin has bytes after the last record");
    }
    Ok(())
}

impl Index {
    /// The candidate search over the indexed windows.
    pub fn search(&self) -> &dyn CandidateSearch {
        match &self.engine {
            Engine::Exact(e) => e,
            Engine::Hnsw(h) => h,
            Engine::External(x) => x.as_ref(),
        }
    }

    /// Serves candidates from another engine (for example an external
    /// vector database) holding the same windows with the same ids: fill it
    /// from [`Index::window_vectors`], and check it with
    /// [`crate::search::conformance::run`]. A window id it returns that the
    /// index does not hold makes the audit fail with
    /// [`ErrorKind::InvalidInput`].
    ///
    /// The built-in engine is dropped. [`Index::save`] still writes an index
    /// that opens on its own: at 2,000 windows or more it rebuilds the HNSW
    /// graph from the stored window vectors for the file.
    pub fn with_search(mut self, search: Box<dyn CandidateSearch>) -> Self {
        self.engine = Engine::External(search);
        self
    }

    /// The window vectors exactly as the built-in engines search them
    /// (8-bit stored values, scaled back to unit length), flat: window `id`
    /// is `[id * dim..(id + 1) * dim]` with `dim =
    /// manifest.embedding_dim`, ids `0..window_item.len()` in
    /// [`Index::window_item`] order. What an external engine must hold.
    pub fn window_vectors(&self) -> Vec<f32> {
        renormalize(
            self.vectors_q().iter().map(|&q| q as f32 / 127.0).collect(),
            self.manifest.embedding_dim,
        )
    }

    /// The stored 8-bit window embeddings (each value × 127), flat, in
    /// window order (`window_item.len() × manifest.embedding_dim`).
    pub fn vectors_q(&self) -> &[i8] {
        bytemuck::cast_slice(self.vectors.get(VECTORS_HEADER..).unwrap_or(&[]))
    }

    /// The encoded record of item `id` in `items.bin` (checked at open to
    /// lie inside the file; `None` for an id out of range).
    fn record(&self, id: usize) -> Option<&[u8]> {
        let b = &self.items[..];
        let from = u64_at(b, ITEMS_HEADER + 8 * id)? as usize;
        let to = u64_at(b, ITEMS_HEADER + 8 * (id + 1))? as usize;
        if id >= self.len() {
            return None;
        }
        b.get(from..to)
    }

    /// The error for a record that does not decode, or an id out of range.
    fn record_err(&self, id: usize) -> Error {
        let kind = if id >= self.len() {
            ErrorKind::InvalidInput(format!(
                "item {id} is not in the index ({} items)",
                self.len()
            ))
        } else {
            ErrorKind::Corrupt(format!(
                "items.bin record {id} does not decode; the index is damaged: rebuild it \
                 with `refrain index`"
            ))
        };
        match &self.origin {
            Some(gen) => Error::at(&gen.join("items.bin"), Stage::ReadIndex, kind),
            None => Error::new(Stage::ReadIndex, kind),
        }
    }

    /// The sequences of item `id`, decoded from `items.bin` (a few tens of
    /// kilobytes for a 3-minute item: CENS, band energies, melody, peaks,
    /// events). Re-ranking decodes its candidates only.
    ///
    /// # Errors
    ///
    /// At [`Stage::ReadIndex`]: [`ErrorKind::InvalidInput`] for an id not
    /// below [`Index::len`], [`ErrorKind::Corrupt`] for a record that does
    /// not decode (naming `items.bin`).
    pub fn item(&self, id: usize) -> Result<Sequences> {
        self.record(id)
            .and_then(Sequences::decode)
            .map(|(s, _)| s)
            .ok_or_else(|| self.record_err(id))
    }

    /// The landmark peaks of item `id` alone (what [`Index::item`] gives as
    /// `peaks`, without decoding the rest).
    ///
    /// # Errors
    ///
    /// Those of [`Index::item`].
    pub fn item_peaks(&self, id: usize) -> Result<Vec<LandmarkPeak>> {
        self.record(id)
            .and_then(Sequences::decode_peaks_of)
            .ok_or_else(|| self.record_err(id))
    }

    /// The melodic events of item `id` alone (what [`Index::item`] gives as
    /// `events`).
    ///
    /// # Errors
    ///
    /// Those of [`Index::item`].
    pub fn item_events(&self, id: usize) -> Result<Vec<Event>> {
        self.record(id)
            .and_then(Sequences::decode_events_of)
            .ok_or_else(|| self.record_err(id))
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.manifest.items.len()
    }

    /// Whether the index holds no items.
    pub fn is_empty(&self) -> bool {
        self.manifest.items.is_empty()
    }

    /// Total audio indexed, in hours.
    pub fn hours(&self) -> f64 {
        self.manifest
            .items
            .iter()
            .map(|i| i.duration_s)
            .sum::<f64>()
            / 3600.0
    }

    /// Saves as a new generation of `dir` and switches `CURRENT` to it
    /// atomically; older generations are removed afterwards.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] at [`Stage::WriteIndex`], naming `dir`, when a
    /// file cannot be written; the live generation is then unchanged.
    ///
    /// After [`Index::with_search`], an index of 2,000 windows or more has
    /// its HNSW graph rebuilt from the stored vectors for the file (as long
    /// as building one takes).
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        let w = |e: std::io::Error| index_err(dir, Stage::WriteIndex, e.into());
        std::fs::create_dir_all(dir).map_err(w)?;
        let next = next_generation_name(dir);
        let gen = dir.join(&next);
        if gen.exists() {
            std::fs::remove_dir_all(&gen).map_err(w)?;
        }
        std::fs::create_dir_all(&gen).map_err(w)?;
        let mut files = std::collections::BTreeMap::new();
        // every file is written as stored, from the image the index holds
        // (built, or mapped from the generation it was opened from: a new
        // generation never overwrites the files of the live one)
        let ph = self.manifest.params.hash();
        let lm =
            self.landmarks
                .table()
                .file_parts(TableKind::Landmarks, ph, crate::landmarks::HASHES);
        let mel = self
            .melodic
            .table()
            .file_parts(TableKind::Melodic, ph, crate::ngrams::HASHES);
        let parts: [(&str, Vec<&[u8]>); 4] = [
            ("items.bin", vec![&self.items[..]]),
            ("vectors.bin", vec![&self.vectors[..]]),
            (LANDMARKS_FILE, lm.iter().map(|p| &p[..]).collect()),
            (MELODIC_FILE, mel.iter().map(|p| &p[..]).collect()),
        ];
        for (name, bytes) in parts {
            files.insert(
                name.to_string(),
                write_parts(&gen.join(name), &bytes).map_err(w)?,
            );
        }
        match &self.engine {
            Engine::Hnsw(h) => h.save(&gen, SEARCH_BASENAME)?,
            // an external engine serves this index in memory, but the saved
            // index must open without it: the graph `open` will read
            _ if self.window_item.len() >= EXACT_BELOW => {
                HnswSearch::build(&self.window_vectors(), self.manifest.embedding_dim)
                    .save(&gen, SEARCH_BASENAME)?
            }
            _ => {}
        }
        self.manifest.files = files;
        let json =
            serde_json::to_vec_pretty(&self.manifest).map_err(|e| w(std::io::Error::other(e)))?;
        write_atomic(&gen.join("manifest.json"), &json).map_err(w)?;
        sync_dir(&gen);
        // the switch: one rename
        write_atomic(
            &dir.join("CURRENT"),
            current_record(&next, &json).as_bytes(),
        )
        .map_err(w)?;
        sync_dir(dir);
        // clean up: older generations and orphans of interrupted builds
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("gen-") && name != next {
                    let _ = std::fs::remove_dir_all(e.path());
                } else if name.starts_with(".CURRENT.tmp") {
                    // left by a build killed while switching
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    /// Opens the live generation of the index in `dir`, refusing another
    /// format version, other analysis parameters, or damaged files.
    ///
    /// # Errors
    ///
    /// At [`Stage::ReadIndex`], naming the directory (or the damaged file):
    /// [`ErrorKind::NotFound`] when `dir` holds no index (or does not exist),
    /// [`ErrorKind::Version`] and [`ErrorKind::Params`] for an index made by
    /// another version, [`ErrorKind::Corrupt`] when any checksum or
    /// structure does not match (the message says to rebuild),
    /// [`ErrorKind::Io`] when a file cannot be read.
    pub fn open(dir: &Path) -> Result<Index> {
        Self::open_live(dir).map_err(|mut e| {
            if let ErrorKind::Corrupt(m) = &mut e.kind {
                if !m.contains("refrain index") {
                    m.push_str("; the index is damaged: rebuild it with `refrain index`");
                }
            }
            e
        })
    }

    fn open_live(dir: &Path) -> Result<Index> {
        let params = AnalysisParams::default();
        let r = |k: ErrorKind| index_err(dir, Stage::ReadIndex, k);
        let current = match std::fs::read(dir.join("CURRENT")) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let what = if dir.is_dir() {
                    "no index in this directory (no CURRENT file)"
                } else {
                    "no such directory"
                };
                return Err(r(ErrorKind::NotFound(format!(
                    "{what}: build an index with `refrain index`"
                ))));
            }
            Err(e) => return Err(r(e.into())),
        };
        let (gen_name, manifest_sum) = parse_current(&current).map_err(|m| {
            r(ErrorKind::Corrupt(format!(
                "CURRENT is damaged ({m}); rebuild the index with `refrain index`"
            )))
        })?;
        let gen = dir.join(&gen_name);
        let read = |name: &str| {
            std::fs::read(gen.join(name)).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => r(ErrorKind::Corrupt(format!(
                    "{gen_name}/{name}, named by CURRENT, is missing"
                ))),
                _ => index_err(&gen.join(name), Stage::ReadIndex, e.into()),
            })
        };
        let mbytes = read("manifest.json")?;
        let manifest_ok = manifest_sum
            .as_ref()
            .is_some_and(|s| s.bytes == mbytes.len() as u64 && s.crc32 == crc32fast::hash(&mbytes));
        let damaged = || {
            r(ErrorKind::Corrupt(
                "manifest.json does not match its checksum in CURRENT (damaged or truncated); \
                 rebuild the index with `refrain index`"
                    .into(),
            ))
        };
        // the format, version and parameter hash are read first, so that an
        // index written by another version is named as such even when the
        // rest of its manifest (its parameters) no longer parses, and even
        // when the checksum (which older versions did not write) does not
        // match
        #[derive(Deserialize)]
        struct Head {
            format: String,
            format_version: u32,
            params_hash: String,
        }
        let head: Head = match serde_json::from_slice(&mbytes) {
            Ok(h) => h,
            Err(_) if !manifest_ok => return Err(damaged()),
            Err(e) => return Err(r(ErrorKind::Corrupt(format!("manifest.json: {e}")))),
        };
        if head.format != "refrain-index" {
            return Err(r(ErrorKind::Corrupt("not a refrain index".into())));
        }
        if head.format_version != INDEX_VERSION {
            return Err(r(ErrorKind::Version {
                found: head.format_version,
                expected: INDEX_VERSION,
            }));
        }
        let found = u64::from_str_radix(&head.params_hash, 16).unwrap_or(0);
        let other_params = || {
            r(ErrorKind::Params {
                found,
                expected: params.hash(),
            })
        };
        if found != params.hash() {
            return Err(other_params());
        }
        let manifest: Manifest = match serde_json::from_slice(&mbytes) {
            Ok(m) => m,
            Err(_) if !manifest_ok => return Err(damaged()),
            Err(e) => return Err(r(ErrorKind::Corrupt(format!("manifest.json: {e}")))),
        };
        if manifest.params != params {
            return Err(other_params());
        }
        if !manifest_ok {
            return Err(damaged());
        }
        if manifest.embedding_dim != crate::embed::dim() || manifest.window_stride != WINDOW_STRIDE
        {
            return Err(r(ErrorKind::Corrupt(
                "embedding layout differs from this build".into(),
            )));
        }
        // each stored file: its size and CRC-32 against the manifest's in
        // one streaming pass (through the page cache, not this process's
        // memory), then mapped
        let map_checked = |name: &str| -> Result<Bytes> {
            let sum = manifest
                .files
                .get(name)
                .ok_or_else(|| r(ErrorKind::Corrupt(format!("manifest lists no {name}"))))?;
            let path = gen.join(name);
            let io_err = |e: std::io::Error| match e.kind() {
                std::io::ErrorKind::NotFound => r(ErrorKind::Corrupt(format!(
                    "{gen_name}/{name}, named by CURRENT, is missing"
                ))),
                _ => index_err(&path, Stage::ReadIndex, e.into()),
            };
            let (bytes, crc) = crate::mapped::file_crc(&path).map_err(io_err)?;
            if bytes != sum.bytes || crc != sum.crc32 {
                return Err(r(ErrorKind::Corrupt(format!(
                    "{name} does not match its checksum (damaged or truncated)"
                ))));
            }
            let map = Bytes::map(&path).map_err(io_err)?;
            if map.len() as u64 != sum.bytes {
                return Err(r(ErrorKind::Corrupt(format!(
                    "{name} changed while the index was opened"
                ))));
            }
            Ok(map)
        };
        let items = map_checked("items.bin")?;
        check_items(&items, params.hash(), manifest.items.len())
            .map_err(|m| r(ErrorKind::Corrupt(m.into())))?;
        let vb = map_checked("vectors.bin")?;
        let dim = manifest.embedding_dim;
        let n: usize = manifest.items.iter().map(|i| i.windows as usize).sum();
        let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4"));
        let want = n
            .checked_mul(dim)
            .and_then(|x| x.checked_add(VECTORS_HEADER));
        if Some(vb.len()) != want
            || &vb[..8] != VECTORS_MAGIC
            || u32_at(&vb, 8) != INDEX_VERSION
            || u32_at(&vb, 12) as usize != dim
            || u32_at(&vb, 16) as usize != n
        {
            return Err(r(ErrorKind::Corrupt(
                "vectors.bin does not hold the windows the manifest lists".into(),
            )));
        }
        let table = |name: &str, kind: TableKind, hashes: usize| -> Result<PostingTable> {
            PostingTable::from_file(map_checked(name)?, kind, params.hash(), hashes)
                .map_err(|m| r(ErrorKind::Corrupt(format!("{name}: {m}"))))
        };
        let landmarks = LandmarkIndex::from_table(table(
            LANDMARKS_FILE,
            TableKind::Landmarks,
            crate::landmarks::HASHES,
        )?);
        let melodic = MelodicIndex::from_table(table(
            MELODIC_FILE,
            TableKind::Melodic,
            crate::ngrams::HASHES,
        )?);
        let mut window_item = Vec::with_capacity(n);
        let mut window_start_s = Vec::with_capacity(n);
        for (id, item) in manifest.items.iter().enumerate() {
            for w in 0..item.windows {
                window_item.push(id as u32);
                window_start_s.push((w as f64 * manifest.window_hop_s) as f32);
            }
        }
        let vectors_q: &[i8] = bytemuck::cast_slice(&vb[VECTORS_HEADER..]);
        let engine = if n < EXACT_BELOW {
            let v: Vec<f32> = vectors_q.iter().map(|&q| q as f32 / 127.0).collect();
            Engine::Exact(ExactSearch::new(renormalize(v, dim), dim))
        } else {
            let path = HnswSearch::file_path(&gen, SEARCH_BASENAME);
            let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
            let b = read(file)?;
            Engine::Hnsw(
                HnswSearch::from_bytes(&b, dim, n)
                    .map_err(|k| index_err(&path, Stage::ReadIndex, k))?,
            )
        };
        Ok(Index {
            landmarks,
            melodic,
            manifest,
            items,
            vectors: vb,
            origin: Some(gen),
            window_item,
            window_start_s,
            engine,
        })
    }

    /// The items' landmark pairs, grouped by hash.
    pub fn landmarks(&self) -> &LandmarkIndex {
        &self.landmarks
    }

    /// The items' melodic n-grams, grouped by hash.
    pub fn melodic(&self) -> &MelodicIndex {
        &self.melodic
    }

    /// The analysis parameters the index was built with.
    pub fn params(&self) -> &AnalysisParams {
        &self.manifest.params
    }

    /// Replaces the thresholds (kept by the next [`Index::save`]).
    pub fn set_thresholds(&mut self, t: Thresholds) {
        self.manifest.thresholds = t;
    }

    /// Size on disk of the live generation, in bytes.
    pub fn disk_bytes(dir: &Path) -> u64 {
        let Some(g) = current_generation(dir) else {
            return 0;
        };
        std::fs::read_dir(dir.join(g.trim()))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Decodes items' peaks and events on demand for the search closures
/// ([`LandmarkMatches::resolve_background`](crate::landmarks::LandmarkMatches::resolve_background),
/// [`MelodicIndex::search`]), which take plain lists: a record that does not
/// decode gives an empty list there and its error here, from
/// [`Lookups::finish`], so that no failure passes silently.
pub(crate) struct Lookups<'a> {
    index: &'a Index,
    err: std::cell::RefCell<Option<Error>>,
}

impl<'a> Lookups<'a> {
    pub(crate) fn new(index: &'a Index) -> Self {
        Lookups {
            index,
            err: Default::default(),
        }
    }

    fn keep<T: Clone>(&self, r: Result<Vec<T>>) -> std::borrow::Cow<'static, [T]> {
        match r {
            Ok(v) => v.into(),
            Err(e) => {
                self.err.borrow_mut().get_or_insert(e);
                Vec::new().into()
            }
        }
    }

    /// Item `i`'s landmark peaks.
    pub(crate) fn peaks(&self, i: u32) -> std::borrow::Cow<'static, [LandmarkPeak]> {
        self.keep(self.index.item_peaks(i as usize))
    }

    /// Item `i`'s melodic events.
    pub(crate) fn events(&self, i: u32) -> std::borrow::Cow<'static, [Event]> {
        self.keep(self.index.item_events(i as usize))
    }

    /// The first failure, if any.
    pub(crate) fn finish(self) -> Result<()> {
        match self.err.into_inner() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Scales every row of a flat buffer back to unit length.
fn renormalize(mut v: Vec<f32>, dim: usize) -> Vec<f32> {
    for row in v.chunks_exact_mut(dim) {
        crate::embed::normalize(row);
    }
    v
}

/// Name of the live generation, if any.
pub fn current_generation(dir: &Path) -> Option<String> {
    let b = std::fs::read(dir.join("CURRENT")).ok()?;
    parse_current(&b).ok().map(|(name, _)| name)
}

/// The contents of `CURRENT`: the generation's name, then the size and
/// CRC-32 (hex) of its manifest.
fn current_record(gen: &str, manifest: &[u8]) -> String {
    format!(
        "{gen}\nmanifest.json {} {:08x}\n",
        manifest.len(),
        crc32fast::hash(manifest)
    )
}

/// Parses `CURRENT`: the generation name and, unless the file was written
/// before version 2, the manifest's checksum.
fn parse_current(b: &[u8]) -> std::result::Result<(String, Option<FileSum>), String> {
    let s = std::str::from_utf8(b).map_err(|_| "not text".to_string())?;
    let mut lines = s.lines();
    let name = lines.next().unwrap_or("").trim();
    let valid_name = name
        .strip_prefix("gen-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
    if !valid_name {
        return Err(format!("{name:?} is not a generation name"));
    }
    let sum = match lines.next() {
        None => None,
        Some(line) => {
            let f: Vec<&str> = line.split(' ').collect();
            let parsed = match f.as_slice() {
                // exactly as written (digits, 8 lower-case hex digits), so
                // that no altered byte reads as the same number
                ["manifest.json", bytes, crc]
                    if crc.len() == 8
                        && crc.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
                        && !bytes.is_empty()
                        && bytes.bytes().all(|c| c.is_ascii_digit()) =>
                {
                    bytes
                        .parse::<u64>()
                        .ok()
                        .zip(u32::from_str_radix(crc, 16).ok())
                }
                _ => None,
            };
            let (bytes, crc32) = parsed.ok_or_else(|| format!("bad checksum line {line:?}"))?;
            Some(FileSum { bytes, crc32 })
        }
    };
    if lines.next().is_some() || !s.ends_with('\n') {
        return Err("unexpected contents".into());
    }
    Ok((name.to_string(), sum))
}

fn next_generation_name(dir: &Path) -> String {
    let mut max = 0u64;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name
                .strip_prefix("gen-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                max = max.max(n);
            }
        }
    }
    format!("gen-{:06}", max + 1)
}

/// Writes `parts` one after the other as the file `path` (under a temporary
/// name, synced, then renamed into place) and returns its size and CRC-32.
fn write_parts(path: &Path, parts: &[&[u8]]) -> std::io::Result<FileSum> {
    use std::io::Write;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let mut crc = crc32fast::Hasher::new();
    let mut bytes = 0u64;
    let result = (|| {
        let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        for p in parts {
            crc.update(p);
            bytes += p.len() as u64;
            f.write_all(p)?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    Ok(FileSum {
        bytes,
        crc32: crc.finalize(),
    })
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Where `refrain index` keeps fingerprints of finished items while a build
/// runs (removed when the build is saved).
pub fn cache_dir(dir: &Path) -> PathBuf {
    dir.join("cache")
}

/// BLAKE3 of a file's bytes, hex.
///
/// # Errors
///
/// [`ErrorKind::Io`] at [`Stage::Open`], naming `path`.
pub fn content_hash(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| Error::at(path, Stage::Open, e.into()))?;
    if !meta.is_file() {
        return Err(crate::inputs::not_a_file(path));
    }
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::open(path).map_err(|e| Error::at(path, Stage::Open, e.into()))?;
    std::io::copy(&mut f, &mut h).map_err(|e| Error::at(path, Stage::Open, e.into()))?;
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Rng;

    /// An index of `items` random items with `windows` windows each.
    fn index(items: u64, windows: usize) -> Index {
        let mut b = IndexBuilder::new(&AnalysisParams::default());
        for i in 0..items {
            b.add(
                &format!("item{i}.wav"),
                &format!("hash{i}"),
                &crate::synth::random_fingerprint(i, windows),
            )
            .unwrap();
        }
        b.build()
    }

    fn open_err(dir: &Path) -> String {
        match Index::open(dir) {
            Ok(i) => panic!("a damaged index opened: {i:?}"),
            Err(e) => {
                assert_eq!(e.stage, Stage::ReadIndex);
                let msg = e.to_string();
                assert!(
                    msg.contains("rebuild")
                        || msg.contains("re-create")
                        || msg.contains("refrain index"),
                    "the message does not say what to do: {msg}"
                );
                msg
            }
        }
    }

    #[test]
    fn every_damaged_or_truncated_file_is_refused() {
        // 2 × 2100 windows: 2100 indexed, so the HNSW file is written too
        let mut idx = index(2, 2 * EXACT_BELOW.div_ceil(2) + 100);
        assert!(matches!(idx.engine, Engine::Hnsw(_)));
        let dir = tempfile::tempdir().unwrap();
        idx.save(dir.path()).unwrap();
        let gen = current_generation(dir.path()).unwrap();
        let files = [
            "CURRENT".to_string(),
            format!("{gen}/manifest.json"),
            format!("{gen}/items.bin"),
            format!("{gen}/vectors.bin"),
            format!("{gen}/{LANDMARKS_FILE}"),
            format!("{gen}/{MELODIC_FILE}"),
            format!("{gen}/search.hnsw"),
        ];
        let mut rng = Rng::new(6);
        let mut refused = 0;
        for name in &files {
            let path = dir.path().join(name);
            let good = std::fs::read(&path).unwrap();
            let len = good.len();
            // flips: the first and last bytes, and 40 random ones
            let mut at: Vec<usize> = vec![0, len - 1];
            at.extend((0..40).map(|_| rng.below(len)));
            for i in at {
                let mut bad = good.clone();
                bad[i] ^= 1 << rng.below(8);
                std::fs::write(&path, &bad).unwrap();
                if let Ok(x) = Index::open(dir.path()) {
                    panic!("{name} with byte {i} changed opened: {x:?}");
                }
                open_err(dir.path());
                refused += 1;
            }
            for cut in [0, 1, len / 2, len - 1] {
                std::fs::write(&path, &good[..cut]).unwrap();
                open_err(dir.path());
                refused += 1;
            }
            // grown by a byte
            let mut longer = good.clone();
            longer.push(b'\n');
            std::fs::write(&path, &longer).unwrap();
            open_err(dir.path());
            std::fs::remove_file(&path).unwrap();
            open_err(dir.path());
            std::fs::write(&path, &good).unwrap();
            refused += 2;
        }
        assert_eq!(refused, files.len() * (42 + 4 + 2));
        // restored, it opens and answers as before
        let back = Index::open(dir.path()).unwrap();
        assert_eq!(back.manifest, idx.manifest);
        assert_eq!(back.vectors_q(), idx.vectors_q());
        let dim = crate::embed::dim();
        let q: Vec<f32> = idx.vectors_q()[17 * dim..18 * dim]
            .iter()
            .map(|&x| f32::from(x) / 127.0)
            .collect();
        assert_eq!(back.search().search(&q, 10), idx.search().search(&q, 10));
    }

    #[test]
    fn damaged_messages_name_the_file() {
        let mut idx = index(2, 40);
        let dir = tempfile::tempdir().unwrap();
        idx.save(dir.path()).unwrap();
        let gen = current_generation(dir.path()).unwrap();
        let items = dir.path().join(&gen).join("items.bin");
        let mut b = std::fs::read(&items).unwrap();
        b[30] ^= 0x10;
        std::fs::write(&items, &b).unwrap();
        let e = open_err(dir.path());
        assert!(e.contains("items.bin does not match its checksum"), "{e}");
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        std::fs::remove_dir_all(dir.path().join(&gen)).unwrap();
        let e = open_err(dir.path());
        assert!(
            e.contains("manifest.json, named by CURRENT, is missing"),
            "{e}"
        );
        std::fs::write(dir.path().join("CURRENT"), "gen-00x\n").unwrap();
        let e = open_err(dir.path());
        assert!(e.contains("CURRENT is damaged"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = Index::open(empty.path()).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::NotFound(_)), "{e}");
        assert!(e.to_string().contains("no index in this directory"), "{e}");
        let e = Index::open(&empty.path().join("none")).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::NotFound(_)), "{e}");
        assert!(e.to_string().contains("no such directory"), "{e}");
    }

    #[test]
    fn a_format_4_index_is_refused_with_the_version_error() {
        // written by the last build of format 4 (tests/data/index-v4/README.md)
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/index-v4");
        let e = Index::open(&dir).unwrap_err();
        assert!(
            matches!(
                e.kind,
                ErrorKind::Version {
                    found: 4,
                    expected: 5
                }
            ),
            "{e}"
        );
        let msg = open_err(&dir);
        assert!(msg.contains('4') && msg.contains('5'), "{msg}");
    }

    #[test]
    fn a_flipped_byte_in_a_stored_table_or_item_file_is_refused_as_damaged() {
        let mut idx = index(3, 60);
        let dir = tempfile::tempdir().unwrap();
        idx.save(dir.path()).unwrap();
        let gen = current_generation(dir.path()).unwrap();
        for name in ["items.bin", "vectors.bin", LANDMARKS_FILE, MELODIC_FILE] {
            let path = dir.path().join(&gen).join(name);
            let good = std::fs::read(&path).unwrap();
            for at in [0, 9, good.len() / 2, good.len() - 1] {
                let mut bad = good.clone();
                bad[at] ^= 0x40;
                std::fs::write(&path, &bad).unwrap();
                let e = open_err(dir.path());
                assert!(
                    e.contains(&format!("{name} does not match its checksum")),
                    "{e}"
                );
            }
            std::fs::write(&path, &good).unwrap();
        }
        // restored, the mapped index answers as the built one
        let back = Index::open(dir.path()).unwrap();
        for id in 0..3 {
            assert_eq!(back.item(id).unwrap(), idx.item(id).unwrap());
            assert_eq!(back.item_peaks(id).unwrap(), idx.item(id).unwrap().peaks);
            assert_eq!(back.item_events(id).unwrap(), idx.item(id).unwrap().events);
        }
        assert!(back.item(3).is_err());
        assert_eq!(back.landmarks().len(), idx.landmarks().len());
        assert_eq!(back.melodic().len(), idx.melodic().len());
        for h in (0..crate::landmarks::HASHES as u32).step_by(997) {
            assert_eq!(back.landmarks().list_len(h), idx.landmarks().list_len(h));
        }
        // and --add from it keeps every record
        let mut b = IndexBuilder::from_index(&back).unwrap();
        b.add(
            "more.wav",
            "hash-more",
            &crate::synth::random_fingerprint(99, 60),
        )
        .unwrap();
        let grown = b.build();
        assert_eq!(grown.len(), 4);
        assert_eq!(grown.item(1).unwrap(), idx.item(1).unwrap());
        assert!(grown.landmarks().len() > idx.landmarks().len());
    }

    #[test]
    fn an_index_of_the_previous_version_is_named_as_such() {
        let mut idx = index(1, 40);
        let dir = tempfile::tempdir().unwrap();
        idx.save(dir.path()).unwrap();
        let gen = current_generation(dir.path()).unwrap();
        // version 1 wrote the generation name alone into CURRENT
        std::fs::write(dir.path().join("CURRENT"), format!("{gen}\n")).unwrap();
        let m = dir.path().join(&gen).join("manifest.json");
        let json = std::fs::read_to_string(&m).unwrap().replace(
            &format!("\"format_version\": {INDEX_VERSION}"),
            "\"format_version\": 1",
        );
        std::fs::write(&m, json).unwrap();
        let e = open_err(dir.path());
        assert!(e.contains("format version 1 is not supported"), "{e}");
        // version 2's parameters lack the landmark settings: the manifest
        // no longer parses as a whole, and is still named by its version
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
        v["format_version"] = 2.into();
        let params = v["params"].as_object_mut().unwrap();
        params.remove("landmark_index");
        params.remove("landmark_query");
        std::fs::write(&m, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        let e = open_err(dir.path());
        assert!(e.contains("format version 2 is not supported"), "{e}");
    }
}

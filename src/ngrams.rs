//! Melodic n-grams: key- and tempo-invariant hashes of note sequences, and
//! the inverted index that finds the training items a melody re-plays.
//!
//! A re-played tune keeps its sequence of pitch changes, whatever its key,
//! tempo or instrument. The stage works on *events*: the melody's notes
//! ([`crate::notes`]) without drones, with consecutive notes of one pitch
//! merged (a repeated note is re-attacked in one rendition and held in
//! another, and a split note becomes two: neither changes the events).
//!
//! **Tokens.** The interval from one event to the next in semitones, modulo
//! the octave (`0..12`): transposition cancels, and so do the octave errors
//! of a pitch tracker. Tempo does not enter at all: n-grams count events,
//! not seconds, so a query at ×0.7 or ×1.4 the tempo gives the same hashes.
//!
//! **Hashes** ([`grams`]). An n-gram is [`N`] consecutive intervals (N + 1
//! events). Each position also gives N *deletion variants*: the n-gram of
//! the N + 2 events from there with one inner event left out. One changed
//! note (a variation, a transcription error) leaves the variant without it
//! intact in both sequences; one extra note in the query (a split note, an
//! ornament) leaves the query's variant without it equal to the item's
//! plain n-gram; one missing note, the reverse. Index and query store and
//! look up all N + 1 (Downie 1999 and the query-by-humming literature use
//! n-grams of intervals; the variants are this module's answer to the
//! errors a transcription makes).
//!
//! **Votes** ([`MelodicIndex::search`]). Each hit votes for (item, offset
//! in events). An item's count is the number of distinct query positions
//! that hit it within one offset window of [`OFFSET_WINDOW`] events (a few
//! inserted or dropped notes shift the offset); the hits in that window
//! also vote for the transposition.

use crate::notes::Note;
use crate::postings::PostingTable;

/// Intervals per n-gram. Five intervals of a folk tune carry about 12 bits
/// (steps dominate): long enough that a chance hit is rare in an index of
/// thousands of tunes, short enough that a 5 s excerpt holds a few.
pub const N: usize = 5;
/// Distinct hash values: `12^N`.
pub const HASHES: usize = 248_832;
/// Two consecutive notes within this many cents are one event.
pub const MERGE_CENTS: f32 = 50.0;
/// Width of the offset window (events) over which an item's hits count.
pub const OFFSET_WINDOW: i64 = 8;
/// Hashes with more stored postings than this are not looked up: common
/// scale runs say little about any one item.
pub const MAX_LIST: usize = 400;

/// A melodic event: a note, or a run of notes at one pitch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// Onset of the first note, seconds.
    pub onset_s: f32,
    /// Pitch, MIDI cents.
    pub cents: f32,
}

/// The events of a note sequence (see the module docs): drones left out,
/// consecutive notes within [`MERGE_CENTS`] merged.
pub fn events(notes: &[Note]) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::with_capacity(notes.len());
    for n in notes.iter().filter(|n| !n.is_drone()) {
        match out.last() {
            Some(last) if (last.cents - n.cents).abs() < MERGE_CENTS => {}
            _ => out.push(Event {
                onset_s: n.onset_s,
                cents: n.cents,
            }),
        }
    }
    out
}

/// An n-gram hash at an event position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gram {
    /// Position of the n-gram's first event.
    pub pos: u32,
    /// The hash, below [`HASHES`].
    pub hash: u32,
}

/// The interval from `a` to `b` in semitones modulo 12.
#[inline]
pub fn interval(a: f32, b: f32) -> u32 {
    ((b - a) / 100.0).round().rem_euclid(12.0) as u32 % 12
}

/// Appends the plain n-gram and its deletion variants at every position of
/// `events` to `out`, each distinct hash once per position.
pub fn grams(events: &[Event], out: &mut Vec<Gram>) {
    let n = events.len();
    let mut seen = [0u32; N + 1];
    for k in 0..n {
        let mut kept = 0;
        let mut push = |hash: u32| {
            if !seen[..kept].contains(&hash) {
                seen[kept] = hash;
                kept += 1;
                out.push(Gram {
                    pos: k as u32,
                    hash,
                });
            }
        };
        if k + N < n {
            push(hash_of((k..=k + N).map(|i| events[i].cents)));
        }
        if k + N + 1 < n {
            for skip in k + 1..=k + N {
                push(hash_of(
                    (k..=k + N + 1)
                        .filter(|&i| i != skip)
                        .map(|i| events[i].cents),
                ));
            }
        }
    }
}

/// The hash of the intervals between N + 1 pitches.
fn hash_of(mut pitches: impl Iterator<Item = f32>) -> u32 {
    let mut prev = pitches.next().expect("N + 1 pitches");
    let mut h = 0u32;
    for p in pitches {
        h = h * 12 + interval(prev, p);
        prev = p;
    }
    h
}

/// The n-grams of every training item, grouped by hash: 8 bytes per
/// posting and a table of [`HASHES`] + 1 offsets (2 MB).
#[derive(Debug, Clone, Default)]
pub struct MelodicIndex {
    /// Each n-gram's item and position, by hash.
    table: PostingTable,
}

/// An item's best offset window.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MelodicMatch {
    /// Item id.
    pub item: u32,
    /// Distinct query positions that hit the item within the window.
    pub count: u32,
    /// Item event position minus query event position at the window's start.
    pub offset_events: i64,
    /// First and last query event position of those hits.
    pub query_events: (u32, u32),
    /// Query pitch minus item pitch, semitones modulo 12, by majority of
    /// the window's hits.
    pub transpose: u32,
}

/// Reused buffers of [`MelodicIndex::search`].
#[derive(Debug, Default)]
pub struct MelodicScratch {
    grams: Vec<Gram>,
    /// (item << 32 | biased offset, query position, item position)
    hits: Vec<(u64, u32, u32)>,
}

const BIAS: i64 = 1 << 31;

impl MelodicIndex {
    /// Builds the table from each item's events (item id = position; the
    /// iterator is walked twice).
    pub fn build<I>(items: I) -> Self
    where
        I: IntoIterator + Clone,
        I::Item: AsRef<[Event]>,
    {
        let mut g = Vec::new();
        let table = PostingTable::build(HASHES, items, |ev, keys| {
            g.clear();
            grams(ev.as_ref(), &mut g);
            keys.extend(g.iter().map(|x| (x.hash, x.pos)));
        });
        MelodicIndex { table }
    }

    /// The index over a stored table (see [`PostingTable::from_file`]).
    pub fn from_table(table: PostingTable) -> Self {
        MelodicIndex { table }
    }

    /// The posting table (for storing it).
    pub fn table(&self) -> &PostingTable {
        &self.table
    }

    /// Number of stored n-grams.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The items the query's n-grams hit, best first (by count, then item
    /// id), leaving out `exclude`. `events_of(item)` gives an item's
    /// events (for the transposition vote).
    pub fn search<'a>(
        &self,
        query: &[Event],
        exclude: Option<usize>,
        events_of: impl Fn(u32) -> std::borrow::Cow<'a, [Event]>,
        scratch: &mut MelodicScratch,
    ) -> Vec<MelodicMatch> {
        self.search_with(query, exclude, events_of, scratch, |_, n| n <= MAX_LIST)
    }

    /// Stored n-grams with hash `hash` (0 for a hash out of range or an
    /// empty table).
    pub fn list_len(&self, hash: u32) -> usize {
        self.table.list_len(hash)
    }

    /// [`MelodicIndex::search`] looking up the query n-grams (positions in
    /// what [`grams`] gives for `query`) for which `keep(position, stored
    /// list length)` holds. A sharded index keeps those whose list lengths
    /// summed over its shards are at most [`MAX_LIST`], as one index
    /// holding all items would.
    pub fn search_with<'a>(
        &self,
        query: &[Event],
        exclude: Option<usize>,
        events_of: impl Fn(u32) -> std::borrow::Cow<'a, [Event]>,
        scratch: &mut MelodicScratch,
        keep: impl Fn(usize, usize) -> bool,
    ) -> Vec<MelodicMatch> {
        let MelodicScratch { grams: g, hits } = scratch;
        g.clear();
        hits.clear();
        if self.table.is_empty() {
            return Vec::new();
        }
        grams(query, g);
        for (gi, x) in g.iter().enumerate() {
            let list = self.table.list(x.hash);
            if !keep(gi, list.len()) {
                continue;
            }
            for p in list {
                if Some(p.item as usize) == exclude {
                    continue;
                }
                let offset = (p.pos as i64 - x.pos as i64 + BIAS) as u64;
                hits.push((((p.item as u64) << 32) | offset, x.pos, p.pos));
            }
        }
        hits.sort_unstable();
        hits.dedup_by_key(|h| (h.0, h.1));
        // per item, the window of OFFSET_WINDOW offsets with the most
        // distinct query positions
        let mut out: Vec<MelodicMatch> = Vec::new();
        let mut positions: Vec<u32> = Vec::new();
        let mut i = 0;
        while i < hits.len() {
            let item = (hits[i].0 >> 32) as u32;
            let mut end = i;
            while end < hits.len() && (hits[end].0 >> 32) as u32 == item {
                end += 1;
            }
            let run = &hits[i..end];
            let mut best: Option<(u32, usize, usize)> = None; // count, from, to
            let mut lo = 0;
            for hi in 0..run.len() {
                let off = |k: usize| (run[k].0 & 0xffff_ffff) as i64;
                while off(hi) - off(lo) >= OFFSET_WINDOW {
                    lo += 1;
                }
                positions.clear();
                positions.extend(run[lo..=hi].iter().map(|h| h.1));
                positions.sort_unstable();
                positions.dedup();
                let count = positions.len() as u32;
                if best.is_none_or(|b| count > b.0) {
                    best = Some((count, lo, hi + 1));
                }
            }
            if let Some((count, lo, hi)) = best {
                let w = &run[lo..hi];
                let q0 = w.iter().map(|h| h.1).min().unwrap_or(0);
                let q1 = w.iter().map(|h| h.1).max().unwrap_or(0);
                let item_events = events_of(item);
                let mut votes = [0u32; 12];
                for h in w {
                    if let (Some(a), Some(b)) =
                        (query.get(h.1 as usize), item_events.get(h.2 as usize))
                    {
                        votes[interval(b.cents, a.cents) as usize] += 1;
                    }
                }
                let transpose = (0..12u32)
                    .max_by_key(|&t| (votes[t as usize], std::cmp::Reverse(t)))
                    .unwrap_or(0);
                out.push(MelodicMatch {
                    item,
                    count,
                    offset_events: (w[0].0 & 0xffff_ffff) as i64 - BIAS,
                    query_events: (q0, q1),
                    transpose,
                });
            }
            i = end;
        }
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.item.cmp(&b.item)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(pitches: &[f32]) -> Vec<Event> {
        pitches
            .iter()
            .enumerate()
            .map(|(i, &c)| Event {
                onset_s: i as f32 * 0.25,
                cents: c,
            })
            .collect()
    }

    /// A pseudo-random tune of `n` notes in semitone steps (seeded).
    fn tune(seed: u64, n: usize) -> Vec<f32> {
        let mut x = seed;
        let mut p = 6000.0f32;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let step = [-5.0, -3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 4.0][(x % 8) as usize];
                p = (p + 100.0 * step).clamp(5500.0, 7500.0);
                p
            })
            .collect()
    }

    #[test]
    fn events_merge_repeats_and_drop_drones() {
        let notes = [
            (0.0, 0.2, 6000.0),
            (0.2, 0.2, 6010.0),
            (0.4, 5.0, 4000.0),
            (5.4, 0.2, 6200.0),
        ]
        .map(|(o, d, c)| Note {
            onset_s: o,
            duration_s: d,
            cents: c,
        });
        let e = events(&notes);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].onset_s, e[1].cents), (0.0, 6200.0));
    }

    #[test]
    fn intervals_ignore_key_and_octave() {
        assert_eq!(interval(6000.0, 6200.0), 2);
        assert_eq!(interval(6000.0, 5900.0), 11);
        assert_eq!(interval(6040.0, 7240.0), 0);
        let a = ev(&[6000.0, 6200.0, 6400.0, 6500.0, 6700.0, 6900.0]);
        let b = ev(&[6300.0, 6500.0, 6700.0, 6800.0, 7000.0, 7200.0]);
        let (mut ga, mut gb) = (Vec::new(), Vec::new());
        grams(&a, &mut ga);
        grams(&b, &mut gb);
        assert_eq!(ga, gb);
        assert_eq!(ga.len(), 1);
    }

    #[test]
    fn one_changed_inserted_or_dropped_note_keeps_a_shared_hash() {
        let base = tune(7, 7);
        let hashes = |p: &[f32]| {
            let mut g = Vec::new();
            grams(&ev(p), &mut g);
            g.into_iter()
                .filter(|g| g.pos == 0)
                .map(|g| g.hash)
                .collect::<Vec<_>>()
        };
        let orig = hashes(&base);
        let mut changed = base.clone();
        changed[3] += 100.0;
        let mut inserted = base.clone();
        inserted.insert(2, base[2] + 300.0);
        let mut dropped = base.clone();
        dropped.remove(3);
        dropped.push(base[6] + 200.0);
        for (what, v) in [
            ("changed", changed),
            ("inserted", inserted),
            ("dropped", dropped),
        ] {
            let h = hashes(&v);
            assert!(h.iter().any(|x| orig.contains(x)), "{what}");
        }
    }

    #[test]
    fn a_transposed_excerpt_with_errors_finds_its_item_and_key() {
        let items: Vec<Vec<Event>> = (1..=30).map(|s| ev(&tune(s, 200))).collect();
        let index = MelodicIndex::build(items.iter().map(|e| e.as_slice()));
        assert!(!index.is_empty());
        // 40 notes of item 12 from note 80, +3 semitones, every 9th note
        // moved by a tone and every 13th left out
        let mut q: Vec<f32> = Vec::new();
        for (k, e) in items[12][80..120].iter().enumerate() {
            if k % 13 == 5 {
                continue;
            }
            let moved = if k % 9 == 4 { 200.0 } else { 0.0 };
            q.push(e.cents + 300.0 + moved);
        }
        let q = ev(&q);
        let mut scratch = MelodicScratch::default();
        let m = index.search(
            &q,
            None,
            |i| items[i as usize].as_slice().into(),
            &mut scratch,
        );
        assert_eq!(m[0].item, 12, "{:?}", &m[..3.min(m.len())]);
        assert_eq!(m[0].transpose, 3);
        assert!(
            (m[0].offset_events - 80).abs() <= OFFSET_WINDOW,
            "{:?}",
            m[0]
        );
        assert!(m[0].count >= 3 * m.get(1).map_or(1, |x| x.count), "{m:?}");
        // leaving it out finds nothing as strong
        let m = index.search(
            &q,
            Some(12),
            |i| items[i as usize].as_slice().into(),
            &mut scratch,
        );
        assert!(m.iter().all(|x| x.item != 12));
    }
}

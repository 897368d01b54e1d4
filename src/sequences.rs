//! The compact per-track sequences that re-ranking aligns: CENS chroma,
//! band energies and the melody, quantised. Training items keep them in the
//! index; a query computes the same from its fingerprint, so both sides go
//! through the same quantisation.

use crate::fingerprint::Fingerprint;
use crate::landmarks::LandmarkPeak;
use crate::ngrams::Event;
use crate::params::AnalysisParams;

/// Marks an unvoiced melody frame.
pub const UNVOICED: i16 = i16::MIN;

/// Melody frames per second in [`Sequences::melody`].
pub const MELODY_RATE: f64 = 10.0;

/// CENS frames quantised as stored: each value × 255, rounded.
pub fn quantize_cens(cens: &ndarray::Array2<f32>) -> Vec<u8> {
    cens.iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}

/// Quantised sequences of one track.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sequences {
    /// CENS chroma, frames × 12, each value × 255, at the CENS rate.
    pub cens: Vec<u8>,
    /// Band energies, frames × `bands`, at the CENS rate, in half-dB steps
    /// above −120 dB (`(dB + 120) × 2`).
    pub bands: Vec<u8>,
    /// Number of bands per frame in `bands`.
    pub n_bands: usize,
    /// Predominant pitch in MIDI cents at [`MELODY_RATE`], or [`UNVOICED`].
    pub melody: Vec<i16>,
    /// Estimated tuning in cents.
    pub tuning_cents: f32,
    /// Sparse landmark peaks (the fingerprint's `landmarks_index`).
    pub peaks: Vec<LandmarkPeak>,
    /// Melodic events ([`crate::ngrams::events`] of the melody's notes):
    /// onsets rounded to milliseconds, pitches to cents.
    pub events: Vec<Event>,
}

/// The melodic events of a fingerprint, quantised as an index stores them
/// (onset in whole milliseconds, pitch in whole cents), so that a query and
/// an item go through the same rounding.
pub fn melodic_events(fp: &Fingerprint) -> Vec<Event> {
    let notes = crate::notes::segment(&fp.melody);
    crate::ngrams::events(&notes)
        .into_iter()
        .map(|e| Event {
            onset_s: (e.onset_s * 1000.0).round() / 1000.0,
            cents: e.cents.round().clamp(-32000.0, 32000.0),
        })
        .collect()
}

impl Sequences {
    /// Derives the sequences from a fingerprint made with `params`.
    pub fn from_fingerprint(fp: &Fingerprint, params: &AnalysisParams) -> Self {
        let cens = quantize_cens(&fp.cens);
        // bands: average chroma-rate frames down to the CENS rate
        let down = params.cens_down.max(1);
        let nb = fp.bands.ncols();
        let frames = fp.cens.nrows();
        let mut bands = vec![0u8; frames * nb];
        for f in 0..frames {
            let lo = f * down;
            let hi = (lo + down).min(fp.bands.nrows());
            if lo >= hi {
                continue;
            }
            for b in 0..nb {
                let mean: f32 = (lo..hi).map(|t| fp.bands[[t, b]]).sum::<f32>() / (hi - lo) as f32;
                bands[f * nb + b] = ((mean + 120.0) * 2.0).round().clamp(0.0, 255.0) as u8;
            }
        }
        // melody: median of the voiced frames of each 100 ms block, voiced
        // if at least half the block is
        let hop = fp.melody.hop_s.max(1e-6);
        let per = ((1.0 / MELODY_RATE) / hop).round().max(1.0) as usize;
        let n = fp.melody.cents.len();
        let mut melody = Vec::with_capacity(n / per + 1);
        let mut block: Vec<f32> = Vec::with_capacity(per);
        for start in (0..n).step_by(per) {
            block.clear();
            let end = (start + per).min(n);
            for i in start..end {
                if fp.melody.voiced[i] {
                    block.push(fp.melody.cents[i]);
                }
            }
            if block.len() * 2 >= end - start && !block.is_empty() {
                block.sort_by(f32::total_cmp);
                let m = block[block.len() / 2];
                melody.push(m.round().clamp(-32000.0, 32000.0) as i16);
            } else {
                melody.push(UNVOICED);
            }
        }
        Sequences {
            cens,
            bands,
            n_bands: nb,
            melody,
            tuning_cents: fp.tuning_cents,
            peaks: fp.landmarks_index.clone(),
            events: melodic_events(fp),
        }
    }

    /// Number of CENS (and band) frames.
    pub fn frames(&self) -> usize {
        self.cens.len() / 12
    }

    /// Serialised size in bytes.
    pub fn encoded_len(&self) -> usize {
        4 + 4
            + 4
            + 4
            + self.cens.len()
            + self.bands.len()
            + 2 * self.melody.len()
            + 4
            + 2 * peak_words(&self.peaks)
            + 4
            + 6 * self.events.len()
    }

    /// Appends the little-endian encoding (see `fingerprints/FORMAT.md`,
    /// index section).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.frames() as u32).to_le_bytes());
        out.extend_from_slice(&(self.n_bands as u32).to_le_bytes());
        out.extend_from_slice(&(self.melody.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.tuning_cents.to_le_bytes());
        out.extend_from_slice(&self.cens);
        out.extend_from_slice(&self.bands);
        for m in &self.melody {
            out.extend_from_slice(&m.to_le_bytes());
        }
        out.extend_from_slice(&(peak_words(&self.peaks) as u32).to_le_bytes());
        encode_peaks(&self.peaks, out);
        out.extend_from_slice(&(self.events.len() as u32).to_le_bytes());
        for e in &self.events {
            let ms = (e.onset_s * 1000.0).round().clamp(0.0, u32::MAX as f32) as u32;
            out.extend_from_slice(&ms.to_le_bytes());
            out.extend_from_slice(&(e.cents.round() as i16).to_le_bytes());
        }
    }

    /// Decodes one record from the front of `b`, returning it and the bytes
    /// consumed, or `None` if `b` is too short or inconsistent.
    pub fn decode(b: &[u8]) -> Option<(Self, usize)> {
        let l = Layout::of(b)?;
        let melody = b[l.melody.clone()]
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        Some((
            Sequences {
                cens: b[l.cens.clone()].to_vec(),
                bands: b[l.bands.clone()].to_vec(),
                n_bands: l.n_bands,
                melody,
                tuning_cents: l.tuning_cents,
                peaks: decode_peaks(&b[l.peaks.clone()])?,
                events: decode_events(&b[l.events.clone()])?,
            },
            l.total,
        ))
    }

    /// The landmark peaks alone of the record at the front of `b` (what
    /// [`Sequences::decode`] gives as `peaks`, without copying the rest),
    /// or `None` if the record is inconsistent.
    pub fn decode_peaks_of(b: &[u8]) -> Option<Vec<LandmarkPeak>> {
        decode_peaks(&b[Layout::of(b)?.peaks])
    }

    /// The melodic events alone of the record at the front of `b`, or
    /// `None` if the record is inconsistent.
    pub fn decode_events_of(b: &[u8]) -> Option<Vec<Event>> {
        decode_events(&b[Layout::of(b)?.events])
    }
}

/// Where each section of one encoded record lies (byte ranges in it), from
/// its length fields alone.
struct Layout {
    n_bands: usize,
    tuning_cents: f32,
    cens: std::ops::Range<usize>,
    bands: std::ops::Range<usize>,
    melody: std::ops::Range<usize>,
    peaks: std::ops::Range<usize>,
    events: std::ops::Range<usize>,
    total: usize,
}

impl Layout {
    /// The layout of the record at the front of `b`; `None` if its lengths
    /// do not fit in `b` or are out of range.
    fn of(b: &[u8]) -> Option<Layout> {
        let u32_at = |o: usize| -> Option<usize> {
            Some(u32::from_le_bytes(b.get(o..o.checked_add(4)?)?.try_into().ok()?) as usize)
        };
        let frames = u32_at(0)?;
        let n_bands = u32_at(4)?;
        let mel = u32_at(8)?;
        let tuning_cents = f32::from_le_bytes(b.get(12..16)?.try_into().ok()?);
        if n_bands > 256 || !tuning_cents.is_finite() {
            return None;
        }
        let span = |from: usize, len: usize| -> Option<std::ops::Range<usize>> {
            let to = from.checked_add(len)?;
            (to <= b.len()).then_some(from..to)
        };
        let cens = span(16, frames.checked_mul(12)?)?;
        let bands = span(cens.end, frames.checked_mul(n_bands)?)?;
        let melody = span(bands.end, mel.checked_mul(2)?)?;
        let words = u32_at(melody.end)?;
        let peaks = span(melody.end + 4, words.checked_mul(2)?)?;
        let n_events = u32_at(peaks.end)?;
        let events = span(peaks.end + 4, n_events.checked_mul(6)?)?;
        Some(Layout {
            n_bands,
            tuning_cents,
            total: events.end,
            cens,
            bands,
            melody,
            peaks,
            events,
        })
    }
}

/// Events as stored: onset in milliseconds (`u32`, never decreasing) and
/// pitch in cents (`i16`), 6 bytes each; `None` if the onsets decrease.
fn decode_events(b: &[u8]) -> Option<Vec<Event>> {
    let mut events = Vec::with_capacity(b.len() / 6);
    let mut last = 0u32;
    for ch in b.chunks_exact(6) {
        let ms = u32::from_le_bytes(ch[..4].try_into().ok()?);
        let cents = i16::from_le_bytes([ch[4], ch[5]]);
        if ms < last {
            return None;
        }
        last = ms;
        events.push(Event {
            onset_s: ms as f32 / 1000.0,
            cents: cents as f32,
        });
    }
    Some(events)
}

/// Frame steps a peak word can hold; the largest value means "advance this
/// many frames, no peak here".
const STEP_ESCAPE: u32 = 63;

/// Number of 16-bit words [`encode_peaks`] writes.
fn peak_words(peaks: &[LandmarkPeak]) -> usize {
    let mut prev = 0u32;
    let mut n = 0;
    for p in peaks {
        n += ((p.frame - prev) / STEP_ESCAPE) as usize + 1;
        prev = p.frame;
    }
    n
}

/// Peaks as 16-bit words: the frame step from the previous peak in the top
/// 6 bits and the bin in the low 10; a step of 63 or more first writes
/// words of step 63 and bin 0 that only advance.
fn encode_peaks(peaks: &[LandmarkPeak], out: &mut Vec<u8>) {
    let mut prev = 0u32;
    for p in peaks {
        let mut step = p.frame - prev;
        while step >= STEP_ESCAPE {
            out.extend_from_slice(&((STEP_ESCAPE as u16) << 10).to_le_bytes());
            step -= STEP_ESCAPE;
        }
        out.extend_from_slice(&(((step as u16) << 10) | p.bin).to_le_bytes());
        prev = p.frame;
    }
}

/// The inverse of [`encode_peaks`]; `None` unless the result is a valid
/// peak list.
fn decode_peaks(b: &[u8]) -> Option<Vec<LandmarkPeak>> {
    let mut peaks = Vec::with_capacity(b.len() / 2);
    let mut frame = 0u32;
    for w in b.chunks_exact(2) {
        let w = u16::from_le_bytes([w[0], w[1]]);
        let step = (w >> 10) as u32;
        let bin = w & 0x3ff;
        frame = frame.checked_add(step)?;
        if step == STEP_ESCAPE {
            if bin != 0 {
                return None;
            }
            continue;
        }
        peaks.push(LandmarkPeak { frame, bin });
    }
    crate::landmarks::valid_peaks(&peaks).then_some(peaks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{audio_at_analysis_rate, Analyzer};
    use crate::synth;

    #[test]
    fn sequences_round_trip_and_follow_the_rates() {
        let p = AnalysisParams::default();
        let x = synth::render(&synth::compose(5, 8), &synth::Render::default());
        let secs = x.len() as f64 / p.sample_rate as f64;
        let fp = Analyzer::new(&p)
            .analyze(&audio_at_analysis_rate(x, &p))
            .unwrap();
        let s = Sequences::from_fingerprint(&fp, &p);
        assert!((s.frames() as f64 - secs * p.cens_rate()).abs() < 2.0);
        assert!((s.melody.len() as f64 - secs * MELODY_RATE).abs() < 2.0);
        assert!(s.melody.iter().any(|&m| m != UNVOICED));
        assert!(s.peaks.len() as f64 > secs * 5.0, "{} peaks", s.peaks.len());
        let mut buf = Vec::new();
        s.encode(&mut buf);
        assert_eq!(buf.len(), s.encoded_len());
        let (back, used) = Sequences::decode(&buf).unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(back, s);
        assert_eq!(Sequences::decode_peaks_of(&buf).unwrap(), s.peaks);
        assert_eq!(Sequences::decode_events_of(&buf).unwrap(), s.events);
        for cut in 0..buf.len() {
            assert!(Sequences::decode_events_of(&buf[..cut]).is_none());
            assert!(Sequences::decode(&buf[..cut]).is_none());
        }
    }

    #[test]
    fn peaks_round_trip_across_long_gaps() {
        let peaks = vec![
            LandmarkPeak { frame: 0, bin: 6 },
            LandmarkPeak { frame: 0, bin: 743 },
            LandmarkPeak {
                frame: 62,
                bin: 100,
            },
            LandmarkPeak {
                frame: 125,
                bin: 100,
            },
            LandmarkPeak {
                frame: 100_000,
                bin: 400,
            },
        ];
        let mut b = Vec::new();
        encode_peaks(&peaks, &mut b);
        assert_eq!(b.len(), 2 * peak_words(&peaks));
        assert_eq!(decode_peaks(&b).unwrap(), peaks);
        // unsorted or out-of-range lists do not decode
        let mut bad = Vec::new();
        encode_peaks(
            &[LandmarkPeak {
                frame: 3,
                bin: 1000,
            }],
            &mut bad,
        );
        assert!(decode_peaks(&bad).is_none());
        assert!(
            decode_peaks(&[0x05, 0xfc]).is_none(),
            "escape word with a bin"
        );
    }
}

//! Checking audio while it is generated: chunks go in as a generator produces
//! them, and the last [`StreamConfig::window_s`] seconds are re-checked every
//! [`StreamConfig::every_s`] seconds of new audio, so a generator can stop a
//! copy early instead of finishing the clip first.
//!
//! The stream holds only its state (the rolling window of interleaved frames
//! at the source rate, down-mixed when checked exactly as a file is, channels
//! that cancel included); the [`Auditor`] is passed to each call, so one
//! auditor serves any number of streams, from any number of threads.
//!
//! Coverage: every check looks at the window ending at a multiple of
//! `every_s`, so with `every_s ≤ window_s` every second of the stream is inside
//! some checked window, however large the chunks are.

use crate::audit::{Auditor, Report, Verdict};
use crate::decode::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use crate::error::{Error, ErrorKind, Result, Stage};

/// When and over how much audio a stream is re-checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamConfig {
    /// Seconds of the most recent audio each check looks at.
    pub window_s: f64,
    /// Seconds of new audio between checks.
    pub every_s: f64,
}

impl Default for StreamConfig {
    /// A 10 s window checked every 5 s. Short windows matter: the auditor
    /// picks transpositions from the window's overall chroma profile, so a
    /// copy that fills only a small part of a long window can be missed.
    fn default() -> Self {
        StreamConfig {
            window_s: 10.0,
            every_s: 5.0,
        }
    }
}

/// One check of a stream's window.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamCheck {
    /// Stream time (seconds since the first sample) where the window starts.
    pub window_start_s: f64,
    /// Stream time where the window ends (the audio received so far, or the
    /// checkpoint it was checked at).
    pub window_end_s: f64,
    /// The audit of the window. Candidates' `query_start_s` and
    /// `query_end_s` are in stream time, not window time.
    pub report: Report,
}

impl StreamCheck {
    /// Whether the window was flagged.
    pub fn flagged(&self) -> bool {
        self.report.verdict == Verdict::Flag
    }
}

/// The state of one stream: its rolling window and when to check next.
#[derive(Debug, Clone)]
pub struct StreamChecker {
    sample_rate: u32,
    channels: u16,
    window: usize,
    every: usize,
    /// Interleaved frames; `buf[..channels]` is stream frame `buf_start`.
    buf: Vec<f32>,
    buf_start: u64,
    /// Frames received so far.
    total: u64,
    /// Frames at which the last check ended.
    checked_to: u64,
    /// The first flagged check, kept once found.
    first_flag: Option<StreamCheck>,
}

fn invalid(msg: String) -> Error {
    Error::new(Stage::Audit, ErrorKind::InvalidInput(msg))
}

impl StreamChecker {
    /// A stream of interleaved `channels`-channel audio at `sample_rate` Hz.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] when the rate is outside
    /// [`MIN_SAMPLE_RATE`]`..=`[`MAX_SAMPLE_RATE`], `channels` is 0, or the
    /// windows are not `0 < every_s ≤ window_s ≤ 600`.
    pub fn new(sample_rate: u32, channels: u16, config: StreamConfig) -> Result<Self> {
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
            return Err(invalid(format!(
                "sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}..={MAX_SAMPLE_RATE} Hz"
            )));
        }
        if channels == 0 {
            return Err(invalid("channel count is 0".into()));
        }
        let StreamConfig { window_s, every_s } = config;
        let ok = every_s.is_finite()
            && window_s.is_finite()
            && every_s > 0.0
            && every_s <= window_s
            && window_s <= 600.0;
        if !ok {
            return Err(invalid(format!(
                "stream windows must satisfy 0 < every_s <= window_s <= 600 (got every_s {every_s}, window_s {window_s})"
            )));
        }
        let frames = |s: f64| ((s * f64::from(sample_rate)).round() as usize).max(1);
        Ok(StreamChecker {
            sample_rate,
            channels,
            window: frames(window_s),
            every: frames(every_s),
            buf: Vec::new(),
            buf_start: 0,
            total: 0,
            checked_to: 0,
            first_flag: None,
        })
    }

    /// Seconds of audio received so far.
    pub fn duration_s(&self) -> f64 {
        self.total as f64 / f64::from(self.sample_rate)
    }

    /// The first flagged check of this stream, if any.
    pub fn first_flag(&self) -> Option<&StreamCheck> {
        self.first_flag.as_ref()
    }

    /// Appends an interleaved chunk and runs the checks that became due: one
    /// at every multiple of `every_s` the chunk crosses, each over the
    /// window ending there. Stops at the first flagged check.
    ///
    /// Returns the first flagged check of this call, else the last check run,
    /// else `None` (no checkpoint crossed).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] when the chunk is not a whole number of
    /// frames or holds a NaN or infinite sample (the chunk is then not
    /// added); errors of [`Auditor::check_samples`].
    pub fn push(&mut self, auditor: &Auditor<'_>, chunk: &[f32]) -> Result<Option<StreamCheck>> {
        let ch = usize::from(self.channels);
        if !chunk.len().is_multiple_of(ch) {
            return Err(invalid(format!(
                "a chunk of {} samples is not a whole number of {ch}-channel frames",
                chunk.len()
            )));
        }
        if let Some(i) = chunk.iter().position(|x| !x.is_finite()) {
            return Err(invalid(format!(
                "chunk sample {i} (frame {}, channel {}) is {}",
                i / ch,
                i % ch,
                chunk[i]
            )));
        }
        let mut last: Option<StreamCheck> = None;
        for frame in chunk.chunks_exact(ch) {
            self.buf.extend_from_slice(frame);
            self.total += 1;
            let flagged = last.as_ref().is_some_and(StreamCheck::flagged);
            // after a flag, the rest of the chunk is only buffered
            if !flagged && self.total - self.checked_to >= self.every as u64 {
                last = Some(self.check_now(auditor)?);
            }
        }
        Ok(last)
    }

    /// Checks whatever arrived since the last check (the end of a stream):
    /// `None` when nothing did.
    ///
    /// # Errors
    ///
    /// As [`Auditor::check_samples`].
    pub fn finish(&mut self, auditor: &Auditor<'_>) -> Result<Option<StreamCheck>> {
        if self.total == self.checked_to {
            return Ok(None);
        }
        self.check_now(auditor).map(Some)
    }

    /// Checks the window ending at the current frame.
    fn check_now(&mut self, auditor: &Auditor<'_>) -> Result<StreamCheck> {
        let start = self.total.saturating_sub(self.window as u64);
        let ch = usize::from(self.channels);
        let from = (start - self.buf_start) as usize * ch;
        let rate = f64::from(self.sample_rate);
        let mut report =
            auditor.check_samples(&self.buf[from..], self.sample_rate, self.channels)?;
        let offset = start as f64 / rate;
        for c in &mut report.candidates {
            c.query_start_s += offset as f32;
            c.query_end_s += offset as f32;
        }
        self.checked_to = self.total;
        // keep at most one window (dropping in blocks of a window, so the
        // copy is amortised)
        let frames = self.buf.len() / ch;
        if frames >= 2 * self.window {
            let drop = frames - self.window;
            self.buf.drain(..drop * ch);
            self.buf_start += drop as u64;
        }
        let check = StreamCheck {
            window_start_s: offset,
            window_end_s: self.total as f64 / rate,
            report,
        };
        if check.flagged() && self.first_flag.is_none() {
            self.first_flag = Some(check.clone());
        }
        Ok(check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{audio_at_analysis_rate, Analyzer};
    use crate::index::{Index, IndexBuilder};
    use crate::synth::{self, Render, Timbre};
    use crate::AnalysisParams;

    const RATE: u32 = 32_000;

    fn song(seed: u64, rate: u32) -> Vec<f32> {
        let t = [Timbre::Piano, Timbre::Pluck, Timbre::Organ, Timbre::Strings];
        synth::render(
            &synth::compose(seed, 16),
            &Render {
                sample_rate: rate,
                melody: t[seed as usize % 4],
                accompaniment: t[(seed as usize + 1) % 4],
                ..Render::default()
            },
        )
    }

    /// Six indexed songs of 16 bars (≈ 35 s each).
    fn index() -> Index {
        let p = AnalysisParams::default();
        let mut an = Analyzer::new(&p);
        let mut b = IndexBuilder::new(&p);
        for seed in 1..=6u64 {
            let fp = an
                .analyze(&audio_at_analysis_rate(song(seed, p.sample_rate), &p))
                .unwrap();
            b.add(&format!("song{seed}.wav"), &format!("h{seed}"), &fp)
                .unwrap();
        }
        b.build()
    }

    fn stereo(mono: &[f32]) -> Vec<f32> {
        mono.iter().flat_map(|&x| [x, 0.8 * x]).collect()
    }

    fn push_in_chunks(
        s: &mut StreamChecker,
        a: &Auditor<'_>,
        x: &[f32],
        chunk: usize,
    ) -> Vec<StreamCheck> {
        x.chunks(chunk)
            .filter_map(|c| s.push(a, c).unwrap())
            .collect()
    }

    #[test]
    fn a_copy_after_an_original_is_flagged_soon_after_it_starts() {
        let index = index();
        let auditor = Auditor::new(&index);
        // 12 s of an unindexed piece, then 20 s of song 3 from its 8 s mark
        let sec = RATE as usize;
        let mut x = song(301, RATE)[..12 * sec].to_vec();
        x.extend_from_slice(&song(3, RATE)[8 * sec..28 * sec]);
        let x = stereo(&x);
        let mut s = StreamChecker::new(RATE, 2, StreamConfig::default()).unwrap();
        // chunks of 0.37 s, as a generator might produce them
        let checks = push_in_chunks(&mut s, &auditor, &x, 2 * 11_840);
        // checkpoints at 5 and 10 s see only the original
        assert!(checks.len() >= 3, "{}", checks.len());
        for c in &checks[..2] {
            assert!(!c.flagged(), "{:?}", c.report.best());
        }
        let flag = s.first_flag().expect("the copy is flagged").clone();
        // within 10 s of the copy's start (checks every 5 s)
        assert!(flag.window_end_s <= 22.0 + 1e-6, "{}", flag.window_end_s);
        let best = flag.report.best().unwrap();
        assert_eq!(best.item, 2, "{best:?}");
        // the matched range is in stream time, inside the copied part
        assert!(best.query_start_s >= 11.0, "{best:?}");
        assert!(
            best.query_end_s <= flag.window_end_s as f32 + 0.5,
            "{best:?}"
        );
        // where it sits in the song: stream time 12 s is song time 8 s
        let located = best.match_start_s - (best.query_start_s - 12.0);
        assert!((located - 8.0).abs() <= 1.5, "{best:?}");
    }

    #[test]
    fn a_stream_whose_channels_cancel_is_checked_as_their_difference() {
        let index = index();
        let auditor = Auditor::new(&index);
        let sec = RATE as usize;
        // song 4 with the right channel inverted (`sox remix 1 1i`)
        let x: Vec<f32> = song(4, RATE)[5 * sec..17 * sec]
            .iter()
            .flat_map(|&v| [v, -v])
            .collect();
        let mut s = StreamChecker::new(RATE, 2, StreamConfig::default()).unwrap();
        push_in_chunks(&mut s, &auditor, &x, 2 * 4_000);
        let flag = s.first_flag().expect("the copy is flagged");
        assert_eq!(flag.report.best().unwrap().item, 3);
        assert!(
            flag.report
                .notes
                .iter()
                .any(|n| n.contains("channels cancel")),
            "{:?}",
            flag.report.notes
        );
    }

    #[test]
    fn an_original_passes_and_chunk_sizes_do_not_change_the_checks() {
        let index = index();
        let auditor = Auditor::new(&index);
        let x = song(302, RATE)[..23 * RATE as usize].to_vec();
        let cfg = StreamConfig {
            window_s: 10.0,
            every_s: 5.0,
        };
        let mut small = StreamChecker::new(RATE, 1, cfg).unwrap();
        let a = push_in_chunks(&mut small, &auditor, &x, 3_001);
        // checkpoints at 5, 10, 15, 20 s, then the 3 s tail
        assert_eq!(a.len(), 4);
        let tail = small.finish(&auditor).unwrap().expect("a tail was left");
        assert!((tail.window_end_s - 23.0).abs() < 1e-9);
        assert!((tail.window_start_s - 13.0).abs() < 1e-9);
        assert!(small.finish(&auditor).unwrap().is_none());
        for c in a.iter().chain([&tail]) {
            assert!(!c.flagged(), "{:?}", c.report.best());
        }
        assert!(small.first_flag().is_none());
        // one chunk of everything runs the checks at the same checkpoints,
        // over the same windows, and returns the last
        let mut big = StreamChecker::new(RATE, 1, cfg).unwrap();
        let last = big.push(&auditor, &x).unwrap().unwrap();
        assert_eq!(last, a[3]);
        assert!((small.duration_s() - 23.0).abs() < 1e-9);
        assert_eq!(big.duration_s(), small.duration_s());
    }

    #[test]
    fn bad_chunks_and_settings_are_refused_with_a_reason() {
        let index = index();
        let auditor = Auditor::new(&index);
        let mut s = StreamChecker::new(RATE, 2, StreamConfig::default()).unwrap();
        let e = s.push(&auditor, &[0.0; 3]).unwrap_err().to_string();
        assert!(e.contains("whole number of 2-channel frames"), "{e}");
        let e = s
            .push(&auditor, &[0.0, 0.1, f32::NAN, 0.0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("frame 1, channel 0") && e.contains("NaN"), "{e}");
        assert_eq!(s.duration_s(), 0.0, "a refused chunk is not added");
        for (rate, ch, w, e) in [
            (RATE, 0u16, 15.0, 5.0),
            (10, 1, 15.0, 5.0),
            (RATE, 1, 5.0, 15.0),
            (RATE, 1, 15.0, 0.0),
            (RATE, 1, f64::NAN, 5.0),
        ] {
            let cfg = StreamConfig {
                window_s: w,
                every_s: e,
            };
            assert!(
                StreamChecker::new(rate, ch, cfg).is_err(),
                "{rate} {ch} {w} {e}"
            );
        }
    }
}

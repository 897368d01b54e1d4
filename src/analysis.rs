//! The front end in one call: analysis signal → every fingerprint.
//!
//! One STFT pass; each frame's magnitudes feed the spectral bands, and its
//! peaks (computed once) feed chroma, tuning, melody salience and the two
//! landmark peak pickers. The [`Analyzer`] owns the FFT plans and all
//! per-frame buffers, so analysing many files on one thread allocates
//! nothing per frame.

use crate::bands::BandAccumulator;
use crate::chroma::ChromaAccumulator;
use crate::decode::Audio;
use crate::embed::Embedder;
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::fingerprint::Fingerprint;
use crate::landmarks::PeakPicker;
use crate::melody::MelodyTracker;
use crate::params::AnalysisParams;
use crate::stft::{find_peaks, Peak, Stft};

/// Reusable analysis state: FFT plans and buffers for one thread.
pub struct Analyzer {
    params: AnalysisParams,
    stft: Stft,
    melody_stft: Stft,
    embedder: Embedder,
    peaks: Vec<Peak>,
    fine_chroma: Vec<f32>,
    index_picker: PeakPicker,
    query_picker: PeakPicker,
    /// Whether the sparse (stored) landmark peaks are picked.
    index_landmarks: bool,
}

impl Analyzer {
    /// Plans the transforms for `params`.
    pub fn new(params: &AnalysisParams) -> Self {
        let bin_hz = params.sample_rate as f32 / params.fft_size as f32;
        Analyzer {
            index_picker: PeakPicker::new(params.landmark_index, bin_hz, params.fmin_hz),
            query_picker: PeakPicker::new(params.landmark_query, bin_hz, params.fmin_hz),
            index_landmarks: true,
            params: params.clone(),
            stft: Stft::new(params.fft_size, params.hop),
            melody_stft: Stft::new(params.melody_fft_size, params.melody_hop),
            embedder: Embedder::new(params),
            peaks: Vec::with_capacity(params.max_peaks * 4),
            fine_chroma: Vec::new(),
        }
    }

    /// An analyzer for queries only: it skips the sparse landmark peaks that
    /// only training items store, so its fingerprints have none and
    /// [`crate::index::IndexBuilder::add`] refuses them.
    pub fn for_queries(params: &AnalysisParams) -> Self {
        Analyzer {
            index_landmarks: false,
            ..Self::new(params)
        }
    }

    /// Takes the unfolded pitch-class energies of the last signal analysed
    /// (see [`crate::chroma::ChromaFeatures::fine`]); empty if already taken.
    pub fn take_fine_chroma(&mut self) -> Vec<f32> {
        std::mem::take(&mut self.fine_chroma)
    }

    /// The parameters this analyzer uses.
    pub fn params(&self) -> &AnalysisParams {
        &self.params
    }

    /// Computes every fingerprint of `audio`, which must be at the analysis
    /// rate (as [`crate::decode`] delivers it).
    ///
    /// # Errors
    ///
    /// At [`Stage::Analyze`]: [`ErrorKind::InvalidInput`] when `audio` is
    /// at another rate or holds samples beyond full scale by far,
    /// [`ErrorKind::Empty`] when it holds no samples.
    pub fn analyze(&mut self, audio: &Audio) -> Result<Fingerprint> {
        let p = &self.params;
        if audio.sample_rate != p.sample_rate {
            return Err(Error::new(
                Stage::Analyze,
                ErrorKind::InvalidInput(format!(
                    "audio is at {} Hz, the analysis rate is {} Hz",
                    audio.sample_rate, p.sample_rate
                )),
            ));
        }
        if audio.samples.is_empty() {
            return Err(Error::new(
                Stage::Analyze,
                ErrorKind::Empty("the decoded signal has no samples".into()),
            ));
        }
        let max = crate::decode::MAX_SAMPLE_MAGNITUDE;
        if let Some(i) = audio
            .samples
            .iter()
            .position(|x| x.is_nan() || x.abs() > max)
        {
            return Err(Error::new(
                Stage::Analyze,
                ErrorKind::InvalidInput(format!(
                    "sample {i} is {}, not a finite number within ±{max}",
                    audio.samples[i]
                )),
            ));
        }
        let bin_hz = p.sample_rate as f32 / p.fft_size as f32;
        let mut chroma = ChromaAccumulator::new(p);
        let mut bands = BandAccumulator::new(p);
        let mut melody = MelodyTracker::new(p);
        let peaks = &mut self.peaks;
        // the melody's own, shorter spectrum
        let melody_bin_hz = p.sample_rate as f32 / p.melody_fft_size as f32;
        melody.reserve(audio.samples.len() / p.melody_hop.max(1) + 1);
        self.melody_stft.for_each_frame(&audio.samples, |_, mag| {
            find_peaks(
                mag,
                melody_bin_hz,
                p.melody_fmin_hz,
                p.fmax_hz,
                p.max_peaks,
                peaks,
            );
            melody.push_frame(peaks);
        });
        let (index_picker, query_picker) = (&mut self.index_picker, &mut self.query_picker);
        let index_landmarks = self.index_landmarks;
        let (fmin, fmax, max_peaks) = (p.fmin_hz, p.fmax_hz, p.max_peaks);
        self.stft.for_each_frame(&audio.samples, |_, mag| {
            bands.push_frame(mag);
            find_peaks(mag, bin_hz, fmin, fmax, max_peaks, peaks);
            chroma.push_frame(peaks);
            if index_landmarks {
                index_picker.push_frame(mag, peaks);
            }
            query_picker.push_frame(mag, peaks);
        });
        let mut chroma = chroma.finish();
        self.fine_chroma = std::mem::take(&mut chroma.fine);
        let bands = bands.finish();
        let melody = melody.finish();
        let embeddings = self.embedder.embed(chroma.chroma.view(), bands.view());
        Ok(Fingerprint {
            params_hash: self.params.hash(),
            source: audio.source,
            tuning_cents: chroma.tuning_cents,
            chroma: chroma.chroma,
            cens: chroma.cens,
            bands,
            melody,
            embeddings: embeddings.vectors,
            landmarks_index: self.index_picker.finish(),
            landmarks_query: self.query_picker.finish(),
        })
    }
}

/// Wraps mono samples already at the analysis rate as [`Audio`] (tests,
/// synthesized signals).
pub fn audio_at_analysis_rate(samples: Vec<f32>, params: &AnalysisParams) -> Audio {
    let duration_s = samples.len() as f64 / params.sample_rate as f64;
    Audio {
        samples,
        sample_rate: params.sample_rate,
        source: crate::decode::SourceInfo {
            sample_rate: params.sample_rate,
            channels: 1,
            duration_s,
            cancelled_s: 0.0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::cosine;
    use crate::synth::{self, Render, Timbre};
    use ndarray::Array2;

    fn fingerprint(samples: Vec<f32>) -> Fingerprint {
        let p = AnalysisParams::default();
        Analyzer::new(&p)
            .analyze(&audio_at_analysis_rate(samples, &p))
            .unwrap()
    }

    /// Mean over `a`'s windows of the best cosine similarity in `b`.
    fn track_similarity(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
        let mut total = 0.0;
        for ra in a.rows() {
            let best = b
                .rows()
                .into_iter()
                .map(|rb| cosine(ra.as_slice().unwrap(), rb.as_slice().unwrap()))
                .fold(f32::MIN, f32::max);
            total += best;
        }
        total / a.nrows() as f32
    }

    #[test]
    fn transformed_versions_are_nearer_than_unrelated_pieces() {
        let piece = synth::compose(1, 16);
        let base = Render::default();
        let orig = synth::render(&piece, &base);
        let mut lowpassed = orig.clone();
        synth::low_pass(&mut lowpassed, 1500.0, base.sample_rate);
        let up2 = synth::render(
            &piece,
            &Render {
                transpose: 2.0,
                ..base.clone()
            },
        );
        let faster = synth::render(
            &piece,
            &Render {
                tempo: 1.1,
                ..base.clone()
            },
        );
        let strings = synth::render(
            &piece,
            &Render {
                transpose: -3.0,
                tempo: 0.9,
                melody: Timbre::Strings,
                accompaniment: Timbre::Organ,
                drums: false,
                ..base.clone()
            },
        );
        let family: Vec<(&str, Array2<f32>)> = [
            ("original", orig),
            ("low-passed", lowpassed),
            ("+2 semitones", up2),
            ("1.1x tempo", faster),
        ]
        .into_iter()
        .map(|(n, x)| (n, fingerprint(x).embeddings))
        .collect();
        // the same melody on other instruments, in another key and tempo: a
        // harder case the index answers with several candidates and alignment;
        // reported, not asserted
        let strings = fingerprint(strings).embeddings;
        let others: Vec<Array2<f32>> = (100..120)
            .map(|s| fingerprint(synth::render(&synth::compose(s, 16), &base)).embeddings)
            .collect();
        let nearest = |e: &Array2<f32>| {
            others
                .iter()
                .map(|o| track_similarity(e, o))
                .fold(f32::MIN, f32::max)
        };
        eprintln!(
            "strings -3 st 0.9x ~ original: {:.3} (nearest unrelated {:.3})",
            track_similarity(&strings, &family[0].1),
            nearest(&strings)
        );
        for (i, (name, e)) in family.iter().enumerate() {
            let nearest_other = nearest(e);
            for (j, (name2, e2)) in family.iter().enumerate() {
                if i == j {
                    continue;
                }
                let s = track_similarity(e, e2);
                eprintln!("{name} ~ {name2}: {s:.3} (nearest unrelated {nearest_other:.3})");
                assert!(
                    s > nearest_other,
                    "{name} ~ {name2}: {s:.3} <= nearest unrelated {nearest_other:.3}"
                );
            }
        }
    }

    #[test]
    fn query_fingerprints_have_no_stored_peaks_and_cannot_be_indexed() {
        let p = AnalysisParams::default();
        let x = synth::render(&synth::compose(2, 4), &Render::default());
        let audio = audio_at_analysis_rate(x, &p);
        let full = Analyzer::new(&p).analyze(&audio).unwrap();
        let query = Analyzer::for_queries(&p).analyze(&audio).unwrap();
        assert!(!full.landmarks_index.is_empty());
        assert!(query.landmarks_index.is_empty());
        // everything else is the same analysis
        assert_eq!(query.landmarks_query, full.landmarks_query);
        assert_eq!(query.chroma, full.chroma);
        let mut b = crate::index::IndexBuilder::new(&p);
        let e = b.add("q.wav", "h", &query).unwrap_err().to_string();
        assert!(e.contains("q.wav") && e.contains("queries only"), "{e}");
        b.add("full.wav", "h2", &full).unwrap();
    }

    #[test]
    fn non_finite_and_wrong_rate_are_refused() {
        let p = AnalysisParams::default();
        let mut a = Analyzer::new(&p);
        let mut audio = audio_at_analysis_rate(vec![0.0, f32::NAN, 0.0], &p);
        assert!(a.analyze(&audio).is_err());
        audio.samples = vec![0.1; 100];
        audio.sample_rate = 44100;
        let e = a.analyze(&audio).unwrap_err().to_string();
        assert!(e.contains("44100"), "{e}");
    }
}

//! The spectral ("audio") view: energy in log-spaced bands, summed over the
//! same blocks as chroma, in dB.
//!
//! Bands are log-spaced so that a pitch shift is a translation along the band
//! axis; the embedding and the audio-level comparison rely on that.

use ndarray::Array2;

use crate::params::AnalysisParams;

/// Lowest band edge in Hz.
const BAND_LO_HZ: f32 = 100.0;

/// Accumulates STFT magnitudes into log-spaced band energies per block.
pub struct BandAccumulator {
    /// `edges[b]..edges[b + 1]` are the FFT bins of band `b`.
    edges: Vec<usize>,
    block: usize,
    /// Scales a block's summed energy so a full-scale sine is about 0 dB.
    scale: f32,
    in_block: usize,
    current: Vec<f32>,
    out: Vec<f32>,
}

impl BandAccumulator {
    /// A new accumulator for the given parameters.
    pub fn new(params: &AnalysisParams) -> Self {
        let bin_hz = params.sample_rate as f32 / params.fft_size as f32;
        let nyq_bin = params.fft_size / 2;
        let n = params.bands.max(1);
        let hi = params.fmax_hz.min(params.sample_rate as f32 / 2.0);
        let ratio = (hi / BAND_LO_HZ).max(1.0001);
        let mut edges: Vec<usize> = (0..=n)
            .map(|b| {
                let f = BAND_LO_HZ * ratio.powf(b as f32 / n as f32);
                ((f / bin_hz).round() as usize).min(nyq_bin)
            })
            .collect();
        // every band holds at least one bin
        for b in 1..edges.len() {
            if edges[b] <= edges[b - 1] {
                edges[b] = (edges[b - 1] + 1).min(nyq_bin + 1);
            }
        }
        // a unit sine on a bin has magnitude ≈ window_sum / 2 = fft_size / 4
        let full = params.fft_size as f32 / 4.0;
        BandAccumulator {
            edges,
            scale: 1.0 / (full * full * params.chroma_block.max(1) as f32),
            block: params.chroma_block.max(1),
            in_block: 0,
            current: vec![0.0; n],
            out: Vec::new(),
        }
    }

    /// Adds one STFT frame's magnitudes.
    pub fn push_frame(&mut self, mag: &[f32]) {
        for (b, e) in self.current.iter_mut().enumerate() {
            let (lo, hi) = (self.edges[b], self.edges[b + 1].min(mag.len()));
            if lo < hi {
                *e += mag[lo..hi].iter().map(|m| m * m).sum::<f32>();
            }
        }
        self.in_block += 1;
        if self.in_block == self.block {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.out.extend_from_slice(&self.current);
        self.current.iter_mut().for_each(|e| *e = 0.0);
        self.in_block = 0;
    }

    /// Band energies in dB (0 dB ≈ a full-scale sine; floored at −120 dB),
    /// frames × bands.
    pub fn finish(mut self) -> Array2<f32> {
        if self.in_block > 0 {
            self.flush();
        }
        let n = self.current.len();
        let frames = self.out.len() / n;
        let db: Vec<f32> = self
            .out
            .iter()
            .map(|&e| 10.0 * (e * self.scale + 1e-12).log10().max(-12.0))
            .collect();
        Array2::from_shape_vec((frames, n), db).expect("frames × bands elements")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stft::Stft;

    #[test]
    fn a_tone_lights_its_band_and_a_shift_moves_it_up() {
        let p = AnalysisParams::default();
        let run = |f: f32| {
            let x: Vec<f32> = (0..11025)
                .map(|t| (std::f32::consts::TAU * f * t as f32 / 11025.0).sin())
                .collect();
            let mut stft = Stft::new(p.fft_size, p.hop);
            let mut acc = BandAccumulator::new(&p);
            stft.for_each_frame(&x, |_, m| acc.push_frame(m));
            let b = acc.finish();
            let mid = b.row(b.nrows() / 2).to_vec();
            (0..mid.len())
                .max_by(|&i, &j| mid[i].total_cmp(&mid[j]))
                .unwrap()
        };
        let low = run(300.0);
        let high = run(1200.0); // two octaves up: ≈ 8.5 bands of 2.8 semitones
        assert!(high > low + 6 && high < low + 11, "{low} -> {high}");
    }
}

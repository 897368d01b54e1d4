//! Short audio excerpts for a reviewer to listen to: a stretch of a file,
//! decoded, down-mixed and compressed as Ogg Opus (pure Rust, the
//! `opus-pure` crate Refrain already decodes Opus with), small enough to
//! embed in a self-contained HTML page.

use std::path::Path;

use opus_pure::{Application, OggOpusWriter, OpusEncoder, OpusHead, OpusTags, MAX_PACKET_BYTES};

use crate::decode::{self, DecodeLimits};
use crate::error::{Error, ErrorKind, Result, Stage};

/// Longest excerpt, seconds: long enough to hear a copied phrase, short
/// enough that two per flagged input keep a page of dozens of them small.
pub const MAX_EXCERPT_S: f64 = 10.0;

/// Sample rate of the excerpts: Opus wideband (music up to 8 kHz), enough
/// to recognise a melody and a recording; one of Opus's own rates, so the
/// encoder resamples nothing.
pub const EXCERPT_RATE: u32 = 16_000;

/// Bit rate of the excerpts: 24 kbit/s, 30 kB for 10 s, at which wideband
/// Opus music is clean enough to compare two recordings by ear.
pub const EXCERPT_BITRATE: i32 = 24_000;

/// Opus frames are 20 ms.
const FRAME: usize = (EXCERPT_RATE / 50) as usize;

/// `len_s` seconds (at most [`MAX_EXCERPT_S`]) of `path` from `start_s`,
/// mono, as an Ogg Opus file's bytes. A range past the end is cut at the
/// end.
///
/// # Errors
///
/// The [`decode`] errors for `path` (stage `open` or `decode`, file
/// named), [`ErrorKind::Limit`] beyond `limits`, and
/// [`ErrorKind::InvalidInput`] (stage `decode`) when the range holds no
/// audio.
pub fn opus_excerpt(
    path: &Path,
    start_s: f64,
    len_s: f64,
    limits: &DecodeLimits,
) -> Result<Vec<u8>> {
    let audio = decode::decode_file_with_limits(path, EXCERPT_RATE, limits)?;
    let rate = audio.sample_rate as f64;
    let a = ((start_s.max(0.0) * rate) as usize).min(audio.samples.len());
    let len = len_s.clamp(0.0, MAX_EXCERPT_S);
    let b = (((start_s.max(0.0) + len) * rate) as usize).min(audio.samples.len());
    if b <= a {
        return Err(Error::at(
            path,
            Stage::Decode,
            ErrorKind::InvalidInput(format!(
                "no audio in {start_s:.2}–{:.2} s (the file is {:.2} s long)",
                start_s + len,
                audio.samples.len() as f64 / rate
            )),
        ));
    }
    encode_opus(&audio.samples[a..b]).map_err(|e| e.with_path(path))
}

/// Mono samples at [`EXCERPT_RATE`] as an Ogg Opus file's bytes, ending
/// exactly at the last sample (RFC 7845 end trimming).
///
/// # Errors
///
/// [`ErrorKind::Corrupt`] (stage `decode`) if the encoder refuses the
/// input (it does not for finite samples).
pub fn encode_opus(samples: &[f32]) -> Result<Vec<u8>> {
    let fail = |e: opus_pure::Error| {
        Error::new(
            Stage::Decode,
            ErrorKind::Corrupt(format!("Opus encoder: {e}")),
        )
    };
    let mut encoder = OpusEncoder::new(EXCERPT_RATE as i32, 1, Application::Audio).map_err(fail)?;
    encoder.bitrate_bps = EXCERPT_BITRATE;
    let head = OpusHead::for_encoder(&encoder, EXCERPT_RATE);
    let mut tags = OpusTags::new();
    tags.push("ENCODER", "refrain").map_err(fail)?;
    // 48 kHz granule ticks per sample; the encoder runs pre_skip behind,
    // so that much silence more flushes the last samples out
    let ticks = (48_000 / EXCERPT_RATE) as usize;
    let lookahead = (head.pre_skip as usize).div_ceil(ticks);
    let frames = (samples.len() + lookahead).div_ceil(FRAME);
    let final_granule = u64::from(head.pre_skip) + (samples.len() * ticks) as u64;
    let mut writer = OggOpusWriter::with_tags(Vec::new(), head, tags).map_err(fail)?;
    let mut packet = vec![0u8; MAX_PACKET_BYTES];
    let mut block = vec![0.0f32; FRAME];
    for i in 0..frames {
        let start = (i * FRAME).min(samples.len());
        let end = (start + FRAME).min(samples.len());
        block[..end - start].copy_from_slice(&samples[start..end]);
        block[end - start..].fill(0.0);
        for x in &mut block {
            *x = if x.is_finite() {
                x.clamp(-1.0, 1.0)
            } else {
                0.0
            };
        }
        let n = encoder.encode(&block, FRAME, &mut packet).map_err(fail)?;
        if i + 1 == frames {
            let duration = final_granule.saturating_sub(writer.granule().max(0) as u64);
            writer
                .write_packet_with_duration(&packet[..n], duration as u32)
                .map_err(fail)?;
        } else {
            writer.write_packet(&packet[..n]).map_err(fail)?;
        }
    }
    writer.finish().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    #[test]
    fn an_excerpt_is_small_and_decodes_back_to_its_length_and_pitch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        // 15 s: 440 Hz, then 660 Hz from 8 s
        let rate = 22_050;
        let mut x = synth::tones(&[440.0], 8.0, rate);
        x.extend(synth::tones(&[660.0], 7.0, rate));
        std::fs::write(&path, synth::wav_bytes(&x, rate)).unwrap();
        let limits = DecodeLimits::default();
        // asked for 12 s, given 10
        let bytes = opus_excerpt(&path, 4.0, 12.0, &limits).unwrap();
        assert!(bytes.starts_with(b"OggS"));
        assert!(bytes.len() < 40_000, "{} bytes", bytes.len());
        let back = dir.path().join("back.opus");
        std::fs::write(&back, &bytes).unwrap();
        let a = decode::decode_file(&back, 16_000).unwrap();
        let secs = a.samples.len() as f64 / 16_000.0;
        assert!((secs - 10.0).abs() < 0.05, "{secs} s");
        // 4-8 s is 440 Hz, 8-14 s 660 Hz: count zero crossings of each half
        let crossings = |s: &[f32]| s.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        let first = crossings(&a.samples[16_000..48_000]) as f64 / 2.0;
        let second = crossings(&a.samples[96_000..144_000]) as f64 / 3.0;
        assert!((first - 440.0).abs() < 10.0, "{first}");
        assert!((second - 660.0).abs() < 10.0, "{second}");
        // past the end: cut; wholly past: refused with the file named
        let tail = opus_excerpt(&path, 12.0, 10.0, &limits).unwrap();
        assert!(tail.len() < bytes.len());
        let e = opus_excerpt(&path, 20.0, 5.0, &limits)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tone.wav") && e.contains("no audio"), "{e}");
    }
}

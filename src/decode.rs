//! Decoding: any supported file (or in-memory samples) to mono audio at the
//! analysis rate.
//!
//! Every input takes the same path: decode packet by packet, down-mix each
//! block of frames to mono, and resample the mono stream once, in chunks, to
//! the target rate with a band-limited resampler. Only the mono output at the
//! target rate is ever held whole; the multichannel source never is, and the
//! working buffers are reused from packet to packet.
//!
//! Containers and codecs:
//!
//! - WAV, AIFF/AIFC, FLAC, MP3, Ogg Vorbis, AAC (ADTS or in MP4/M4A) and
//!   Apple Lossless (in MP4/M4A) are decoded with symphonia;
//! - a WAV holding MP3 (format tag `0x0055`) is decoded by the MP3 decoder;
//! - Ogg Opus (a `.opus` file, or any Ogg stream whose first packet is an
//!   `OpusHead`) is decoded at 48 kHz with the pure-Rust `opus-pure` decoder,
//!   which honours the header's pre-skip, end trim and output gain;
//! - a chained Ogg file (`cat a.ogg b.opus > c.ogg`) is decoded link after
//!   link, whatever each link's codec, rate and channel count;
//! - leading ID3v2 tags (MP3 and FLAC files with cover art) are skipped by
//!   their declared size, whatever it is.
//!
//! A codec without a decoder (GSM 6.10 or G.726 in WAV, IMA ADPCM in AIFC,
//! AC-3 in MP4, ...) is refused with [`ErrorKind::Unsupported`] naming the
//! codec and what to convert it to.
//!
//! The container is recognised by its content; a file extension (or the
//! `ext_hint` of [`decode_bytes`]) is only a hint.
//!
//! **Down-mix.** Frames are averaged over the channels, in blocks of
//! [`DOWNMIX_BLOCK`] frames. When a block's average is more than 20 dB below
//! the channels' own level (the channels cancel: one is the other inverted, as
//! `sox in.wav out.wav remix 1 1i` writes), the block is taken as the
//! difference of the first two channels, halved (for two channels; the first
//! channel for more), so the music survives; [`SourceInfo::cancelled_s`] says
//! how much of the source was, and [`cancelled_note`] words it for a reader.
//!
//! Damaged input is handled without panicking or hanging: a packet that fails
//! to decode is skipped and counted, and the decode fails only when more than
//! half of the packets fail or nothing decodes at all. A file cut short
//! decodes to the audio it holds.

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use opus_pure::{OggOpusReader, OggPacket, OpusDecoder, OpusMSDecoder, Trim};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Indexing, Resampler, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};
use serde::{Deserialize, Serialize};
use symphonia::core::codecs::audio::well_known as codecs;
use symphonia::core::codecs::audio::{
    AudioCodecId, AudioCodecParameters, AudioDecoder, AudioDecoderOptions, CODEC_ID_NULL_AUDIO,
};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream, ReadOnlySource};
use symphonia::core::meta::MetadataOptions;

use crate::error::{Error, ErrorKind, Result, Stage};

/// Facts about the source recording, kept in every fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Sample rate of the source in Hz (for Opus, the 48 kHz it is decoded
    /// at; for a chained Ogg file whose links differ, the first link's).
    pub sample_rate: u32,
    /// Channel count of the source (for a chained file, the most of any link).
    pub channels: u16,
    /// Duration of the source in seconds: the frames actually decoded (after
    /// encoder delay and padding are trimmed) over their sample rate, summed
    /// over the links of a chained file.
    pub duration_s: f64,
    /// Seconds of the source whose channels cancel when averaged (one is
    /// the other inverted) and which were analysed as the difference of the
    /// first two channels (the first channel, beyond two) instead; 0 for
    /// most recordings. See [`cancelled_note`].
    #[serde(default)]
    pub cancelled_s: f64,
}

/// What a reader must know about a source whose channels cancel: `None`
/// when less than a second (and less than a tenth of it) did, else one
/// sentence naming how much and what was analysed instead.
pub fn cancelled_note(source: &SourceInfo) -> Option<String> {
    let c = source.cancelled_s;
    if c.is_nan() || c <= 0.0 || (c < 1.0 && c < 0.1 * source.duration_s) {
        return None;
    }
    let instead = if source.channels == 2 {
        "the left-right difference"
    } else {
        "the first channel"
    };
    Some(format!(
        "the channels cancel when averaged in {c:.1} s of {:.1} s (one is the other \
         inverted): that audio was analysed as {instead}",
        source.duration_s
    ))
}

/// Mono audio at the analysis rate, with facts about its source.
#[derive(Debug, Clone)]
pub struct Audio {
    /// Mono samples at `sample_rate`.
    pub samples: Vec<f32>,
    /// The analysis sample rate of `samples`.
    pub sample_rate: u32,
    /// The source's rate, channels and duration.
    pub source: SourceInfo,
}

/// Resource limits for decoding untrusted input.
///
/// A source longer than `max_duration_s`, or a file (or byte slice) larger
/// than `max_bytes`, is refused with [`ErrorKind::Limit`] instead of being
/// decoded. The duration is checked on the audio actually decoded, so a lying
/// header can neither cause a refusal nor get past the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeLimits {
    /// Longest accepted source, in seconds.
    pub max_duration_s: f64,
    /// Largest accepted input, in bytes.
    pub max_bytes: u64,
}

impl Default for DecodeLimits {
    /// Four hours of audio and 2 GiB of input.
    fn default() -> Self {
        DecodeLimits {
            max_duration_s: 4.0 * 3600.0,
            max_bytes: 2 << 30,
        }
    }
}

/// The lowest sample rate accepted, for sources and targets alike (Hz).
pub const MIN_SAMPLE_RATE: u32 = 1_000;
/// The highest sample rate accepted, for sources and targets alike (Hz).
pub const MAX_SAMPLE_RATE: u32 = 768_000;
/// Frames per down-mix decision (see the [module documentation](self)).
pub const DOWNMIX_BLOCK: usize = 4096;
/// A block whose channel average is this far below the channels' own power
/// (−20 dB) is taken as the channel difference instead.
const CANCEL_RATIO: f64 = 0.01;
/// Blocks quieter than this mean power per sample (−80 dBFS) are averaged.
const CANCEL_FLOOR: f64 = 1e-8;
/// What to convert audio in a codec without a decoder to.
const CONVERT: &str =
    "convert the audio to FLAC or PCM WAV (for example `ffmpeg -i IN -c:a flac OUT.flac`)";

/// The largest sample magnitude accepted (full scale is 1.0). Float formats
/// can hold any value; one beyond this (+120 dB over full scale) is not
/// audio, and values near `f32::MAX` would overflow the resampler and the
/// analysis into infinities.
pub const MAX_SAMPLE_MAGNITUDE: f32 = 1e6;

/// Whether a sample is usable: finite and within [`MAX_SAMPLE_MAGNITUDE`].
fn usable(x: f32) -> bool {
    x.abs() <= MAX_SAMPLE_MAGNITUDE
}

/// The rate Opus is decoded at (every Opus stream can be decoded at 48 kHz).
const OPUS_RATE: u32 = 48_000;
/// The largest FFT resampler input block (frames); beyond it, a sinc resampler.
const MAX_FFT_BLOCK: usize = 1 << 18;
/// Demuxer errors in a row after which the rest of the input is given up on.
const MAX_CONSECUTIVE_ERRORS: u32 = 64;

/// Decodes the file at `path` to mono audio at `target_rate` Hz, with the
/// default [`DecodeLimits`].
///
/// The container is recognised by content, with the extension as a hint. See
/// the [module documentation](self) for the supported formats.
///
/// # Errors
///
/// Every error names `path`: [`Stage::Open`] when the file cannot be read or
/// its format is not recognised ([`ErrorKind::Io`], [`ErrorKind::Unsupported`],
/// [`ErrorKind::Corrupt`], [`ErrorKind::Empty`] for an empty file or one with
/// no audio track), [`Stage::Decode`] when its audio cannot be decoded
/// ([`ErrorKind::Corrupt`] when most packets fail, [`ErrorKind::Empty`] when
/// no audio decodes), [`ErrorKind::Limit`] when a [`DecodeLimits`] is
/// exceeded, and [`ErrorKind::InvalidInput`] for a `target_rate` outside
/// [`MIN_SAMPLE_RATE`]`..=`[`MAX_SAMPLE_RATE`].
pub fn decode_file(path: &Path, target_rate: u32) -> Result<Audio> {
    decode_file_with_limits(path, target_rate, &DecodeLimits::default())
}

/// [`decode_file`] with explicit resource limits.
///
/// # Errors
///
/// As [`decode_file`]; [`ErrorKind::Limit`] when the file is larger than
/// `limits.max_bytes` or its audio longer than `limits.max_duration_s`.
pub fn decode_file_with_limits(
    path: &Path,
    target_rate: u32,
    limits: &DecodeLimits,
) -> Result<Audio> {
    check_target_rate(target_rate).map_err(|e| e.with_path(path))?;
    // before opening: opening a named pipe blocks until a writer comes
    let meta =
        std::fs::metadata(path).map_err(|e| Error::at(path, Stage::Open, ErrorKind::Io(e)))?;
    if !meta.is_file() {
        return Err(crate::inputs::not_a_file(path));
    }
    let file = File::open(path).map_err(|e| Error::at(path, Stage::Open, ErrorKind::Io(e)))?;
    let len = file
        .metadata()
        .map_err(|e| Error::at(path, Stage::Open, ErrorKind::Io(e)))?
        .len();
    check_input_size(len, limits).map_err(|e| e.with_path(path))?;
    let hint = path.extension().and_then(|e| e.to_str());
    decode_guarded(file, hint, target_rate, limits).map_err(|e| e.with_path(path))
}

/// Decodes an encoded file held in memory (for example the body of an upload)
/// to mono audio at `target_rate` Hz, with the default [`DecodeLimits`].
///
/// `ext_hint` is the file's extension without the dot (`"mp3"`, `"m4a"`), if
/// known; the format is recognised by content either way.
///
/// # Errors
///
/// As [`decode_file`], without a file name.
pub fn decode_bytes(bytes: &[u8], ext_hint: Option<&str>, target_rate: u32) -> Result<Audio> {
    decode_bytes_with_limits(bytes, ext_hint, target_rate, &DecodeLimits::default())
}

/// [`decode_bytes`] with explicit resource limits.
///
/// # Errors
///
/// As [`decode_bytes`]; [`ErrorKind::Limit`] when `bytes` is longer than
/// `limits.max_bytes` or the audio longer than `limits.max_duration_s`.
pub fn decode_bytes_with_limits(
    bytes: &[u8],
    ext_hint: Option<&str>,
    target_rate: u32,
    limits: &DecodeLimits,
) -> Result<Audio> {
    check_target_rate(target_rate)?;
    check_input_size(bytes.len() as u64, limits)?;
    decode_guarded(Cursor::new(bytes), ext_hint, target_rate, limits)
}

/// Down-mixes and resamples interleaved samples held in memory, exactly as a
/// decoded file is: the mean of the channels (their difference where the
/// mean cancels, see the [module documentation](self)), resampled once from
/// `sample_rate` to `target_rate`.
///
/// `samples` holds `channels` samples per frame, frame after frame.
///
/// # Errors
///
/// [`ErrorKind::Empty`] when `samples` is empty; [`ErrorKind::InvalidInput`]
/// when `channels` is 0, a rate is outside
/// [`MIN_SAMPLE_RATE`]`..=`[`MAX_SAMPLE_RATE`], `samples` is not a whole number
/// of frames, or a sample is NaN, infinite or beyond [`MAX_SAMPLE_MAGNITUDE`]. All at [`Stage::Resample`].
pub fn from_interleaved(
    samples: &[f32],
    sample_rate: u32,
    channels: u16,
    target_rate: u32,
) -> Result<Audio> {
    let invalid = |msg: String| Error::new(Stage::Resample, ErrorKind::InvalidInput(msg));
    if channels == 0 {
        return Err(invalid("channel count is 0".into()));
    }
    check_rate("sample rate", sample_rate).map_err(invalid)?;
    check_target_rate(target_rate)?;
    if samples.is_empty() {
        return Err(Error::new(
            Stage::Resample,
            ErrorKind::Empty("no samples were given".into()),
        ));
    }
    let ch = usize::from(channels);
    if !samples.len().is_multiple_of(ch) {
        return Err(invalid(format!(
            "{} samples are not a whole number of {ch}-channel frames",
            samples.len()
        )));
    }
    if let Some(i) = samples.iter().position(|&x| !usable(x)) {
        return Err(invalid(format!(
            "sample {i} (frame {}, channel {}) is {}; samples must be finite and within ±{MAX_SAMPLE_MAGNITUDE}",
            i / ch,
            i % ch,
            samples[i]
        )));
    }
    let frames = (samples.len() / ch) as u64;
    let mut sink = MonoSink::new(sample_rate, target_rate, u64::MAX, Some(frames))?;
    sink.push_interleaved(samples, ch)?;
    let (samples, cancelled_s) = sink.finish()?;
    Ok(Audio {
        samples,
        sample_rate: target_rate,
        source: SourceInfo {
            sample_rate,
            channels,
            duration_s: frames as f64 / f64::from(sample_rate),
            cancelled_s,
        },
    })
}

/// Checks interleaved samples held in memory against `limits` before any
/// work is done on them: their size (4 bytes a sample) and their duration.
///
/// # Errors
///
/// [`ErrorKind::Limit`] when a limit is exceeded, [`ErrorKind::InvalidInput`]
/// when `channels` or `sample_rate` is 0. At [`Stage::Resample`].
pub fn check_interleaved_limits(
    samples: &[f32],
    sample_rate: u32,
    channels: u16,
    limits: &DecodeLimits,
) -> Result<()> {
    if channels == 0 || sample_rate == 0 {
        return Err(Error::new(
            Stage::Resample,
            ErrorKind::InvalidInput(
                "the channel count and the sample rate must be positive".into(),
            ),
        ));
    }
    let bytes = samples.len() as u64 * 4;
    let secs = samples.len() as f64 / f64::from(channels) / f64::from(sample_rate);
    let msg = if bytes > limits.max_bytes {
        format!(
            "the samples take {bytes} bytes, more than the limit of {} bytes",
            limits.max_bytes
        )
    } else if secs > limits.max_duration_s {
        format!(
            "the audio is {secs:.1} s long, more than the limit of {} s",
            limits.max_duration_s
        )
    } else {
        return Ok(());
    };
    Err(Error::new(Stage::Resample, ErrorKind::Limit(msg)))
}

// ---------------------------------------------------------------------------
// Checks shared by the entry points.

fn check_rate(what: &str, rate: u32) -> std::result::Result<(), String> {
    if (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(format!(
            "{what} {rate} Hz is outside {MIN_SAMPLE_RATE}..={MAX_SAMPLE_RATE} Hz"
        ))
    }
}

fn check_target_rate(rate: u32) -> Result<()> {
    check_rate("target sample rate", rate)
        .map_err(|m| Error::new(Stage::Resample, ErrorKind::InvalidInput(m)))
}

fn check_input_size(len: u64, limits: &DecodeLimits) -> Result<()> {
    if len == 0 {
        return Err(Error::new(
            Stage::Open,
            ErrorKind::Empty("the input is empty (0 bytes)".into()),
        ));
    }
    if len > limits.max_bytes {
        return Err(Error::new(
            Stage::Open,
            ErrorKind::Limit(format!(
                "the input is {len} bytes, more than the limit of {} bytes",
                limits.max_bytes
            )),
        ));
    }
    Ok(())
}

/// The most source frames accepted at `rate` under `limits`.
fn max_frames(limits: &DecodeLimits, rate: u32) -> u64 {
    let f = limits.max_duration_s.max(0.0) * f64::from(rate);
    if f >= u64::MAX as f64 {
        u64::MAX
    } else {
        f.floor() as u64
    }
}

// ---------------------------------------------------------------------------
// Container dispatch.

/// Runs [`decode_source`], turning a panic inside a third-party decoder (on
/// damaged data) into an error instead of unwinding into the caller.
fn decode_guarded<R: Reopen>(
    src: R,
    hint: Option<&str>,
    target_rate: u32,
    limits: &DecodeLimits,
) -> Result<Audio> {
    match catch_unwind(AssertUnwindSafe(|| {
        decode_source(src, hint, target_rate, limits)
    })) {
        Ok(result) => result,
        Err(_) => Err(Error::new(
            Stage::Decode,
            ErrorKind::Corrupt("the decoder failed on damaged data".into()),
        )),
    }
}

fn decode_source<R: Reopen>(
    src: R,
    hint: Option<&str>,
    target_rate: u32,
    limits: &DecodeLimits,
) -> Result<Audio> {
    let open_io = |e| Error::new(Stage::Open, ErrorKind::Io(e));
    let len = src.byte_len().unwrap_or(u64::MAX);
    let mut src = Window::new(src, 0, len).map_err(open_io)?;
    let start = skip_id3v2(&mut src).map_err(open_io)?;
    if start >= len {
        return Err(Error::new(
            Stage::Open,
            ErrorKind::Empty(format!(
                "the file holds an ID3 tag of {start} bytes and no audio after it"
            )),
        ));
    }
    let mut src = Window::new(src.inner, start, len - start).map_err(open_io)?;
    let mut head = [0u8; 512];
    let n = read_up_to(&mut src, &mut head).map_err(open_io)?;
    src.seek(SeekFrom::Start(0)).map_err(open_io)?;
    let head = &head[..n];
    let mut sink = Sink::new(target_rate, limits);
    if head.starts_with(b"OggS") {
        decode_ogg(src, hint, &mut sink)?;
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        match wave_codec(&mut src).map_err(open_io)? {
            WaveCodec::Mpeg(data_start, data_len) => {
                let data =
                    Window::new(src.inner, src.start + data_start, data_len).map_err(open_io)?;
                decode_symphonia(data, Some("mp3"), &mut sink)?;
            }
            WaveCodec::Unsupported(what) => {
                return Err(Error::new(
                    Stage::Open,
                    ErrorKind::Unsupported(format!(
                        "a WAV file holding {what}, which Refrain has no decoder for: {CONVERT}"
                    )),
                ))
            }
            WaveCodec::Symphonia => {
                src.seek(SeekFrom::Start(0)).map_err(open_io)?;
                decode_symphonia(src, hint, &mut sink)?;
            }
        }
    } else if head.len() >= 12 && &head[..4] == b"FORM" && &head[8..12] == b"AIFC" {
        if let Some(what) = aifc_unsupported(&mut src).map_err(open_io)? {
            return Err(Error::new(
                Stage::Open,
                ErrorKind::Unsupported(format!(
                    "an AIFF-C file holding {what}, which Refrain has no decoder for: {CONVERT}"
                )),
            ));
        }
        src.seek(SeekFrom::Start(0)).map_err(open_io)?;
        decode_symphonia(src, hint, &mut sink)?;
    } else {
        decode_symphonia(src, hint, &mut sink)?;
    }
    sink.into_audio()
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn read_up_to<R: Read>(src: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// True when `head` starts with an Ogg page whose first packet is an `OpusHead`.
fn is_ogg_opus(head: &[u8]) -> bool {
    if head.len() < 27 || &head[..4] != b"OggS" {
        return false;
    }
    let payload = 27 + usize::from(head[26]);
    head.get(payload..payload + 8) == Some(b"OpusHead".as_slice())
}

/// A byte range `start..start + len` of a source, presented as a whole
/// source (positions relative to `start`).
struct Window<R> {
    inner: R,
    start: u64,
    len: u64,
    pos: u64,
}

impl<R: Read + Seek> Window<R> {
    /// The range, positioned at its start.
    fn new(mut inner: R, start: u64, len: u64) -> std::io::Result<Self> {
        inner.seek(SeekFrom::Start(start))?;
        Ok(Window {
            inner,
            start,
            len,
            pos: 0,
        })
    }
}

impl<R: Read + Seek> Read for Window<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let got = self.inner.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<R: Read + Seek> Seek for Window<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => {
                if self.len == u64::MAX {
                    // an unknown length: the inner source's end
                    let end = self.inner.seek(SeekFrom::End(d))?;
                    Some(end.saturating_sub(self.start))
                } else {
                    self.len.checked_add_signed(d)
                }
            }
        };
        let target = target.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the stream",
            )
        })?;
        let target = target.min(self.len);
        self.inner
            .seek(SeekFrom::Start(self.start.saturating_add(target)))?;
        self.pos = target;
        Ok(target)
    }
}

impl<R: MediaSource> MediaSource for Window<R> {
    fn is_seekable(&self) -> bool {
        self.inner.is_seekable()
    }

    fn byte_len(&self) -> Option<u64> {
        (self.len != u64::MAX).then_some(self.len)
    }
}

impl<R: Reopen> Reopen for Window<R> {
    fn reopen(&self) -> std::io::Result<Self> {
        Window::new(self.inner.reopen()?, self.start, self.len)
    }
}

/// The size of the ID3v2 tags at the start of `src`, header (and footer)
/// included: 0 when there is none. Several tags in a row are all skipped.
fn skip_id3v2<R: Read + Seek>(src: &mut Window<R>) -> std::io::Result<u64> {
    let mut at = 0u64;
    // a bound on chained tags, so a file of nothing but tag headers ends
    for _ in 0..64 {
        src.seek(SeekFrom::Start(at))?;
        let mut h = [0u8; 10];
        if read_up_to(src, &mut h)? < 10 || &h[..3] != b"ID3" || h[3] == 0xff || h[4] == 0xff {
            break;
        }
        // the size is syncsafe: four 7-bit bytes
        if h[6..10].iter().any(|&b| b & 0x80 != 0) {
            break;
        }
        let size = h[6..10]
            .iter()
            .fold(0u64, |acc, &b| (acc << 7) | u64::from(b));
        // a v2.4 tag with the footer flag carries 10 more bytes
        let footer = if h[3] >= 4 && h[5] & 0x10 != 0 { 10 } else { 0 };
        at += 10 + size + footer;
    }
    src.seek(SeekFrom::Start(0))?;
    Ok(at)
}

/// What a WAV file's format tag asks for.
enum WaveCodec {
    /// MPEG audio (format 0x0055, MP3): the `data` chunk's start and length.
    Mpeg(u64, u64),
    /// A codec without a decoder, named.
    Unsupported(String),
    /// Everything else: symphonia's WAV reader decides.
    Symphonia,
}

/// Format tags of codecs that are found in WAV files and that Refrain has no
/// decoder for (mmreg.h), with their names.
const WAVE_UNSUPPORTED: &[(u16, &str)] = &[
    (0x0005, "IBM CVSD"),
    (0x0010, "OKI ADPCM"),
    (0x0012, "MediaSpace ADPCM"),
    (0x0014, "G.723 ADPCM"),
    (0x0020, "Yamaha ADPCM"),
    (0x0022, "DSP Group TrueSpeech"),
    (0x0030, "Dolby AC-2"),
    (0x0031, "GSM 6.10"),
    (0x0032, "MSN Audio (GSM 6.10)"),
    (0x0040, "G.721 ADPCM"),
    (0x0042, "G.723.1"),
    (0x0045, "G.726 ADPCM"),
    (0x0050, "MPEG-1 Layer I/II audio"),
    (0x0064, "G.726 ADPCM"),
    (0x0065, "G.722 ADPCM"),
    (0x0092, "Dolby AC-3 (S/PDIF)"),
    (0x00ff, "AAC"),
    (0x0160, "Windows Media Audio 1"),
    (0x0161, "Windows Media Audio 2"),
    (0x0162, "Windows Media Audio Pro"),
    (0x0163, "Windows Media Audio Lossless"),
    (0x0200, "Creative ADPCM"),
    (0x0270, "Sony ATRAC3"),
    (0x1600, "AAC (ADTS)"),
    (0x1610, "HE-AAC"),
    (0x2000, "Dolby AC-3"),
    (0x2001, "DTS"),
    (0x674f, "Ogg Vorbis"),
    (0x6750, "Ogg Vorbis"),
    (0x6751, "Ogg Vorbis"),
    (0x676f, "Ogg Vorbis"),
    (0x6770, "Ogg Vorbis"),
    (0x6771, "Ogg Vorbis"),
    (0x704f, "Opus"),
    (0xf1ac, "FLAC"),
];

/// Format tags symphonia's WAV reader decodes.
const WAVE_DECODED: &[u16] = &[0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011];

/// Walks a WAV file's chunks (at most the first 64) for its format tag (the
/// sub-format's, for `WAVE_FORMAT_EXTENSIBLE`) and, for MPEG audio, where
/// its `data` chunk is. Anything it cannot make sense of is left to
/// symphonia, which says what is wrong.
fn wave_codec<R: Read + Seek>(src: &mut Window<R>) -> std::io::Result<WaveCodec> {
    let mut at = 12u64;
    let mut tag: Option<u16> = None;
    for _ in 0..64 {
        src.seek(SeekFrom::Start(at))?;
        let mut h = [0u8; 8];
        if read_up_to(src, &mut h)? < 8 {
            break;
        }
        let size = u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
        match &h[..4] {
            b"fmt " => {
                let mut f = [0u8; 40];
                let n = read_up_to(src, &mut f)?.min(size as usize);
                if n < 16 {
                    return Ok(WaveCodec::Symphonia);
                }
                let mut t = u16::from_le_bytes([f[0], f[1]]);
                if t == 0xfffe && n >= 26 {
                    // the first two bytes of the sub-format GUID
                    t = u16::from_le_bytes([f[24], f[25]]);
                }
                if WAVE_DECODED.contains(&t) {
                    return Ok(WaveCodec::Symphonia);
                }
                if let Some((_, name)) = WAVE_UNSUPPORTED.iter().find(|(k, _)| *k == t) {
                    return Ok(WaveCodec::Unsupported(format!("{name} (format 0x{t:04x})")));
                }
                if t != 0x0055 {
                    return Ok(WaveCodec::Unsupported(format!("audio in format 0x{t:04x}")));
                }
                tag = Some(t);
            }
            b"data" if tag.is_some() => {
                // a streamed WAV may give 0 or 0xFFFFFFFF: up to the end
                let left = src.len.saturating_sub(at + 8);
                let len = if size == 0 || size == 0xffff_ffff {
                    left
                } else {
                    size.min(left)
                };
                return Ok(WaveCodec::Mpeg(at + 8, len));
            }
            _ => {}
        }
        // chunks are padded to an even size
        at += 8 + size + (size & 1);
    }
    Ok(match tag {
        Some(_) => WaveCodec::Unsupported("MP3 without a data chunk".into()),
        None => WaveCodec::Symphonia,
    })
}

/// AIFF-C compression types symphonia decodes.
const AIFC_DECODED: &[&[u8; 4]] = &[
    b"none", b"NONE", b"sowt", b"SOWT", b"twos", b"TWOS", b"fl32", b"FL32", b"fl64", b"FL64",
    b"in24", b"IN24", b"in32", b"IN32", b"23ni", b"23NI", b"alaw", b"ALAW", b"ulaw", b"ULAW",
    b"raw ", b"RAW ",
];

/// AIFF-C compression types without a decoder, with their names.
const AIFC_NAMES: &[(&[u8; 4], &str)] = &[
    (b"ima4", "IMA 4:1 ADPCM"),
    (b"GSM ", "GSM 6.10"),
    (b"MAC3", "MACE 3:1"),
    (b"MAC6", "MACE 6:1"),
    (b"Qclp", "QUALCOMM PureVoice"),
    (b"QDMC", "QDesign Music"),
    (b"QDM2", "QDesign Music 2"),
    (b"G722", "G.722"),
    (b"G726", "G.726"),
    (b"G728", "G.728"),
];

/// The named compression of an AIFF-C file when Refrain has no decoder for
/// it; `None` when it has, or when the `COMM` chunk is not where it should
/// be (symphonia then says what is wrong).
fn aifc_unsupported<R: Read + Seek>(src: &mut Window<R>) -> std::io::Result<Option<String>> {
    let mut at = 12u64;
    for _ in 0..64 {
        src.seek(SeekFrom::Start(at))?;
        let mut h = [0u8; 8];
        if read_up_to(src, &mut h)? < 8 {
            return Ok(None);
        }
        let size = u64::from(u32::from_be_bytes([h[4], h[5], h[6], h[7]]));
        if &h[..4] == b"COMM" {
            let mut c = [0u8; 22];
            if read_up_to(src, &mut c)? < 22 || size < 22 {
                return Ok(None);
            }
            let kind: [u8; 4] = [c[18], c[19], c[20], c[21]];
            if AIFC_DECODED.iter().any(|k| **k == kind) {
                return Ok(None);
            }
            let code = String::from_utf8_lossy(&kind).into_owned();
            return Ok(Some(match AIFC_NAMES.iter().find(|(k, _)| **k == kind) {
                Some((_, name)) => format!("{name} (compression '{code}')"),
                None => format!("audio in compression '{code}'"),
            }));
        }
        at += 8 + size + (size & 1);
    }
    Ok(None)
}

/// Decodes an Ogg stream, link after link when it is chained: each link
/// (a group of logical streams that begins with their first pages) goes to
/// the decoder its first packet calls for.
fn decode_ogg<R: Reopen>(mut src: Window<R>, hint: Option<&str>, sink: &mut Sink) -> Result<()> {
    let open_io = |e| Error::new(Stage::Open, ErrorKind::Io(e));
    let links = ogg_links(&mut src).map_err(open_io)?;
    let n = links.len();
    for (i, &(start, len)) in links.iter().enumerate() {
        let inner = src.inner.reopen().map_err(open_io)?;
        let mut link = Window::new(inner, src.start + start, len).map_err(open_io)?;
        let mut head = [0u8; 512];
        let got = read_up_to(&mut link, &mut head).map_err(open_io)?;
        link.seek(SeekFrom::Start(0)).map_err(open_io)?;
        let r = if is_ogg_opus(&head[..got]) {
            decode_opus(BufReader::with_capacity(1 << 16, link), sink)
        } else {
            decode_symphonia(link, hint, sink)
        };
        match r {
            Ok(()) => {}
            // the last link cut short inside its headers: the file was cut
            Err(e) if i > 0 && i + 1 == n && is_cut_headers(&e) => break,
            Err(e) if n > 1 => return Err(in_link(e, i, n)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether `e` says the input ends inside a stream's headers.
fn is_cut_headers(e: &Error) -> bool {
    e.stage == Stage::Open && matches!(&e.kind, ErrorKind::Corrupt(m) if m.contains("ends inside"))
}

/// `e`, its message saying which link of a chained file it is about.
fn in_link(mut e: Error, i: usize, n: usize) -> Error {
    let at = format!("Ogg link {} of {n}: ", i + 1);
    match &mut e.kind {
        ErrorKind::Unsupported(m)
        | ErrorKind::Corrupt(m)
        | ErrorKind::Empty(m)
        | ErrorKind::Limit(m)
        | ErrorKind::InvalidInput(m) => m.insert_str(0, &at),
        _ => {}
    }
    e
}

/// Codec identification packets that start a link of a chained Ogg file.
const OGG_CODEC_HEADERS: &[&[u8]] = &[b"\x01vorbis", b"OpusHead", b"\x7fFLAC"];

/// The links of an Ogg stream as (start, length) byte ranges: a new link
/// starts at a first page (BOS) of a known codec that follows pages that
/// were not first pages. A single link is the whole stream. Damage between
/// pages is skipped by searching for the next page's capture pattern.
fn ogg_links<R: Read + Seek>(src: &mut Window<R>) -> std::io::Result<Vec<(u64, u64)>> {
    src.seek(SeekFrom::Start(0))?;
    let mut r = BufReader::with_capacity(1 << 16, &mut *src);
    let mut starts = vec![0u64];
    let mut pos = 0u64;
    let mut in_body = false; // a page that was not a first page was seen
    let mut h = [0u8; 27];
    let mut lacing = [0u8; 255];
    while read_up_to(&mut r, &mut h)? == 27 {
        if &h[..4] != b"OggS" {
            // resynchronise on the next capture pattern
            let skip = h[1..]
                .windows(4)
                .position(|w| w == b"OggS")
                .map_or(24, |p| p + 1);
            pos += skip as u64;
            r.seek_relative(skip as i64 - 27)?;
            continue;
        }
        let nseg = usize::from(h[26]);
        if read_up_to(&mut r, &mut lacing[..nseg])? < nseg {
            break;
        }
        let body: u64 = lacing[..nseg].iter().map(|&l| u64::from(l)).sum();
        let first = h[5] & 0x02 != 0;
        if first && in_body {
            let mut id = [0u8; 8];
            let got = read_up_to(&mut r, &mut id[..body.min(8) as usize])?;
            if OGG_CODEC_HEADERS.iter().any(|c| id[..got].starts_with(c)) {
                starts.push(pos);
                in_body = false;
            }
            r.seek_relative(i64::try_from(body).unwrap_or(i64::MAX) - got as i64)?;
        } else {
            in_body |= !first;
            r.seek_relative(i64::try_from(body).unwrap_or(i64::MAX))?;
        }
        pos += 27 + nseg as u64 + body;
    }
    drop(r);
    let end = if src.len == u64::MAX { pos } else { src.len };
    let mut links = Vec::with_capacity(starts.len());
    for (i, &s) in starts.iter().enumerate() {
        let e = starts.get(i + 1).copied().unwrap_or(end);
        links.push((s, e.saturating_sub(s)));
    }
    src.seek(SeekFrom::Start(0))?;
    Ok(links)
}

// ---------------------------------------------------------------------------
// symphonia: WAV, AIFF, FLAC, MP3, Ogg Vorbis, AAC and ALAC in M4A.

/// A source that can be read again from the start.
trait Reopen: MediaSource + Sized {
    /// A fresh handle on the same data, positioned at its start.
    fn reopen(&self) -> std::io::Result<Self>;
}

impl Reopen for File {
    fn reopen(&self) -> std::io::Result<Self> {
        let mut f = self.try_clone()?;
        f.seek(SeekFrom::Start(0))?;
        Ok(f)
    }
}

impl Reopen for Cursor<&[u8]> {
    fn reopen(&self) -> std::io::Result<Self> {
        Ok(Cursor::new(*self.get_ref()))
    }
}

fn probe<'s>(
    src: Box<dyn MediaSource + 's>,
    hint: Option<&str>,
) -> Result<Box<dyn FormatReader + 's>, SymError> {
    let mss = MediaSourceStream::new(src, Default::default());
    let mut probe_hint = Hint::new();
    if let Some(ext) = hint {
        probe_hint.with_extension(&ext.to_ascii_lowercase());
    }
    symphonia::default::get_probe().probe(
        &probe_hint,
        mss,
        FormatOptions::default(),
        MetadataOptions::default(),
    )
}

fn decode_symphonia<R: Reopen>(src: R, hint: Option<&str>, sink: &mut Sink) -> Result<()> {
    let retry = src.reopen();
    let mut reader = match probe(Box::new(src), hint) {
        Ok(r) => r,
        // On a seekable source, the Ogg and FLAC readers look at the end of
        // the stream when they open, and fail when it is cut short. Read as a
        // stream instead, which decodes what there is.
        Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            let again = retry.map_err(|e| Error::new(Stage::Open, ErrorKind::Io(e)))?;
            probe(Box::new(ReadOnlySource::new(again)), hint).map_err(probe_error)?
        }
        Err(e) => return Err(probe_error(e)),
    };
    let (track_id, num_frames, decoder) = audio_track(reader.as_ref())?;
    run_symphonia(reader.as_mut(), decoder, track_id, num_frames, sink)
}

/// The default audio track's id, length and a decoder for it.
fn audio_track(reader: &dyn FormatReader) -> Result<(u32, Option<u64>, Box<dyn AudioDecoder>)> {
    let track = match reader.default_track(TrackType::Audio) {
        Some(t) => t,
        None => {
            let kind = match reader.first_track(TrackType::Audio) {
                Some(_) => ErrorKind::Unsupported(format!(
                    "the audio track's codec is not supported: {CONVERT}"
                )),
                None => ErrorKind::Empty("the container has no audio track".into()),
            };
            return Err(Error::new(Stage::Open, kind));
        }
    };
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| {
            Error::new(
                Stage::Open,
                ErrorKind::Empty("the container has no audio track".into()),
            )
        })?;
    let decoder = make_decoder(params)?;
    Ok((track.id, track.num_frames, decoder))
}

/// A decoder for `params`, or an error naming the codec.
fn make_decoder(params: &AudioCodecParameters) -> Result<Box<dyn AudioDecoder>> {
    let unsupported = |what: String| Error::new(Stage::Open, ErrorKind::Unsupported(what));
    if params.codec == CODEC_ID_NULL_AUDIO {
        return Err(unsupported(format!(
            "the audio track's codec is not one Refrain knows: {CONVERT}"
        )));
    }
    if params.codec == codecs::CODEC_ID_OPUS {
        return Err(unsupported(
            "Opus is decoded in Ogg (.opus) files only: remux it with \
             `ffmpeg -i IN -c:a copy OUT.opus`"
                .into(),
        ));
    }
    symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| match e {
            SymError::Unsupported(what) => unsupported(match codec_name(params.codec) {
                Some(name) => {
                    format!("the audio is {name}, which Refrain has no decoder for: {CONVERT}")
                }
                None => format!("audio codec: {what}: {CONVERT}"),
            }),
            other => Error::new(Stage::Open, ErrorKind::Corrupt(other.to_string())),
        })
}

/// The name of a codec symphonia knows of but Refrain has no decoder for.
fn codec_name(id: AudioCodecId) -> Option<&'static str> {
    use codecs::*;
    let names: &[(AudioCodecId, &str)] = &[
        (CODEC_ID_AC3, "Dolby AC-3"),
        (CODEC_ID_EAC3, "Dolby E-AC-3"),
        (CODEC_ID_AC4, "Dolby AC-4"),
        (CODEC_ID_TRUEHD, "Dolby TrueHD"),
        (CODEC_ID_DCA, "DTS"),
        (CODEC_ID_WMA, "Windows Media Audio"),
        (CODEC_ID_SPEEX, "Speex"),
        (CODEC_ID_MUSEPACK, "Musepack"),
        (CODEC_ID_MP1, "MPEG-1 Layer I"),
        (CODEC_ID_MP2, "MPEG-1 Layer II"),
        (CODEC_ID_ATRAC1, "ATRAC"),
        (CODEC_ID_ATRAC3, "ATRAC3"),
        (CODEC_ID_ATRAC3PLUS, "ATRAC3plus"),
        (CODEC_ID_ATRAC9, "ATRAC9"),
        (CODEC_ID_WAVPACK, "WavPack"),
        (CODEC_ID_MONKEYS_AUDIO, "Monkey's Audio"),
        (CODEC_ID_TTA, "TTA"),
        (CODEC_ID_COOK, "RealAudio Cook"),
        (CODEC_ID_SBC, "SBC"),
        (CODEC_ID_APTX, "aptX"),
        (CODEC_ID_LDAC, "LDAC"),
    ];
    names.iter().find(|(c, _)| *c == id).map(|(_, n)| *n)
}

fn probe_error(e: SymError) -> Error {
    let kind = match e {
        // The probe scanned the start of the input without finding a container.
        SymError::Unsupported(what) if what.starts_with("core (probe)") => ErrorKind::Unsupported(
            "the format was not recognised (Refrain reads WAV, AIFF, FLAC, MP3, Ogg Vorbis, \
             Opus, AAC and Apple Lossless); if it is audio, convert it to FLAC or PCM WAV \
             (for example `ffmpeg -i IN -c:a flac OUT.flac`)"
                .into(),
        ),
        SymError::Unsupported(what) => {
            ErrorKind::Unsupported(format!("container: {what}: {CONVERT}"))
        }
        SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ErrorKind::Corrupt("the input ends inside the container's headers".into())
        }
        SymError::IoError(io) => ErrorKind::Io(io),
        SymError::LimitError(what) => ErrorKind::Limit(format!("container: {what}")),
        other => ErrorKind::Corrupt(format!("container: {other}")),
    };
    Error::new(Stage::Open, kind)
}

/// The packet loop: decode, down-mix, resample.
fn run_symphonia(
    reader: &mut dyn FormatReader,
    mut decoder: Box<dyn AudioDecoder>,
    mut track_id: u32,
    mut num_frames: Option<u64>,
    sink: &mut Sink,
) -> Result<()> {
    let decode_err = |kind| Error::new(Stage::Decode, kind);
    let mut interleaved: Vec<f32> = Vec::new();
    let mut counts = PacketCounts::default();
    let mut consecutive = 0u32;

    loop {
        let packet = match reader.next_packet() {
            Ok(Some(p)) => {
                consecutive = 0;
                p
            }
            Ok(None) => break,
            // A file cut short: keep what was decoded.
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::IoError(e)) => return Err(decode_err(ErrorKind::Io(e))),
            // A chained stream (a new track list): go on with its audio track.
            Err(SymError::ResetRequired) => {
                counts.check()?;
                counts = PacketCounts::default();
                let (id, frames, d) = audio_track(&*reader)?;
                (track_id, num_frames, decoder) = (id, frames, d);
                continue;
            }
            Err(SymError::Unsupported(what)) => {
                return Err(decode_err(ErrorKind::Unsupported(format!(
                    "{what}: {CONVERT}"
                ))))
            }
            Err(SymError::LimitError(what)) => {
                return Err(decode_err(ErrorKind::Limit(format!("container: {what}"))))
            }
            Err(_) => {
                counts.failed += 1;
                consecutive += 1;
                if consecutive >= MAX_CONSECUTIVE_ERRORS {
                    break;
                }
                continue;
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            // A packet using a feature the decoder lacks: skipped like a damaged
            // one, and reported if nothing else decodes.
            Err(SymError::Unsupported(what)) => {
                counts.failed += 1;
                counts.unsupported = Some(what);
                continue;
            }
            Err(SymError::LimitError(what)) => {
                return Err(decode_err(ErrorKind::Limit(format!("decoder: {what}"))))
            }
            Err(SymError::ResetRequired) => {
                decoder.reset();
                counts.failed += 1;
                continue;
            }
            Err(_) => {
                counts.failed += 1;
                continue;
            }
        };
        let rate = buf.spec().rate();
        let ch = buf.spec().channels().count();
        if ch == 0 {
            counts.failed += 1;
            continue;
        }
        counts.ok += 1;
        if buf.frames() == 0 {
            continue;
        }
        buf.copy_to_vec_interleaved(&mut interleaved);
        sink.push(rate, ch, &interleaved, num_frames.take())?;
    }
    counts.check()
}

/// Packets decoded and packets lost to errors.
#[derive(Default)]
struct PacketCounts {
    ok: u64,
    failed: u64,
    /// The decoder's reason, when a packet failed for an unsupported feature.
    unsupported: Option<&'static str>,
}

impl PacketCounts {
    /// Fails when nothing decoded or when more than half the packets failed.
    fn check(&self) -> Result<()> {
        let total = self.ok + self.failed;
        let kind = if total == 0 {
            ErrorKind::Empty("the stream holds no audio packets".into())
        } else if let (0, Some(what)) = (self.ok, self.unsupported) {
            ErrorKind::Unsupported(format!("audio codec: {what}: {CONVERT}"))
        } else if self.ok == 0 {
            ErrorKind::Corrupt(format!("none of {total} packets could be decoded"))
        } else if self.failed > self.ok {
            ErrorKind::Corrupt(format!(
                "{} of {total} packets could not be decoded",
                self.failed
            ))
        } else {
            return Ok(());
        };
        Err(Error::new(Stage::Decode, kind))
    }
}

// ---------------------------------------------------------------------------
// Ogg Opus.

enum OpusDec {
    Single(Box<OpusDecoder>),
    Multi(OpusMSDecoder),
}

impl OpusDec {
    fn decode(&mut self, packet: &[u8], out: &mut [f32]) -> opus_pure::Result<usize> {
        let max = opus_pure::MAX_PACKET_SAMPLES;
        match self {
            OpusDec::Single(d) => d.decode(packet, max, out),
            OpusDec::Multi(d) => d.decode(packet, max, out),
        }
    }
}

fn opus_open_error(e: opus_pure::Error) -> Error {
    let kind = match e {
        opus_pure::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ErrorKind::Corrupt("Ogg Opus: the stream ends inside its headers".into())
        }
        opus_pure::Error::Io(io) => ErrorKind::Io(io),
        other => ErrorKind::Corrupt(format!("Ogg Opus: {other}")),
    };
    Error::new(Stage::Open, kind)
}

fn decode_opus<R: Read>(src: R, sink: &mut Sink) -> Result<()> {
    let mut reader = OggOpusReader::new(src).map_err(opus_open_error)?;
    let head = reader.head().clone();
    let channels = usize::from(head.channel_count);
    let unsupported = |what: String| Error::new(Stage::Open, ErrorKind::Unsupported(what));
    let mut decoder = if head.mapping_family == 0 {
        OpusDec::Single(Box::new(
            head.decoder(OPUS_RATE as i32).map_err(opus_open_error)?,
        ))
    } else {
        // Only the standard surround layouts (the ones libopus writes) are
        // decoded: the multistream decoder derives the layout from the family.
        let mut ms = OpusMSDecoder::new(OPUS_RATE as i32, channels, head.mapping_family)
            .map_err(|e| unsupported(format!("Opus channel mapping: {e}: {CONVERT}")))?;
        let layout = ms.layout();
        if layout.nb_streams != usize::from(head.stream_count)
            || layout.nb_coupled_streams != usize::from(head.coupled_count)
            || layout.mapping != head.channel_mapping
        {
            return Err(unsupported(format!(
                "Opus channel mapping family {} with a non-standard layout: {CONVERT}",
                head.mapping_family
            )));
        }
        for stream in ms.streams_mut() {
            stream.gain_q8 = i32::from(head.output_gain_q8);
        }
        OpusDec::Multi(ms)
    };
    let mut trim = Trim::new(&head, OPUS_RATE as i32, channels).map_err(opus_open_error)?;
    let mut block = vec![0.0f32; opus_pure::MAX_PACKET_SAMPLES * channels];
    let mut packet = OggPacket::default();
    let mut counts = PacketCounts::default();
    let mut consecutive = 0u32;

    loop {
        match reader.read_packet_into(&mut packet) {
            Ok(true) => consecutive = 0,
            Ok(false) => break,
            Err(opus_pure::Error::Io(e)) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
                return Err(Error::new(Stage::Decode, ErrorKind::Io(e)))
            }
            Err(_) => {
                // A damaged page (bad CRC, lost continuation) or a cut-off
                // stream: skip it; the reader resynchronises on the next page.
                counts.failed += 1;
                consecutive += 1;
                if consecutive >= MAX_CONSECUTIVE_ERRORS {
                    break;
                }
                continue;
            }
        }
        match decoder.decode(&packet.data, &mut block) {
            Ok(n) => {
                counts.ok += 1;
                let keep = trim.keep_range(&packet, n * channels);
                sink.push(OPUS_RATE, channels, &block[keep], None)?;
            }
            Err(_) => counts.failed += 1,
        }
    }
    counts.check()
}

// ---------------------------------------------------------------------------
// Down-mix and resample.

/// The resampler's output length the input frames map to, rounded.
fn expected_len(frames_in: u64, source_rate: u32, target_rate: u32) -> u64 {
    let num = u128::from(frames_in) * u128::from(target_rate) + u128::from(source_rate / 2);
    (num / u128::from(source_rate)) as u64
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A mono resampler and the fixed input chunk it consumes per call.
fn make_resampler(source_rate: u32, target_rate: u32) -> Result<(Box<dyn Resampler<f32>>, usize)> {
    let err = |e: rubato::ResamplerConstructionError| {
        Error::new(
            Stage::Resample,
            ErrorKind::InvalidInput(format!(
                "cannot resample {source_rate} Hz to {target_rate} Hz: {e}"
            )),
        )
    };
    let g = gcd(u64::from(source_rate), u64::from(target_rate));
    let min_in = (u64::from(source_rate) / g) as usize;
    let min_out = (u64::from(target_rate) / g) as usize;
    // The FFT resampler works on blocks that are whole multiples of the
    // reduced ratio. Aim for an output block of ≈1024 frames: the
    // anti-aliasing cutoff then sits at ≈98.7% of the lower Nyquist frequency
    // and the delay (half a block) stays short.
    // Both block sizes are kept even, so that the delay (half a block) is a
    // whole number of samples on both sides and can be trimmed exactly.
    let mut k = 1024usize.div_ceil(min_out).max(2);
    k += k % 2;
    while k > 2 && k * min_in > MAX_FFT_BLOCK {
        k -= 2;
    }
    if k * min_in <= MAX_FFT_BLOCK && k * min_out >= 128 {
        let fft_in = k * min_in;
        let r = Fft::<f32>::new_custom(
            source_rate as usize,
            target_rate as usize,
            fft_in,
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .map_err(err)?;
        let chunk = r.input_frames_next();
        Ok((Box::new(r), chunk))
    } else {
        // Exotic rate pairs (a source above 131 kHz sharing almost no divisor
        // with the target): a windowed-sinc resampler handles any ratio, at
        // the price of a delay that is trimmed only to the nearest sample.
        let params = SincInterpolationParameters {
            sinc_len: 256,
            f_cutoff: None,
            oversampling_factor: 256,
            interpolation: SincInterpolationType::Cubic,
            window: WindowFunction::BlackmanHarris2,
        };
        let ratio = f64::from(target_rate) / f64::from(source_rate);
        let r =
            Async::<f32>::new_sinc(ratio, 1.0, &params, 1024, 1, FixedAsync::Input).map_err(err)?;
        let chunk = r.input_frames_next();
        Ok((Box::new(r), chunk))
    }
}

/// The sum of the squares, in 8 independent lanes so that it vectorises
/// (a block's worth of samples: f32 is precise enough for a level ratio).
fn sum_of_squares(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            lanes[i] += c[i] * c[i];
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().map(|v| v * v).sum::<f32>()
}

/// Collects a decoded stream as mono at the target rate, one [`MonoSink`]
/// per run of packets at one source rate (a chained file's links may
/// differ), under one duration limit.
struct Sink {
    target_rate: u32,
    limits: DecodeLimits,
    current: Option<MonoSink>,
    /// Output of the finished runs.
    out: Vec<f32>,
    /// Seconds and cancelled seconds of the finished runs.
    done_s: f64,
    cancelled_s: f64,
    first_rate: u32,
    channels: usize,
}

impl Sink {
    fn new(target_rate: u32, limits: &DecodeLimits) -> Self {
        Sink {
            target_rate,
            limits: *limits,
            current: None,
            out: Vec::new(),
            done_s: 0.0,
            cancelled_s: 0.0,
            first_rate: 0,
            channels: 0,
        }
    }

    /// Adds interleaved samples (`channels` per frame) at `rate`.
    /// `frames_hint`, the stream's expected length, only reserves memory.
    fn push(
        &mut self,
        rate: u32,
        channels: usize,
        samples: &[f32],
        frames_hint: Option<u64>,
    ) -> Result<()> {
        if samples.len() < channels || channels == 0 {
            return Ok(());
        }
        if self.current.as_ref().is_none_or(|s| s.source_rate != rate) {
            check_rate("source sample rate", rate)
                .map_err(|m| Error::new(Stage::Decode, ErrorKind::Unsupported(m)))?;
            self.finish_run()?;
            let left = DecodeLimits {
                max_duration_s: self.limits.max_duration_s - self.done_s,
                ..self.limits
            };
            let mut s =
                MonoSink::new(rate, self.target_rate, max_frames(&left, rate), frames_hint)?;
            s.limit_s = self.limits.max_duration_s;
            if self.first_rate == 0 {
                self.first_rate = rate;
            }
            self.current = Some(s);
        }
        self.channels = self.channels.max(channels);
        self.current
            .as_mut()
            .expect("just set")
            .push_interleaved(samples, channels)
    }

    /// Finishes the current run, appending its output.
    fn finish_run(&mut self) -> Result<()> {
        let Some(s) = self.current.take() else {
            return Ok(());
        };
        self.done_s += s.frames_in as f64 / f64::from(s.source_rate);
        let (out, cancelled) = s.finish()?;
        self.cancelled_s += cancelled;
        if self.out.is_empty() {
            self.out = out;
        } else {
            self.out.extend_from_slice(&out);
        }
        Ok(())
    }

    fn into_audio(mut self) -> Result<Audio> {
        self.finish_run()?;
        if self.first_rate == 0 || self.done_s <= 0.0 {
            return Err(Error::new(
                Stage::Decode,
                ErrorKind::Empty("the stream holds no audio frames".into()),
            ));
        }
        Ok(Audio {
            samples: self.out,
            sample_rate: self.target_rate,
            source: SourceInfo {
                sample_rate: self.first_rate,
                channels: u16::try_from(self.channels).unwrap_or(u16::MAX),
                duration_s: self.done_s,
                cancelled_s: self.cancelled_s,
            },
        })
    }
}

/// Down-mixes interleaved packets to mono (block by block, see the [module
/// documentation](self)), feeds the resampler a chunk at a time, and
/// collects the output with the resampler delay trimmed.
struct MonoSink {
    source_rate: u32,
    target_rate: u32,
    /// `None` when the source is already at the target rate.
    resampler: Option<Box<dyn Resampler<f32>>>,
    /// Input frames per resampler call.
    chunk: usize,
    /// Mono input waiting for a full chunk (capacity `chunk`).
    pending: Vec<f32>,
    /// One call's resampler output.
    scratch: Vec<f32>,
    /// Output frames still to drop (the resampler delay).
    to_trim: usize,
    /// Source frames received.
    frames_in: u64,
    /// Source frames accepted before [`ErrorKind::Limit`].
    max_frames_in: u64,
    /// The duration limit named in that error, seconds.
    limit_s: f64,
    /// Interleaved frames waiting for a down-mix decision.
    block: Vec<f32>,
    /// Channels of the frames in `block`.
    block_channels: usize,
    /// One block down-mixed.
    mono: Vec<f32>,
    /// Source frames taken as the channel difference.
    cancelled_frames: u64,
    /// Output at the target rate.
    out: Vec<f32>,
}

impl MonoSink {
    /// `frames_hint` is the expected source length, if known, used only to
    /// reserve the output up front (capped by `max_frames_in`).
    fn new(
        source_rate: u32,
        target_rate: u32,
        max_frames_in: u64,
        frames_hint: Option<u64>,
    ) -> Result<Self> {
        let (resampler, chunk) = if source_rate == target_rate {
            (None, 0)
        } else {
            let (r, chunk) = make_resampler(source_rate, target_rate)?;
            (Some(r), chunk)
        };
        let (to_trim, scratch) = match &resampler {
            Some(r) => (r.output_delay(), vec![0.0; r.output_frames_max()]),
            None => (0, Vec::new()),
        };
        let mut out = Vec::new();
        if let Some(frames) = frames_hint {
            // Reserving is virtual memory until written; an inflated header
            // costs address space, not RAM, and the excess is returned at the end.
            let frames = frames.min(max_frames_in);
            let want = expected_len(frames, source_rate, target_rate).saturating_add(16);
            out.reserve_exact(usize::try_from(want).unwrap_or(0));
        }
        Ok(MonoSink {
            source_rate,
            target_rate,
            resampler,
            chunk,
            pending: Vec::with_capacity(chunk),
            scratch,
            to_trim,
            frames_in: 0,
            max_frames_in,
            limit_s: max_frames_in as f64 / f64::from(source_rate),
            block: Vec::new(),
            block_channels: 0,
            mono: Vec::new(),
            cancelled_frames: 0,
            out,
        })
    }

    /// Adds `samples` (`channels` per frame) as mono: the mean of the
    /// channels, or their difference where the mean cancels.
    fn push_interleaved(&mut self, samples: &[f32], channels: usize) -> Result<()> {
        let frames = samples.len() / channels;
        if frames == 0 {
            return Ok(());
        }
        let samples = &samples[..frames * channels];
        let first_frame = self.frames_in;
        self.frames_in += frames as u64;
        if self.frames_in > self.max_frames_in {
            return Err(Error::new(
                Stage::Decode,
                ErrorKind::Limit(format!(
                    "the audio is longer than the limit of {} s",
                    self.limit_s
                )),
            ));
        }
        // a branch-free pass first (it vectorises), the position only on failure
        let all_usable = samples.iter().fold(true, |ok, &x| ok & usable(x));
        if let Some(i) = (!all_usable)
            .then(|| samples.iter().position(|&x| !usable(x)))
            .flatten()
        {
            return Err(Error::new(
                Stage::Decode,
                ErrorKind::Corrupt(format!(
                    "source frame {} is {}, not a finite number within ±{MAX_SAMPLE_MAGNITUDE} \
                     (full scale is 1)",
                    first_frame + (i / channels) as u64,
                    samples[i]
                )),
            ));
        }
        if channels != self.block_channels {
            self.flush_block()?;
            self.block_channels = channels;
        }
        if channels == 1 {
            return self.push_mono(samples);
        }
        let mut rest = samples;
        while !rest.is_empty() {
            let room = DOWNMIX_BLOCK * channels - self.block.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.block.extend_from_slice(now);
            rest = later;
            if self.block.len() == DOWNMIX_BLOCK * channels {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    /// Down-mixes the frames in `block` and passes them on.
    fn flush_block(&mut self) -> Result<()> {
        let ch = self.block_channels;
        if self.block.is_empty() || ch == 0 {
            return Ok(());
        }
        let mut mono = std::mem::take(&mut self.mono);
        mono.clear();
        let scale = 1.0 / ch as f32;
        match ch {
            2 => mono.extend(self.block.chunks_exact(2).map(|f| (f[0] + f[1]) * 0.5)),
            _ => mono.extend(
                self.block
                    .chunks_exact(ch)
                    .map(|f| f.iter().sum::<f32>() * scale),
            ),
        }
        let n = mono.len();
        let p_mix = f64::from(sum_of_squares(&mono));
        let p_ch = f64::from(sum_of_squares(&self.block)) / ch as f64;
        if p_ch > CANCEL_FLOOR * n as f64 && p_mix < CANCEL_RATIO * p_ch {
            // the channels cancel: their difference (or the first channel)
            mono.clear();
            match ch {
                2 => mono.extend(self.block.chunks_exact(2).map(|f| (f[0] - f[1]) * 0.5)),
                _ => mono.extend(self.block.chunks_exact(ch).map(|f| f[0])),
            }
            self.cancelled_frames += n as u64;
        }
        self.block.clear();
        let r = self.push_mono(&mono);
        self.mono = mono;
        r
    }

    /// Feeds mono samples to the resampler (or the output, at the target
    /// rate).
    fn push_mono(&mut self, mut rest: &[f32]) -> Result<()> {
        while !rest.is_empty() {
            match self.resampler {
                None => {
                    self.out.extend_from_slice(rest);
                    return Ok(());
                }
                Some(_) => {
                    let room = self.chunk - self.pending.len();
                    let (now, later) = rest.split_at(room.min(rest.len()));
                    self.pending.extend_from_slice(now);
                    rest = later;
                    if self.pending.len() == self.chunk {
                        self.run_chunk(None)?;
                        self.pending.clear();
                    }
                }
            }
        }
        Ok(())
    }

    /// Resamples `pending` (a full chunk, or `partial` valid frames of it) and
    /// appends the output past the delay still to trim.
    fn run_chunk(&mut self, partial: Option<usize>) -> Result<()> {
        let Some(r) = self.resampler.as_mut() else {
            return Ok(());
        };
        let err = |e: String| Error::new(Stage::Resample, ErrorKind::InvalidInput(e));
        let input = InterleavedSlice::new(&self.pending[..], 1, self.pending.len())
            .map_err(|e| err(e.to_string()))?;
        let out_len = self.scratch.len();
        let mut output = InterleavedSlice::new_mut(&mut self.scratch[..], 1, out_len)
            .map_err(|e| err(e.to_string()))?;
        let indexing = partial.map(|n| Indexing::new().partial_len(n));
        let (_, produced) = r
            .process_into_buffer(&input, &mut output, indexing.as_ref())
            .map_err(|e| err(e.to_string()))?;
        let skip = self.to_trim.min(produced);
        self.to_trim -= skip;
        self.out.extend_from_slice(&self.scratch[skip..produced]);
        Ok(())
    }

    /// Flushes the down-mix and the resampler; returns exactly
    /// `round(frames_in * target_rate / source_rate)` output samples and the
    /// seconds taken as the channel difference.
    fn finish(mut self) -> Result<(Vec<f32>, f64)> {
        self.flush_block()?;
        let cancelled_s = self.cancelled_frames as f64 / f64::from(self.source_rate);
        let expected = expected_len(self.frames_in, self.source_rate, self.target_rate);
        let expected = usize::try_from(expected).map_err(|_| {
            Error::new(
                Stage::Resample,
                ErrorKind::Limit("the output does not fit in memory".into()),
            )
        })?;
        if self.resampler.is_some() {
            if !self.pending.is_empty() {
                let valid = self.pending.len();
                self.pending.resize(self.chunk, 0.0);
                self.run_chunk(Some(valid))?;
            }
            // Pump silence through until the delayed tail is out.
            self.pending.clear();
            self.pending.resize(self.chunk, 0.0);
            let mut guard = 0;
            while self.out.len() < expected {
                guard += 1;
                if guard > 10_000 {
                    return Err(Error::new(
                        Stage::Resample,
                        ErrorKind::InvalidInput("the resampler does not flush".into()),
                    ));
                }
                self.run_chunk(Some(0))?;
            }
        }
        self.out.truncate(expected);
        if self.out.capacity() > self.out.len() + self.out.len() / 8 + 1024 {
            self.out.shrink_to_fit();
        }
        Ok((self.out, cancelled_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const TARGET: u32 = 11_025;
    const TONE_RATE: u32 = 44_100;
    const TONE_FRAMES: usize = 44_100;
    const LOSSLESS_FRAMES: usize = 6_000;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/decode")
            .join(name)
    }

    /// One stereo frame of the fixtures' source signal (see make_fixtures.py).
    fn tone_sample(n: usize) -> (f64, f64) {
        use std::f64::consts::TAU;
        let t = n as f64 / f64::from(TONE_RATE);
        let g = 1.0f64.min(t / 0.01).min((1.0 - t) / 0.01);
        let am = 0.6 + 0.4 * (TAU * 3.0 * t).sin();
        let left = am
            * (0.25 * (TAU * 220.0 * t).sin()
                + 0.12 * (TAU * 440.0 * t + 0.3).sin()
                + 0.06 * (TAU * 660.0 * t + 1.1).sin());
        let right = 0.2 * (TAU * 330.0 * t + 0.5).sin()
            + 0.1 * (TAU * 990.0 * t + 0.7).sin()
            + 0.15 * (TAU * (500.0 * t + 750.0 * t * t)).sin();
        (g * left, g * right)
    }

    /// The first `frames` frames of the source signal, interleaved, as f32.
    fn tone(frames: usize) -> Vec<f32> {
        (0..frames)
            .flat_map(|n| {
                let (l, r) = tone_sample(n);
                [l as f32, r as f32]
            })
            .collect()
    }

    /// The source signal through the in-memory path at `TARGET`.
    fn tone_reference(frames: usize) -> Vec<f32> {
        from_interleaved(&tone(frames), TONE_RATE, 2, TARGET)
            .unwrap()
            .samples
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn rms_diff(a: &[f32], b: &[f32]) -> f64 {
        let n = a.len().min(b.len());
        (a[..n]
            .iter()
            .zip(&b[..n])
            .map(|(&x, &y)| f64::from(x - y).powi(2))
            .sum::<f64>()
            / n as f64)
            .sqrt()
    }

    /// Normalised correlation of `a` delayed by `lag` against `b`.
    fn corr_at(a: &[f32], b: &[f32], lag: isize) -> f64 {
        let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
        for (j, &y) in b.iter().enumerate() {
            let i = j as isize + lag;
            if i < 0 || i as usize >= a.len() {
                continue;
            }
            let x = f64::from(a[i as usize]);
            let y = f64::from(y);
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        if aa == 0.0 || bb == 0.0 {
            0.0
        } else {
            ab / (aa * bb).sqrt()
        }
    }

    /// The best (lag, correlation) of `a` against `b` within ±`max_lag`.
    fn best_lag(a: &[f32], b: &[f32], max_lag: isize) -> (isize, f64) {
        (-max_lag..=max_lag)
            .map(|lag| (lag, corr_at(a, b, lag)))
            .fold((0, f64::MIN), |best, c| if c.1 > best.1 { c } else { best })
    }

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(fixture(name)).unwrap()
    }

    #[test]
    fn decode_lossless_fixtures_match_the_source() {
        let reference = tone_reference(LOSSLESS_FRAMES);
        let expected_len = expected_len(LOSSLESS_FRAMES as u64, TONE_RATE, TARGET) as usize;
        assert_eq!(reference.len(), expected_len);
        for name in ["tone_f32.wav", "tone_s16.wav", "tone.flac"] {
            let audio = decode_file(&fixture(name), TARGET).unwrap();
            assert_eq!(audio.sample_rate, TARGET, "{name}");
            assert_eq!(audio.source.sample_rate, TONE_RATE, "{name}");
            assert_eq!(audio.source.channels, 2, "{name}");
            let want_s = LOSSLESS_FRAMES as f64 / f64::from(TONE_RATE);
            assert!((audio.source.duration_s - want_s).abs() < 1e-9, "{name}");
            assert_eq!(audio.samples.len(), expected_len, "{name}");
            let d = rms_diff(&audio.samples, &reference);
            assert!(d <= 1e-4, "{name}: rms difference {d}");
        }
    }

    #[test]
    fn decode_lossy_fixtures_correlate_with_the_source() {
        let reference = tone_reference(TONE_FRAMES);
        let max_lag = (TARGET / 10) as isize; // ±100 ms
        for (name, rate) in [
            ("tone.mp3", 44_100),
            ("tone.ogg", 44_100),
            ("tone.m4a", 44_100),
            ("tone.opus", 48_000),
        ] {
            let audio = decode_file(&fixture(name), TARGET).unwrap();
            assert_eq!(audio.source.sample_rate, rate, "{name}");
            assert_eq!(audio.source.channels, 2, "{name}");
            let d = audio.source.duration_s;
            assert!((0.99..1.1).contains(&d), "{name}: duration {d}");
            let want = expected_len(
                (audio.source.duration_s * f64::from(rate)).round() as u64,
                rate,
                TARGET,
            );
            assert_eq!(audio.samples.len() as u64, want, "{name}");
            let (lag, c) = best_lag(&audio.samples, &reference, max_lag);
            assert!(c >= 0.95, "{name}: correlation {c} at lag {lag}");
            let level = rms(&audio.samples) / rms(&reference);
            assert!((0.8..1.25).contains(&level), "{name}: level ratio {level}");
        }
    }

    #[test]
    fn gapless_codecs_are_time_aligned() {
        // Vorbis and Opus carry their delay in the container and it is
        // trimmed: the decode lines up with the source to within a sample.
        let reference = tone_reference(TONE_FRAMES);
        for name in ["tone.ogg", "tone.opus", "tone.mp3"] {
            let audio = decode_file(&fixture(name), TARGET).unwrap();
            let (lag, c) = best_lag(&audio.samples, &reference, 200);
            assert!(lag.abs() <= 1, "{name}: lag {lag} (correlation {c})");
        }
    }

    #[test]
    fn opus_matches_the_ffmpeg_reference() {
        let ours = decode_file(&fixture("tone.opus"), OPUS_RATE).unwrap();
        assert_eq!(ours.samples.len(), 48_000);
        let reference = decode_file(&fixture("opus_reference_ffmpeg.wav"), OPUS_RATE).unwrap();
        assert_eq!(reference.source.channels, 1);
        assert_eq!(reference.samples.len(), 24_000);
        let ours = &ours.samples[..reference.samples.len()];
        let (lag, c) = best_lag(ours, &reference.samples, 20);
        assert_eq!(lag, 0, "correlation {c}");
        assert!(c >= 0.999, "correlation {c}");
        // 16-bit quantisation of the reference is ≈1e-5 RMS.
        let d = rms_diff(ours, &reference.samples);
        assert!(d < 1e-4, "rms difference {d}");
    }

    /// The Ogg page CRC (polynomial 0x04c11db7, no reflection).
    fn ogg_crc(data: &[u8]) -> u32 {
        let mut crc = 0u32;
        for &b in data {
            crc ^= u32::from(b) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04c1_1db7
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    #[test]
    fn opus_output_gain_is_applied() {
        let plain = read("tone.opus");
        let mut gained = plain.clone();
        // First page: 27-byte header, the segment table, then OpusHead, whose
        // output gain (Q7.8 dB) is at bytes 16..18. +6.0206 dB doubles.
        let payload = 27 + usize::from(gained[26]);
        let page_len = payload
            + gained[27..payload]
                .iter()
                .map(|&s| usize::from(s))
                .sum::<usize>();
        gained[payload + 16..payload + 18].copy_from_slice(&1541i16.to_le_bytes());
        gained[22..26].fill(0);
        let crc = ogg_crc(&gained[..page_len]);
        gained[22..26].copy_from_slice(&crc.to_le_bytes());
        let a = decode_bytes(&plain, Some("opus"), TARGET).unwrap();
        let b = decode_bytes(&gained, Some("opus"), TARGET).unwrap();
        let ratio = rms(&b.samples) / rms(&a.samples);
        assert!((ratio - 2.0).abs() < 0.01, "gain ratio {ratio}");
    }

    #[test]
    fn bytes_and_file_agree() {
        for name in ["tone.flac", "tone.ogg", "tone.opus", "tone.m4a"] {
            let f = decode_file(&fixture(name), TARGET).unwrap();
            // Content, not extension, decides the format.
            let b = decode_bytes(&read(name), Some("wav"), TARGET).unwrap();
            assert_eq!(f.samples, b.samples, "{name}");
            assert_eq!(f.source, b.source, "{name}");
            let c = decode_bytes(&read(name), None, TARGET).unwrap();
            assert_eq!(f.samples, c.samples, "{name}");
        }
    }

    #[test]
    fn passthrough_at_the_source_rate() {
        let audio = decode_file(&fixture("tone_f32.wav"), TONE_RATE).unwrap();
        let src = tone(LOSSLESS_FRAMES);
        let mono: Vec<f32> = src.chunks_exact(2).map(|f| (f[0] + f[1]) * 0.5).collect();
        assert_eq!(audio.samples, mono);
    }

    /// `frames` frames of a 440 Hz sine at `rate`, channel c scaled by (c + 1).
    fn sine(rate: u32, channels: u16, frames: usize) -> Vec<f32> {
        (0..frames)
            .flat_map(|n| {
                let v = (std::f64::consts::TAU * 440.0 * n as f64 / f64::from(rate)).sin() * 0.1;
                (0..channels).map(move |c| (v * f64::from(c + 1)) as f32)
            })
            .collect()
    }

    #[test]
    fn from_interleaved_lengths_and_a_440_hz_sine() {
        // 44 101 Hz has no common divisor with the target (a large FFT block);
        // 176 401 Hz takes the sinc resampler.
        for rate in [8_000u32, 22_050, 44_100, 44_101, 48_000, 96_000, 176_401] {
            for channels in [1u16, 2, 6] {
                let frames = rate as usize / 2 + 7;
                let audio = from_interleaved(&sine(rate, channels, frames), rate, channels, TARGET)
                    .unwrap();
                let what = format!("{rate} Hz, {channels} channels");
                assert_eq!(
                    audio.samples.len() as u64,
                    expected_len(frames as u64, rate, TARGET),
                    "{what}"
                );
                assert_eq!(audio.source.channels, channels);
                assert_eq!(audio.source.sample_rate, rate);
                // The mean of the channels is 0.1 (c̄ + 1) sin(...), in phase
                // with the source: compare with the ideal at the target rate,
                // away from the edges.
                let amp = 0.1 * (f64::from(channels) + 1.0) / 2.0;
                let y = &audio.samples;
                let edge = y.len() / 20;
                let mut err = 0.0f64;
                for (m, &v) in y.iter().enumerate().take(y.len() - edge).skip(edge) {
                    let ideal =
                        amp * (std::f64::consts::TAU * 440.0 * m as f64 / f64::from(TARGET)).sin();
                    err += (f64::from(v) - ideal).powi(2);
                }
                let err = (err / (y.len() - 2 * edge) as f64).sqrt() / amp;
                assert!(err < 2e-4, "{what}: relative rms error {err}");
                // And the frequency, from zero crossings.
                let inner = &y[edge..y.len() - edge];
                let crossings = inner
                    .windows(2)
                    .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
                    .count();
                let hz = crossings as f64 / 2.0 / (inner.len() as f64 / f64::from(TARGET));
                assert!((hz - 440.0).abs() < 5.0, "{what}: {hz} Hz");
            }
        }
    }

    #[test]
    fn multichannel_wav_takes_the_same_path() {
        let samples = sine(48_000, 6, 12_345);
        let wav = crate::synth::float_wav_bytes(&samples, 48_000, 6);
        let decoded = decode_bytes(&wav, Some("wav"), TARGET).unwrap();
        let direct = from_interleaved(&samples, 48_000, 6, TARGET).unwrap();
        assert_eq!(decoded.source, direct.source);
        assert!(rms_diff(&decoded.samples, &direct.samples) < 1e-7);
        assert_eq!(decoded.samples.len(), direct.samples.len());
    }

    fn kind(r: Result<Audio>) -> ErrorKind {
        match r {
            Ok(a) => panic!("expected an error, got {} samples", a.samples.len()),
            Err(e) => e.kind,
        }
    }

    #[test]
    fn from_interleaved_rejects_bad_input() {
        assert!(matches!(
            kind(from_interleaved(&[0.0, f32::NAN], 44_100, 1, TARGET)),
            ErrorKind::InvalidInput(_)
        ));
        assert!(matches!(
            kind(from_interleaved(&[0.0, f32::INFINITY], 44_100, 2, TARGET)),
            ErrorKind::InvalidInput(_)
        ));
        assert!(matches!(
            kind(from_interleaved(&[0.0; 4], 44_100, 0, TARGET)),
            ErrorKind::InvalidInput(_)
        ));
        assert!(matches!(
            kind(from_interleaved(&[0.0; 4], 0, 1, TARGET)),
            ErrorKind::InvalidInput(_)
        ));
        assert!(matches!(
            kind(from_interleaved(&[0.0; 4], 44_100, 1, 0)),
            ErrorKind::InvalidInput(_)
        ));
        assert!(matches!(
            kind(from_interleaved(&[0.0; 5], 44_100, 2, TARGET)),
            ErrorKind::InvalidInput(_)
        ));
        assert!(matches!(
            kind(from_interleaved(&[], 44_100, 2, TARGET)),
            ErrorKind::Empty(_)
        ));
    }

    #[test]
    fn tiny_inputs_resample() {
        let a = from_interleaved(&[0.5], 44_100, 1, TARGET).unwrap();
        assert_eq!(a.samples.len(), 0);
        let a = from_interleaved(&[0.5; 3], 8_000, 1, TARGET).unwrap();
        assert_eq!(a.samples.len(), 4);
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(matches!(
            kind(decode_bytes(&[], Some("mp3"), TARGET)),
            ErrorKind::Empty(_)
        ));
        // Deterministic pseudo-random bytes.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8
            })
            .collect();
        for hint in [Some("mp3"), Some("opus"), Some("wav"), None] {
            let e = decode_bytes(&noise, hint, TARGET).unwrap_err();
            assert!(
                matches!(e.kind, ErrorKind::Unsupported(_) | ErrorKind::Corrupt(_)),
                "{hint:?}: {e}"
            );
        }
        // An Ogg page that claims to be Opus and then stops.
        let opus = read("tone.opus");
        assert!(decode_bytes(&opus[..40], None, TARGET).is_err());
    }

    /// One fixture per container, for the truncation and damage tests.
    const DAMAGE_FIXTURES: [&str; 6] = [
        "tone.flac",
        "tone.mp3",
        "tone.ogg",
        "tone.opus",
        "tone.m4a",
        "tone_s16.wav",
    ];

    #[test]
    fn truncated_files_decode_what_they_hold() {
        for name in DAMAGE_FIXTURES {
            let bytes = read(name);
            for cut in [bytes.len() / 2, bytes.len() * 3 / 4, 100, 1000] {
                match decode_bytes(&bytes[..cut], None, TARGET) {
                    Ok(a) => {
                        let full = decode_bytes(&bytes, None, TARGET).unwrap();
                        assert!(a.samples.len() <= full.samples.len(), "{name} cut at {cut}");
                    }
                    Err(e) => assert!(
                        !matches!(e.kind, ErrorKind::Io(_) | ErrorKind::InvalidInput(_)),
                        "{name} cut at {cut}: {e}"
                    ),
                }
            }
        }
        // Half a FLAC decodes to about half the audio.
        let bytes = read("tone.flac");
        let half = decode_bytes(&bytes[..bytes.len() / 2], Some("flac"), TARGET).unwrap();
        let full = decode_bytes(&bytes, Some("flac"), TARGET).unwrap();
        assert!(half.samples.len() > full.samples.len() / 4);
        assert!(half.samples.len() < full.samples.len());
    }

    #[test]
    fn damaged_files_do_not_panic() {
        for name in DAMAGE_FIXTURES {
            let bytes = read(name);
            for seed in 1..20u64 {
                let mut damaged = bytes.clone();
                let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                for _ in 0..(seed * 3) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x as usize) % damaged.len();
                    damaged[i] ^= (x >> 40) as u8 | 1;
                }
                // Either outcome is fine; panicking or hanging is not.
                let _ = decode_bytes(&damaged, None, TARGET);
            }
        }
    }

    #[test]
    fn empty_and_audio_less_containers() {
        let e = decode_file(&fixture("no_audio.mp4"), TARGET).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Empty(_)), "{e}");
        assert_eq!(e.path.as_deref(), Some(fixture("no_audio.mp4").as_path()));
        // A WAV with a header and no frames.
        let e = decode_bytes(
            &crate::synth::float_wav_bytes(&[], 44_100, 2),
            Some("wav"),
            TARGET,
        )
        .unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Empty(_)), "{e}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let missing = fixture("does_not_exist.flac");
        let e = decode_file(&missing, TARGET).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Io(_)));
        assert_eq!(e.stage, Stage::Open);
        assert_eq!(e.path.as_deref(), Some(missing.as_path()));
        assert!(e.to_string().contains("does_not_exist.flac"));

        let script = fixture("make_fixtures.py");
        let e = decode_file(&script, TARGET).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Unsupported(_)), "{e}");
        assert_eq!(e.stage, Stage::Open);
        assert_eq!(e.path.as_deref(), Some(script.as_path()));
    }

    #[test]
    fn limits_are_enforced() {
        let bytes = read("tone.ogg");
        let short = DecodeLimits {
            max_duration_s: 0.5,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            kind(decode_bytes_with_limits(&bytes, None, TARGET, &short)),
            ErrorKind::Limit(_)
        ));
        let opus = read("tone.opus");
        assert!(matches!(
            kind(decode_bytes_with_limits(&opus, None, TARGET, &short)),
            ErrorKind::Limit(_)
        ));
        let small = DecodeLimits {
            max_bytes: 1000,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            kind(decode_bytes_with_limits(&bytes, None, TARGET, &small)),
            ErrorKind::Limit(_)
        ));
        let e = decode_file_with_limits(&fixture("tone.ogg"), TARGET, &small).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Limit(_)));
        assert!(e.path.is_some());
        // Within the limits it decodes.
        let ok = DecodeLimits {
            max_duration_s: 1.5,
            max_bytes: bytes.len() as u64,
        };
        decode_bytes_with_limits(&bytes, None, TARGET, &ok).unwrap();
    }

    #[test]
    fn target_rate_is_checked() {
        let e = decode_file(&fixture("tone.flac"), 0).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::InvalidInput(_)));
        assert!(e.path.is_some());
    }

    /// Decodes the files listed in `REFRAIN_DECODE_FILES` (separated by `:`)
    /// and prints what came out: a manual check on real-world files.
    #[test]
    #[ignore]
    fn decode_listed_files() {
        let Ok(list) = std::env::var("REFRAIN_DECODE_FILES") else {
            return;
        };
        for path in list.split(':') {
            match decode_file(Path::new(path), TARGET) {
                Ok(a) => eprintln!(
                    "{path}: {} Hz, {} ch, {:.3} s -> {} samples, rms {:.4}",
                    a.source.sample_rate,
                    a.source.channels,
                    a.source.duration_s,
                    a.samples.len(),
                    rms(&a.samples)
                ),
                Err(e) => eprintln!("{e}"),
            }
        }
    }

    /// Decode + resample speed on a real file:
    /// `REFRAIN_DECODE_BENCH=/tmp/x.ogg cargo test --release --lib decode::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn throughput() {
        let Ok(path) = std::env::var("REFRAIN_DECODE_BENCH") else {
            return;
        };
        let path = PathBuf::from(path);
        let _ = decode_file(&path, TARGET).unwrap();
        let runs = 5;
        let t = std::time::Instant::now();
        let mut secs = 0.0;
        for _ in 0..runs {
            secs += decode_file(&path, TARGET).unwrap().source.duration_s;
        }
        let el = t.elapsed().as_secs_f64();
        eprintln!(
            "{}: {:.1} s of audio in {:.3} s per run: {:.0}x real time",
            path.display(),
            secs / runs as f64,
            el / runs as f64,
            secs / el
        );
    }
}

//! The fingerprint of one recording and its versioned binary file format
//! (specified byte by byte in `fingerprints/FORMAT.md`).

use std::io::Write;
use std::path::Path;

use ndarray::Array2;

use crate::decode::SourceInfo;
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::landmarks::LandmarkPeak;
use crate::melody::Melody;
use crate::params::AnalysisParams;

/// The fingerprint file format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 3;
/// The first eight bytes of every fingerprint file.
pub const MAGIC: &[u8; 8] = b"REFRAINF";
/// Conventional file extension of fingerprint files.
pub const EXTENSION: &str = "rfp";
const HEADER_LEN: usize = 52;

/// Everything Refrain computes from one recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    /// Hash of the [`AnalysisParams`] it was computed with.
    pub params_hash: u64,
    /// The source's rate, channels and duration.
    pub source: SourceInfo,
    /// Estimated tuning deviation from A4 = 440 Hz, in cents.
    pub tuning_cents: f32,
    /// Log-compressed chroma, frames × 12, at [`AnalysisParams::chroma_rate`].
    pub chroma: Array2<f32>,
    /// CENS chroma, frames × 12, at [`AnalysisParams::cens_rate`].
    pub cens: Array2<f32>,
    /// Log band energies in dB, frames × bands, at the chroma rate.
    pub bands: Array2<f32>,
    /// Predominant melody, one value per STFT frame.
    pub melody: Melody,
    /// Window embeddings, windows × [`crate::embed::dim`].
    pub embeddings: Array2<f32>,
    /// Sparse landmark peaks, stored in an index for training items
    /// ([`AnalysisParams::landmark_index`]).
    pub landmarks_index: Vec<LandmarkPeak>,
    /// Dense landmark peaks, matched when auditing a query
    /// ([`AnalysisParams::landmark_query`]).
    pub landmarks_query: Vec<LandmarkPeak>,
}

/// Header flags, bits 0–9: the share of the source whose channels cancel
/// ([`SourceInfo::cancelled_s`]), in thousandths of its duration, rounded up.
const FLAG_CANCELLED_MASK: u32 = 0x3ff;

fn encode_flags(source: &SourceInfo) -> u32 {
    if !(source.cancelled_s > 0.0 && source.duration_s > 0.0) {
        return 0;
    }
    let permille = (source.cancelled_s / source.duration_s * 1000.0).ceil();
    permille.clamp(1.0, 1000.0) as u32
}

fn cancelled_s(flags: u32, duration_s: f64) -> f64 {
    f64::from((flags & FLAG_CANCELLED_MASK).min(1000)) / 1000.0 * duration_s
}

/// Element types of sections.
const F32: u8 = 1;
const U8: u8 = 2;
const U32: u8 = 3;
const SECTIONS: u16 = 9;

impl Fingerprint {
    /// Serialises to the v3 byte layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(
            HEADER_LEN
                + 4 * (self.chroma.len()
                    + self.cens.len()
                    + self.bands.len()
                    + self.embeddings.len()
                    + self.melody.cents.len())
                + self.melody.voiced.len()
                + 4 * self.melody.loudness_db.len()
                + 8 * (self.landmarks_index.len() + self.landmarks_query.len())
                + 160,
        );
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&encode_flags(&self.source).to_le_bytes());
        b.extend_from_slice(&self.params_hash.to_le_bytes());
        b.extend_from_slice(&self.source.duration_s.to_le_bytes());
        b.extend_from_slice(&self.source.sample_rate.to_le_bytes());
        b.extend_from_slice(&self.source.channels.to_le_bytes());
        b.extend_from_slice(&SECTIONS.to_le_bytes());
        b.extend_from_slice(&self.tuning_cents.to_le_bytes());
        b.extend_from_slice(&self.melody.hop_s.to_le_bytes());
        debug_assert_eq!(b.len(), HEADER_LEN);
        put_f32(&mut b, b"CHRM", &self.chroma);
        put_f32(&mut b, b"CENS", &self.cens);
        put_f32(&mut b, b"BAND", &self.bands);
        let n = self.melody.cents.len();
        section_header(&mut b, b"MELC", F32, n, 1);
        for c in &self.melody.cents {
            b.extend_from_slice(&c.to_le_bytes());
        }
        section_header(&mut b, b"MELV", U8, n, 1);
        b.extend(self.melody.voiced.iter().map(|&v| v as u8));
        section_header(&mut b, b"MELL", F32, n, 1);
        for l in &self.melody.loudness_db {
            b.extend_from_slice(&l.to_le_bytes());
        }
        put_f32(&mut b, b"EMBD", &self.embeddings);
        put_peaks(&mut b, b"LMKI", &self.landmarks_index);
        put_peaks(&mut b, b"LMKQ", &self.landmarks_query);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses the v3 byte layout, refusing another version, analysis
    /// parameters other than `params` (by their hash), a bad checksum or an
    /// inconsistent layout (`params` also give the ratio of landmark frames
    /// to melody frames the layout is checked against).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Corrupt`] for bytes that are not an intact fingerprint
    /// file, [`ErrorKind::Version`] for another format version,
    /// [`ErrorKind::Params`] for other analysis parameters.
    pub fn from_bytes(bytes: &[u8], params: &AnalysisParams) -> Result<Self, ErrorKind> {
        let expected_params_hash = params.hash();
        let corrupt = |m: &str| ErrorKind::Corrupt(format!("not a valid fingerprint file: {m}"));
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(corrupt("it does not start with the fingerprint magic"));
        }
        if bytes.len() < HEADER_LEN + 4 {
            return Err(corrupt("it is shorter than the header"));
        }
        let mut r = Reader { b: bytes, pos: 8 };
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(ErrorKind::Version {
                found: version,
                expected: FORMAT_VERSION,
            });
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let crc = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if crc32fast::hash(body) != crc {
            return Err(corrupt("checksum mismatch (truncated or damaged)"));
        }
        let r = &mut Reader { b: body, pos: 12 };
        let flags = r.u32()?;
        let params_hash = r.u64()?;
        if params_hash != expected_params_hash {
            return Err(ErrorKind::Params {
                found: params_hash,
                expected: expected_params_hash,
            });
        }
        let duration_s = r.f64()?;
        let sample_rate = r.u32()?;
        let channels = r.u16()?;
        let sections = r.u16()?;
        let tuning_cents = r.f32()?;
        let hop_s = r.f64()?;
        if sections != SECTIONS {
            return Err(corrupt("expected 9 sections"));
        }
        if !(duration_s.is_finite() && duration_s >= 0.0 && tuning_cents.is_finite() && hop_s > 0.0)
        {
            return Err(corrupt("header values out of range"));
        }
        let chroma = r.f32_section(b"CHRM", Some(12))?;
        let cens = r.f32_section(b"CENS", Some(12))?;
        let bands = r.f32_section(b"BAND", None)?;
        let cents = r.f32_section(b"MELC", Some(1))?.into_raw_vec_and_offset().0;
        let (n, _) = r.section_header(b"MELV", U8, Some(1))?;
        let voiced: Vec<bool> = r.take(n)?.iter().map(|&v| v != 0).collect();
        let loudness_db = r.f32_section(b"MELL", Some(1))?.into_raw_vec_and_offset().0;
        let embeddings = r.f32_section(b"EMBD", Some(crate::embed::dim()))?;
        // landmark peaks sit on the main STFT's frames, which are
        // `melody_hop / hop` times as many as the melody's (the parameter
        // hash checked above says the file was made with these hops)
        let per = params.melody_hop.div_ceil(params.hop.max(1));
        let stft_frames = (cents.len() + 1) * per + 1;
        let landmarks_index = r.peak_section(b"LMKI", stft_frames)?;
        let landmarks_query = r.peak_section(b"LMKQ", stft_frames)?;
        if voiced.len() != cents.len() || loudness_db.len() != cents.len() {
            return Err(corrupt("melody pitch, voicing and loudness lengths differ"));
        }
        if r.pos != body.len() {
            return Err(corrupt("trailing bytes after the last section"));
        }
        Ok(Fingerprint {
            params_hash,
            source: SourceInfo {
                sample_rate,
                channels,
                duration_s,
                cancelled_s: cancelled_s(flags, duration_s),
            },
            tuning_cents,
            chroma,
            cens,
            bands,
            melody: Melody {
                hop_s,
                cents,
                voiced,
                loudness_db,
            },
            embeddings,
            landmarks_index,
            landmarks_query,
        })
    }

    /// Writes the fingerprint to `path` atomically (a temporary file in the
    /// same directory, then a rename): an interrupted write never leaves a
    /// half-written file under `path`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] at [`Stage::WriteFingerprint`], naming `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes())
            .map_err(|e| Error::at(path, Stage::WriteFingerprint, e.into()))
    }

    /// Reads a fingerprint file made with `params`.
    ///
    /// # Errors
    ///
    /// At [`Stage::ReadFingerprint`], naming `path`: [`ErrorKind::Io`] when
    /// it cannot be read, else those of [`Fingerprint::from_bytes`].
    pub fn read(path: &Path, params: &AnalysisParams) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::at(path, Stage::ReadFingerprint, e.into()))?;
        Self::from_bytes(&bytes, params).map_err(|k| Error::at(path, Stage::ReadFingerprint, k))
    }

    /// Whether the file at `path` starts like a fingerprint file (false
    /// when it cannot be read, or is not a regular file).
    pub fn looks_like_file(path: &Path) -> bool {
        use std::io::Read;
        if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            return false;
        }
        let mut head = [0u8; 8];
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && Self::looks_like(&head)
    }

    /// Whether `bytes` start like a fingerprint file.
    pub fn looks_like(bytes: &[u8]) -> bool {
        bytes.len() >= 8 && &bytes[..8] == MAGIC
    }
}

/// Writes `bytes` to a temporary sibling of `path`, syncs it, and renames it
/// over `path`.
///
/// # Errors
///
/// Any I/O error creating, writing, syncing or renaming the file (the
/// temporary file is removed then).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the output path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = match dir {
        Some(d) => d.join(&tmp_name),
        None => Path::new(&tmp_name).to_path_buf(),
    };
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn section_header(b: &mut Vec<u8>, tag: &[u8; 4], dtype: u8, rows: usize, cols: usize) {
    b.extend_from_slice(tag);
    b.extend_from_slice(&[dtype, 0, 0, 0]);
    b.extend_from_slice(&(rows as u32).to_le_bytes());
    b.extend_from_slice(&(cols as u32).to_le_bytes());
}

fn put_f32(b: &mut Vec<u8>, tag: &[u8; 4], a: &Array2<f32>) {
    section_header(b, tag, F32, a.nrows(), a.ncols());
    for v in a.iter() {
        b.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_peaks(b: &mut Vec<u8>, tag: &[u8; 4], peaks: &[LandmarkPeak]) {
    section_header(b, tag, U32, peaks.len(), 2);
    for p in peaks {
        b.extend_from_slice(&p.frame.to_le_bytes());
        b.extend_from_slice(&(p.bin as u32).to_le_bytes());
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ErrorKind> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| ErrorKind::Corrupt("fingerprint file is truncated".into()))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, ErrorKind> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, ErrorKind> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, ErrorKind> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn f32(&mut self) -> Result<f32, ErrorKind> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn f64(&mut self) -> Result<f64, ErrorKind> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn section_header(
        &mut self,
        tag: &[u8; 4],
        dtype: u8,
        cols: Option<usize>,
    ) -> Result<(usize, usize), ErrorKind> {
        let t = self.take(4)?;
        if t != tag {
            return Err(ErrorKind::Corrupt(format!(
                "expected section {}, found {:?}",
                String::from_utf8_lossy(tag),
                String::from_utf8_lossy(t)
            )));
        }
        let d = self.take(4)?;
        if d[0] != dtype {
            return Err(ErrorKind::Corrupt(format!(
                "section {} has element type {}, expected {dtype}",
                String::from_utf8_lossy(tag),
                d[0]
            )));
        }
        let rows = self.u32()? as usize;
        let c = self.u32()? as usize;
        if let Some(want) = cols {
            if c != want {
                return Err(ErrorKind::Corrupt(format!(
                    "section {} has {c} columns, expected {want}",
                    String::from_utf8_lossy(tag)
                )));
            }
        }
        // the data must fit in what is left: no allocation from a bogus size
        let size = if dtype == U8 { 1 } else { 4 };
        let need = rows.checked_mul(c).and_then(|n| n.checked_mul(size));
        match need {
            Some(n) if n <= self.b.len() - self.pos => Ok((rows * c, c)),
            _ => Err(ErrorKind::Corrupt(format!(
                "section {} claims more data than the file holds",
                String::from_utf8_lossy(tag)
            ))),
        }
    }

    /// A landmark peak section: sorted, in range, frames below `frames`.
    fn peak_section(
        &mut self,
        tag: &[u8; 4],
        frames: usize,
    ) -> Result<Vec<LandmarkPeak>, ErrorKind> {
        let (n, _) = self.section_header(tag, U32, Some(2))?;
        let raw = self.take(n * 4)?;
        let mut peaks = Vec::with_capacity(n / 2);
        for ch in raw.chunks_exact(8) {
            let frame = u32::from_le_bytes(ch[..4].try_into().expect("4"));
            let bin = u32::from_le_bytes(ch[4..].try_into().expect("4"));
            if bin > u16::MAX as u32 || frame as usize >= frames {
                return Err(ErrorKind::Corrupt(format!(
                    "section {} holds a peak outside the signal",
                    String::from_utf8_lossy(tag)
                )));
            }
            peaks.push(LandmarkPeak {
                frame,
                bin: bin as u16,
            });
        }
        if !crate::landmarks::valid_peaks(&peaks) {
            return Err(ErrorKind::Corrupt(format!(
                "section {} is not a sorted list of peaks in range",
                String::from_utf8_lossy(tag)
            )));
        }
        Ok(peaks)
    }

    fn f32_section(
        &mut self,
        tag: &[u8; 4],
        cols: Option<usize>,
    ) -> Result<Array2<f32>, ErrorKind> {
        let (n, c) = self.section_header(tag, F32, cols)?;
        let raw = self.take(n * 4)?;
        let mut v = Vec::with_capacity(n);
        for ch in raw.chunks_exact(4) {
            let x = f32::from_le_bytes(ch.try_into().expect("4"));
            if !x.is_finite() {
                return Err(ErrorKind::Corrupt(format!(
                    "section {} holds a non-finite number",
                    String::from_utf8_lossy(tag)
                )));
            }
            v.push(x);
        }
        let rows = n.checked_div(c).unwrap_or(0);
        Array2::from_shape_vec((rows, c), v).map_err(|_| ErrorKind::Corrupt("section shape".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{audio_at_analysis_rate, Analyzer};
    use crate::synth;

    /// The synthesized signals behind `fingerprints/v1/` to `v3/` (see
    /// their READMEs).
    fn sample_signals() -> Vec<(&'static str, Vec<f32>)> {
        let tone = |freqs: &[f32], secs: f32| synth::tones(freqs, secs, 11_025);
        vec![
            ("a4_sine_2s", tone(&[440.0], 2.0)),
            ("c_major_triad_3s", tone(&[261.63, 329.63, 392.0], 3.0)),
            (
                "synth_seed1_8bars",
                synth::render(&synth::compose(1, 8), &synth::Render::default()),
            ),
        ]
    }

    fn analyze(x: Vec<f32>) -> Fingerprint {
        let p = AnalysisParams::default();
        Analyzer::new(&p)
            .analyze(&audio_at_analysis_rate(x, &p))
            .unwrap()
    }

    fn assert_close(a: &Fingerprint, b: &Fingerprint, what: &str) {
        let close = |x: &Array2<f32>, y: &Array2<f32>, tol: f32, name: &str| {
            assert_eq!(x.dim(), y.dim(), "{what}: {name} shape");
            let worst = x
                .iter()
                .zip(y.iter())
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= tol, "{what}: {name} differs by {worst}");
        };
        assert_eq!(a.params_hash, b.params_hash);
        assert_eq!(a.source.sample_rate, b.source.sample_rate);
        assert!(
            (a.tuning_cents - b.tuning_cents).abs() < 0.1,
            "{what}: tuning"
        );
        close(&a.chroma, &b.chroma, 1e-3, "chroma");
        close(&a.cens, &b.cens, 1e-3, "cens");
        close(&a.bands, &b.bands, 1e-2, "bands");
        close(&a.embeddings, &b.embeddings, 1e-3, "embeddings");
        let n = a.melody.cents.len();
        assert_eq!(n, b.melody.cents.len(), "{what}: melody length");
        let agree = (0..n)
            .filter(|&i| {
                a.melody.voiced[i] == b.melody.voiced[i]
                    && (!a.melody.voiced[i] || (a.melody.cents[i] - b.melody.cents[i]).abs() < 5.0)
            })
            .count();
        assert!(
            agree * 100 >= n * 99,
            "{what}: melody agrees on {agree}/{n}"
        );
        for (x, y, name) in [
            (&a.landmarks_index, &b.landmarks_index, "index landmarks"),
            (&a.landmarks_query, &b.landmarks_query, "query landmarks"),
        ] {
            let ys: std::collections::HashSet<_> = y.iter().collect();
            let common = x.iter().filter(|p| ys.contains(p)).count();
            assert!(
                common * 100 >= x.len().max(y.len()) * 95,
                "{what}: {name} agree on {common} of {}/{}",
                x.len(),
                y.len()
            );
        }
    }

    /// Old files are kept as test data: version-1 and version-2 samples are
    /// refused, and the error says which version each is.
    #[test]
    fn older_samples_are_refused_by_version() {
        for old in 1..FORMAT_VERSION {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("fingerprints/v{old}"));
            for (name, _) in sample_signals() {
                let path = dir.join(format!("{name}.{EXTENSION}"));
                let e = Fingerprint::read(&path, &AnalysisParams::default()).unwrap_err();
                assert!(
                    matches!(
                        e.kind,
                        ErrorKind::Version { found, expected: FORMAT_VERSION } if found == old
                    ),
                    "{e}"
                );
                assert!(e.to_string().contains(name), "{e}");
            }
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let fp = analyze(synth::render(
            &synth::compose(3, 4),
            &synth::Render::default(),
        ));
        let back = Fingerprint::from_bytes(&fp.to_bytes(), &AnalysisParams::default()).unwrap();
        assert_eq!(back, fp);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.rfp");
        fp.write(&path).unwrap();
        assert_eq!(
            Fingerprint::read(&path, &AnalysisParams::default()).unwrap(),
            fp
        );
    }

    /// A fingerprint made with another melody hop (four landmark frames per
    /// melody frame, where the defaults have two) reads back under its own
    /// parameters: the layout check takes the ratio from them, not from the
    /// defaults.
    #[test]
    fn round_trip_under_other_hops() {
        let p = AnalysisParams {
            melody_hop: 440,
            ..AnalysisParams::default()
        };
        let x = synth::render(&synth::compose(3, 4), &synth::Render::default());
        let fp = Analyzer::new(&p)
            .analyze(&audio_at_analysis_rate(x, &p))
            .unwrap();
        assert!(!fp.landmarks_query.is_empty());
        let back = Fingerprint::from_bytes(&fp.to_bytes(), &p).unwrap();
        assert_eq!(back, fp);
    }

    #[test]
    fn other_version_params_and_damage_are_refused() {
        let fp = analyze(synth::render(
            &synth::compose(4, 2),
            &synth::Render::default(),
        ));
        let bytes = fp.to_bytes();
        let p = AnalysisParams::default();
        // another version
        let mut v2 = bytes.clone();
        v2[8] = 4;
        let e = Fingerprint::from_bytes(&v2, &p).unwrap_err();
        assert!(
            matches!(
                e,
                ErrorKind::Version {
                    found: 4,
                    expected: 3
                }
            ),
            "{e}"
        );
        // other parameters
        let other = AnalysisParams {
            cens_smooth: AnalysisParams::default().cens_smooth + 2,
            ..AnalysisParams::default()
        };
        let e = Fingerprint::from_bytes(&bytes, &other).unwrap_err();
        assert!(matches!(e, ErrorKind::Params { .. }), "{e}");
        assert!(e.to_string().contains("re-create"));
        // every truncation and a flipped byte anywhere are caught
        for cut in (0..bytes.len()).step_by(97) {
            assert!(Fingerprint::from_bytes(&bytes[..cut], &p).is_err());
        }
        for pos in (0..bytes.len()).step_by(131) {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x40;
            assert!(Fingerprint::from_bytes(&bad, &p).is_err(), "flip at {pos}");
        }
        // not a fingerprint at all
        assert!(Fingerprint::from_bytes(b"RIFF....WAVEfmt ", &p).is_err());
        // a file-level error names the file and the stage
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.rfp");
        std::fs::write(&path, &v2).unwrap();
        let msg = Fingerprint::read(&path, &AnalysisParams::default())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("old.rfp") && msg.contains("read fingerprint"),
            "{msg}"
        );
    }

    /// Reads back the committed sample fingerprints and compares them with a
    /// fresh analysis of the same signals. If this fails after a deliberate
    /// change of the format or of the analysis, bump `FORMAT_VERSION` (layout)
    /// or accept the new parameter hash, add `fingerprints/vN/`, and
    /// regenerate with `REFRAIN_WRITE_SAMPLES=1 cargo test --release --lib
    /// sample_fingerprints`.
    #[test]
    fn sample_fingerprints_read_back() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fingerprints")
            .join(format!("v{FORMAT_VERSION}"));
        let write = std::env::var_os("REFRAIN_WRITE_SAMPLES").is_some();
        for (name, signal) in sample_signals() {
            let fresh = analyze(signal);
            let path = dir.join(format!("{name}.{EXTENSION}"));
            if write {
                fresh.write(&path).unwrap();
            }
            let stored = Fingerprint::read(&path, &AnalysisParams::default()).unwrap_or_else(|e| {
                panic!("{e}\n(the committed sample no longer reads: see this test's doc comment)")
            });
            assert_close(&stored, &fresh, name);
        }
    }
}

//! Files as they come from the field, each generated here (no copied files):
//! MP3 and FLAC behind ID3v2 tags of any size, codecs inside containers (MP3
//! in WAV, Apple Lossless in M4A, AIFF/AIFC, codecs with no decoder),
//! chained Ogg files whose links differ, and stereo whose channels cancel.

use std::num::{NonZeroU32, NonZeroU8};
use std::path::Path;

use refrain::analysis::Analyzer;
use refrain::audit::{Auditor, Verdict};
use refrain::decode::{self, decode_bytes, from_interleaved, Audio};
use refrain::index::{Index, IndexBuilder};
use refrain::synth::{self, Rng};
use refrain::{AnalysisParams, ErrorKind};

const TARGET: u32 = 11_025;

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/decode")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn decode(bytes: &[u8], hint: Option<&str>) -> Audio {
    decode_bytes(bytes, hint, TARGET).unwrap_or_else(|e| panic!("{hint:?}: {e}"))
}

fn rms_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let s: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    (s / a.len().max(1) as f64).sqrt()
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// `n` deterministic pseudo-random bytes.
fn noise_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| (r.next_u64() >> 56) as u8).collect()
}

/// A stereo test signal: two tone mixtures, `frames` frames at `rate`.
fn stereo(frames: usize, rate: u32) -> Vec<f32> {
    (0..frames)
        .flat_map(|n| {
            let t = n as f32 / rate as f32;
            let tau = std::f32::consts::TAU;
            let g = (t / 0.01).min(1.0);
            [
                g * (0.3 * (tau * 220.0 * t).sin() + 0.1 * (tau * 660.0 * t).sin()),
                g * (0.25 * (tau * 330.0 * t + 0.5).sin() + 0.1 * (tau * 990.0 * t).sin()),
            ]
        })
        .collect()
}

fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter()
        .map(|&v| (v.clamp(-1.0, 1.0) * 32767.0).round() as i16)
        .collect()
}

// ---------------------------------------------------------------------------
// Containers written by hand.

/// A RIFF chunk: tag, little-endian size, body, pad byte.
fn riff_chunk(tag: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut c = tag.to_vec();
    c.extend_from_slice(&(body.len() as u32).to_le_bytes());
    c.extend_from_slice(body);
    if body.len() % 2 == 1 {
        c.push(0);
    }
    c
}

/// A WAV file of `chunks` (each already a chunk).
fn riff_wave(chunks: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = chunks.concat();
    let mut w = b"RIFF".to_vec();
    w.extend_from_slice(&(4 + body.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVE");
    w.extend_from_slice(&body);
    w
}

/// A `fmt ` chunk body.
fn wave_fmt(
    tag: u16,
    channels: u16,
    rate: u32,
    block_align: u16,
    bits: u16,
    extra: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&tag.to_le_bytes());
    f.extend_from_slice(&channels.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    f.extend_from_slice(&block_align.to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    if tag != 1 {
        f.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        f.extend_from_slice(extra);
    }
    f
}

/// 16-bit PCM WAV of interleaved samples.
fn wav_s16(samples: &[i16], rate: u32, channels: u16) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    riff_wave(&[
        riff_chunk(b"fmt ", &wave_fmt(1, channels, rate, 2 * channels, 16, &[])),
        riff_chunk(b"data", &data),
    ])
}

/// An IFF chunk: tag, big-endian size, body, pad byte.
fn iff_chunk(tag: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut c = tag.to_vec();
    c.extend_from_slice(&(body.len() as u32).to_be_bytes());
    c.extend_from_slice(body);
    if body.len() % 2 == 1 {
        c.push(0);
    }
    c
}

/// An integer sample rate as an 80-bit IEEE extended float (AIFF's COMM).
fn extended(rate: u32) -> [u8; 10] {
    let e = 31 - rate.leading_zeros();
    let mantissa = u64::from(rate) << (63 - e);
    let mut b = [0u8; 10];
    b[..2].copy_from_slice(&((16383 + e) as u16).to_be_bytes());
    b[2..].copy_from_slice(&mantissa.to_be_bytes());
    b
}

/// An AIFF (`compression` None) or AIFF-C file: `data` is the sample data
/// as the compression stores it, `frames` frames of `bits` bits.
fn aiff(
    compression: Option<&[u8; 4]>,
    channels: u16,
    frames: u32,
    bits: u16,
    rate: u32,
    data: &[u8],
) -> Vec<u8> {
    let mut comm = Vec::new();
    comm.extend_from_slice(&channels.to_be_bytes());
    comm.extend_from_slice(&frames.to_be_bytes());
    comm.extend_from_slice(&bits.to_be_bytes());
    comm.extend_from_slice(&extended(rate));
    let mut chunks = Vec::new();
    if let Some(c) = compression {
        chunks.push(iff_chunk(b"FVER", &0xA280_5140u32.to_be_bytes()));
        comm.extend_from_slice(c);
        comm.extend_from_slice(&[0, 0]); // empty Pascal name, padded
    }
    chunks.push(iff_chunk(b"COMM", &comm));
    let mut ssnd = vec![0u8; 8]; // offset, block size
    ssnd.extend_from_slice(data);
    chunks.push(iff_chunk(b"SSND", &ssnd));
    let body = chunks.concat();
    let mut f = b"FORM".to_vec();
    f.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
    f.extend_from_slice(if compression.is_some() {
        b"AIFC"
    } else {
        b"AIFF"
    });
    f.extend_from_slice(&body);
    f
}

/// An ISO-BMFF box.
fn mp4_box(kind: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
    let body: Vec<u8> = parts.concat();
    let mut b = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(&body);
    b
}

/// A full box: version 0, `flags`.
fn full_box(kind: &[u8; 4], flags: u32, parts: &[&[u8]]) -> Vec<u8> {
    let vf = flags.to_be_bytes();
    let mut all: Vec<&[u8]> = vec![&vf];
    all.extend_from_slice(parts);
    mp4_box(kind, &all)
}

/// An M4A file holding 16-bit `channels`-channel audio at `rate` encoded as
/// Apple Lossless by the `alac-encoder` crate.
fn alac_m4a(samples: &[i16], rate: u32, channels: u16) -> Vec<u8> {
    use alac_encoder::{AlacEncoder, FormatDescription};
    const FRAME: usize = 4096;
    let input = FormatDescription::pcm::<i16>(f64::from(rate), u32::from(channels));
    let output = FormatDescription::alac(f64::from(rate), FRAME as u32, u32::from(channels));
    let mut enc = AlacEncoder::new(&output);
    let mut buf = vec![0u8; output.max_packet_size()];
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut durations: Vec<u32> = Vec::new();
    for block in samples.chunks(FRAME * usize::from(channels)) {
        let pcm: Vec<u8> = block.iter().flat_map(|s| s.to_le_bytes()).collect();
        let n = enc.encode(&input, &pcm, &mut buf);
        packets.push(buf[..n].to_vec());
        durations.push((block.len() / usize::from(channels)) as u32);
    }
    let frames = (samples.len() / usize::from(channels)) as u32;
    let ftyp = mp4_box(b"ftyp", &[b"M4A ", &0u32.to_be_bytes(), b"M4A mp42isom"]);
    let mdat_payload: Vec<u8> = packets.concat();
    let mdat = mp4_box(b"mdat", &[&mdat_payload]);
    let chunk_offset = (ftyp.len() + 8) as u32;
    let be32 = |v: u32| v.to_be_bytes();
    let matrix: Vec<u8> = [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let mvhd = full_box(
        b"mvhd",
        0,
        &[
            &be32(0),
            &be32(0),
            &be32(rate),
            &be32(frames),
            &be32(0x0001_0000),
            &[1, 0],
            &[0; 10],
            &matrix,
            &[0; 24],
            &be32(2),
        ],
    );
    let tkhd = full_box(
        b"tkhd",
        7,
        &[
            &be32(0),
            &be32(0),
            &be32(1),
            &be32(0),
            &be32(frames),
            &[0; 8],
            &[0, 0, 0, 0],
            &[1, 0, 0, 0],
            &matrix,
            &be32(0),
            &be32(0),
        ],
    );
    let mdhd = full_box(
        b"mdhd",
        0,
        &[
            &be32(0),
            &be32(0),
            &be32(rate),
            &be32(frames),
            &[0x55, 0xc4, 0, 0],
        ],
    );
    let hdlr = full_box(b"hdlr", 0, &[&be32(0), b"soun", &[0; 12], b"\0"]);
    let smhd = full_box(b"smhd", 0, &[&[0; 4]]);
    let url = full_box(b"url ", 1, &[]);
    let dref = full_box(b"dref", 0, &[&be32(1), &url]);
    let dinf = mp4_box(b"dinf", &[&dref]);
    let cookie = full_box(b"alac", 0, &[&enc.magic_cookie()]);
    let entry = mp4_box(
        b"alac",
        &[
            &[0; 6],
            &1u16.to_be_bytes(),
            &[0; 8],
            &channels.to_be_bytes(),
            &16u16.to_be_bytes(),
            &[0; 4],
            &(rate << 16).to_be_bytes(),
            &cookie,
        ],
    );
    let stsd = full_box(b"stsd", 0, &[&be32(1), &entry]);
    let mut stts_entries: Vec<(u32, u32)> = Vec::new();
    for &d in &durations {
        match stts_entries.last_mut() {
            Some((n, dd)) if *dd == d => *n += 1,
            _ => stts_entries.push((1, d)),
        }
    }
    let stts_body: Vec<u8> = stts_entries
        .iter()
        .flat_map(|(n, d)| [be32(*n), be32(*d)].concat())
        .collect();
    let stts = full_box(b"stts", 0, &[&be32(stts_entries.len() as u32), &stts_body]);
    let stsc = full_box(
        b"stsc",
        0,
        &[&be32(1), &be32(1), &be32(packets.len() as u32), &be32(1)],
    );
    let sizes: Vec<u8> = packets.iter().flat_map(|p| be32(p.len() as u32)).collect();
    let stsz = full_box(b"stsz", 0, &[&be32(0), &be32(packets.len() as u32), &sizes]);
    let stco = full_box(b"stco", 0, &[&be32(1), &be32(chunk_offset)]);
    let stbl = mp4_box(b"stbl", &[&stsd, &stts, &stsc, &stsz, &stco]);
    let minf = mp4_box(b"minf", &[&smhd, &dinf, &stbl]);
    let mdia = mp4_box(b"mdia", &[&mdhd, &hdlr, &minf]);
    let trak = mp4_box(b"trak", &[&tkhd, &mdia]);
    let moov = mp4_box(b"moov", &[&mvhd, &trak]);
    [ftyp, mdat, moov].concat()
}

/// An ID3v2 tag (version 3 or 4) holding one picture frame of `payload`
/// pseudo-random bytes, with the v2.4 footer when `footer`.
fn id3v2(version: u8, payload: usize, footer: bool, seed: u64) -> Vec<u8> {
    let syncsafe = |n: usize| -> [u8; 4] {
        [
            (n >> 21) as u8 & 0x7f,
            (n >> 14) as u8 & 0x7f,
            (n >> 7) as u8 & 0x7f,
            n as u8 & 0x7f,
        ]
    };
    let mut body = vec![0u8];
    body.extend_from_slice(b"image/png\0");
    body.push(3); // front cover
    body.push(0); // no description
                  // noise with frame-sync-like byte pairs, as compressed images have
    let mut img = noise_bytes(seed, payload);
    for i in (0..img.len().saturating_sub(2)).step_by(997) {
        img[i] = 0xff;
        img[i + 1] = 0xfb;
    }
    body.extend_from_slice(&img);
    let mut frame = b"APIC".to_vec();
    if version == 4 {
        frame.extend_from_slice(&syncsafe(body.len()));
    } else {
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    }
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&body);
    let flags = if footer { 0x10 } else { 0 };
    let mut tag = vec![b'I', b'D', b'3', version, 0, flags];
    tag.extend_from_slice(&syncsafe(frame.len()));
    tag.extend_from_slice(&frame);
    if footer {
        tag.extend_from_slice(&[b'3', b'D', b'I', version, 0, flags]);
        tag.extend_from_slice(&syncsafe(frame.len()));
    }
    tag
}

/// Ogg Vorbis of planar `channels`, encoded by libvorbis (`vorbis_rs`).
fn vorbis(planar: &[Vec<f32>], rate: u32, serial: i32) -> Vec<u8> {
    let mut enc = vorbis_rs::VorbisEncoderBuilder::new_with_serial(
        NonZeroU32::new(rate).unwrap(),
        NonZeroU8::new(planar.len() as u8).unwrap(),
        Vec::new(),
        serial,
    )
    .build()
    .unwrap();
    let n = planar[0].len();
    for start in (0..n).step_by(1024) {
        let end = (start + 1024).min(n);
        let block: Vec<&[f32]> = planar.iter().map(|c| &c[start..end]).collect();
        enc.encode_audio_block(&block).unwrap();
    }
    enc.finish().unwrap()
}

fn song(seed: u64, offset_s: f32, seconds: f32, rate: u32) -> Vec<f32> {
    synth::render(
        &synth::compose(seed, 14),
        &synth::Render {
            sample_rate: rate,
            offset_s,
            duration_s: Some(seconds),
            ..synth::Render::default()
        },
    )
}

/// An index of synthesized songs `seeds` (about 35 s each), built in memory.
fn song_index(seeds: &[u64], transform: impl Fn(u64, Vec<f32>) -> (Vec<f32>, u16)) -> Index {
    let params = AnalysisParams::default();
    let mut b = IndexBuilder::new(&params);
    let mut an = Analyzer::new(&params);
    for &s in seeds {
        let (x, ch) = transform(s, song(s, 0.0, 60.0, 22_050));
        let audio = from_interleaved(&x, 22_050, ch, params.sample_rate).unwrap();
        let fp = an.analyze(&audio).unwrap();
        b.add(&format!("song{s}.wav"), &format!("hash{s}"), &fp)
            .unwrap();
    }
    b.build()
}

// ---------------------------------------------------------------------------
// 1. ID3v2 tags.

#[test]
fn id3v2_tags_of_any_size_are_skipped_before_mp3_and_flac() {
    for (name, ext) in [("tone.mp3", "mp3"), ("tone.flac", "flac")] {
        let bare = fixture(name);
        let plain = decode(&bare, Some(ext));
        for (version, payload, footer) in [
            (3u8, 100, false),
            (3, 1_100_000, false),
            (4, 2_500_000, true),
        ] {
            let mut tagged = id3v2(version, payload, footer, 7);
            tagged.extend_from_slice(&bare);
            for hint in [Some(ext), None] {
                let a = decode(&tagged, hint);
                assert_eq!(
                    a.source, plain.source,
                    "{name} behind a {payload}-byte v2.{version} tag"
                );
                assert_eq!(
                    a.samples, plain.samples,
                    "{name} behind a {payload}-byte v2.{version} tag"
                );
            }
        }
        // two tags in a row (a tag appended by a second tool)
        let mut twice = id3v2(3, 1_200_000, false, 1);
        twice.extend_from_slice(&id3v2(4, 50_000, true, 2));
        twice.extend_from_slice(&bare);
        assert_eq!(decode(&twice, Some(ext)).samples, plain.samples, "{name}");
        // and from a file, as `refrain audit` reads it
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(format!("cover.{ext}"));
        std::fs::write(&p, &twice).unwrap();
        assert_eq!(
            decode::decode_file(&p, TARGET).unwrap().samples,
            plain.samples
        );
    }
    // a tag and nothing after it
    let e = decode_bytes(&id3v2(3, 5000, false, 3), Some("mp3"), TARGET).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Empty(_)), "{e}");
}

// ---------------------------------------------------------------------------
// 2. Codecs inside containers.

#[test]
fn a_wav_holding_mp3_decodes_as_the_mp3() {
    let mp3 = fixture("tone.mp3");
    let plain = decode(&mp3, Some("mp3"));
    // MPEGLAYER3WAVEFORMAT: id, flags, block size, frames per block, delay
    let mut extra = 1u16.to_le_bytes().to_vec();
    extra.extend_from_slice(&2u32.to_le_bytes());
    for v in [418u16, 1, 1393] {
        extra.extend_from_slice(&v.to_le_bytes());
    }
    let fact = riff_chunk(b"fact", &44_100u32.to_le_bytes());
    let list = riff_chunk(b"LIST", b"INFOISFT\x05\0\0\0Lavf\0"); // odd size: padded
    for chunks in [
        vec![
            riff_chunk(b"fmt ", &wave_fmt(0x0055, 2, 44_100, 1, 0, &extra)),
            fact.clone(),
            riff_chunk(b"data", &mp3),
        ],
        vec![
            riff_chunk(b"fmt ", &wave_fmt(0x0055, 2, 44_100, 1, 0, &extra)),
            list,
            riff_chunk(b"data", &mp3),
        ],
    ] {
        let wav = riff_wave(&chunks);
        for hint in [Some("wav"), None] {
            let a = decode(&wav, hint);
            assert_eq!(a.source, plain.source);
            assert_eq!(a.samples, plain.samples);
        }
    }
}

#[test]
fn aiff_and_aifc_decode_like_the_same_samples_in_wav() {
    let x = to_i16(&stereo(6_000, 44_100));
    let reference = decode(&wav_s16(&x, 44_100, 2), Some("wav"));
    let be: Vec<u8> = x.iter().flat_map(|s| s.to_be_bytes()).collect();
    let le: Vec<u8> = x.iter().flat_map(|s| s.to_le_bytes()).collect();
    for (what, file) in [
        ("AIFF", aiff(None, 2, 6_000, 16, 44_100, &be)),
        ("AIFC none", aiff(Some(b"NONE"), 2, 6_000, 16, 44_100, &be)),
        ("AIFC sowt", aiff(Some(b"sowt"), 2, 6_000, 16, 44_100, &le)),
    ] {
        for hint in [Some("aif"), None] {
            let a = decode(&file, hint);
            assert_eq!(a.source, reference.source, "{what}");
            assert_eq!(a.samples, reference.samples, "{what}");
        }
    }
    // 32-bit float AIFC against a float WAV
    let f = stereo(6_000, 48_000);
    let reference = decode(&synth::float_wav_bytes(&f, 48_000, 2), Some("wav"));
    let be: Vec<u8> = f.iter().flat_map(|s| s.to_be_bytes()).collect();
    let a = decode(&aiff(Some(b"fl32"), 2, 6_000, 32, 48_000, &be), None);
    assert_eq!(a.samples, reference.samples);
    // folder screens take them
    for name in ["a.aif", "b.AIFF", "c.aifc"] {
        assert!(refrain::inputs::is_audio(Path::new(name)), "{name}");
    }
}

#[test]
fn apple_lossless_in_m4a_decodes_exactly() {
    let x = to_i16(&stereo(10_000, 44_100));
    let reference = decode(&wav_s16(&x, 44_100, 2), Some("wav"));
    let m4a = alac_m4a(&x, 44_100, 2);
    for hint in [Some("m4a"), None] {
        let a = decode(&m4a, hint);
        assert_eq!(a.source, reference.source);
        let d = rms_diff(&a.samples, &reference.samples);
        assert!(d < 1e-6, "rms difference {d}");
    }
    // mono at another rate
    let m: Vec<i16> = x.iter().step_by(2).copied().collect();
    let reference = decode(&wav_s16(&m, 32_000, 1), Some("wav"));
    let a = decode(&alac_m4a(&m, 32_000, 1), Some("m4a"));
    assert!(rms_diff(&a.samples, &reference.samples) < 1e-6);
}

/// The message of a refused input, which must be `Unsupported`.
fn unsupported(bytes: &[u8], hint: Option<&str>) -> String {
    match decode_bytes(bytes, hint, TARGET) {
        Ok(a) => panic!("decoded {} samples", a.samples.len()),
        Err(e) => {
            assert!(matches!(e.kind, ErrorKind::Unsupported(_)), "{e}");
            e.to_string()
        }
    }
}

#[test]
fn codecs_without_a_decoder_are_named_with_what_to_convert_to() {
    let gsm = riff_wave(&[
        riff_chunk(
            b"fmt ",
            &wave_fmt(0x0031, 1, 8_000, 65, 0, &320u16.to_le_bytes()),
        ),
        riff_chunk(b"fact", &8_000u32.to_le_bytes()),
        riff_chunk(b"data", &noise_bytes(1, 65 * 25)),
    ]);
    let g726 = riff_wave(&[
        riff_chunk(b"fmt ", &wave_fmt(0x0045, 1, 8_000, 1, 4, &[])),
        riff_chunk(b"data", &noise_bytes(2, 4_000)),
    ]);
    let mut ext = Vec::new(); // WAVE_FORMAT_EXTENSIBLE around G.726
    ext.extend_from_slice(&4u16.to_le_bytes());
    ext.extend_from_slice(&4u32.to_le_bytes());
    ext.extend_from_slice(&0x0064u16.to_le_bytes());
    ext.extend_from_slice(&[0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71]);
    let g726_ext = riff_wave(&[
        riff_chunk(b"fmt ", &wave_fmt(0xfffe, 1, 8_000, 1, 4, &ext)),
        riff_chunk(b"data", &noise_bytes(3, 4_000)),
    ]);
    let odd = riff_wave(&[
        riff_chunk(b"fmt ", &wave_fmt(0x1234, 1, 8_000, 1, 4, &[])),
        riff_chunk(b"data", &noise_bytes(4, 4_000)),
    ]);
    let ima4 = aiff(Some(b"ima4"), 1, 64, 16, 22_050, &noise_bytes(5, 34));
    for (bytes, hint, codec, container) in [
        (&gsm, Some("wav"), "GSM 6.10 (format 0x0031)", "a WAV"),
        (&g726, Some("wav"), "G.726 ADPCM (format 0x0045)", "a WAV"),
        (&g726_ext, None, "G.726 ADPCM (format 0x0064)", "a WAV"),
        (&odd, Some("wav"), "audio in format 0x1234", "a WAV"),
        (
            &ima4,
            Some("aifc"),
            "IMA 4:1 ADPCM (compression 'ima4')",
            "an AIFF-C",
        ),
    ] {
        let m = unsupported(bytes, hint);
        assert!(m.contains(codec), "{m}");
        assert!(m.contains(&format!("{container} file holding")), "{m}");
        // what to convert to, which is not what the file already is
        assert!(m.contains("convert the audio to FLAC or PCM WAV"), "{m}");
        assert!(!m.contains("supported: WAV"), "{m}");
    }
}

// ---------------------------------------------------------------------------
// 3. Chained Ogg.

#[test]
fn every_link_of_a_chained_ogg_file_is_decoded() {
    let ogg = fixture("tone.ogg"); // Vorbis 44.1 kHz stereo, 1 s
    let opus = fixture("tone.opus"); // Opus 48 kHz stereo, 1 s
    let mono22: Vec<f32> = stereo(22_050 * 2, 22_050)
        .iter()
        .step_by(2)
        .copied()
        .collect();
    let other = vorbis(&[mono22], 22_050, 99); // Vorbis 22.05 kHz mono, 2 s
    let a = decode(&ogg, None);
    let b = decode(&other, None);
    let c = decode(&opus, None);
    let chained = [ogg.clone(), other.clone(), opus.clone()].concat();
    for hint in [Some("ogg"), None] {
        let all = decode(&chained, hint);
        let want = a.source.duration_s + b.source.duration_s + c.source.duration_s;
        assert!(
            (all.source.duration_s - want).abs() < 1e-9,
            "{} s of {want} s",
            all.source.duration_s
        );
        assert_eq!(all.source.sample_rate, 44_100);
        assert_eq!(all.source.channels, 2);
        // each link's audio, in order
        let (na, nb) = (a.samples.len(), b.samples.len());
        assert!(all.samples.len().abs_diff(na + nb + c.samples.len()) <= 2);
        assert!(rms_diff(&all.samples[..na], &a.samples) < 1e-6);
        assert!(rms_diff(&all.samples[na..na + nb], &b.samples) < 1e-6);
        let rest = &all.samples[na + nb..];
        let n = rest.len().min(c.samples.len());
        assert!(rms_diff(&rest[..n], &c.samples[..n]) < 1e-6);
    }
    // an Opus link first, then Vorbis
    let all = decode(&[opus.clone(), ogg.clone()].concat(), Some("opus"));
    assert!((all.source.duration_s - (a.source.duration_s + c.source.duration_s)).abs() < 1e-9);
    // the last link cut inside its headers: the links before it
    let cut = [ogg.clone(), other[..60].to_vec()].concat();
    assert_eq!(decode(&cut, None).samples, a.samples);
}

#[test]
fn a_copy_in_the_second_link_of_a_chained_ogg_is_flagged() {
    let index = song_index(&[1, 2, 3, 4], |_, x| (x, 1));
    let auditor = Auditor::new(&index);
    // link 1: original music, 44.1 kHz stereo; link 2: 12 s of song 3 from
    // its 10 s mark, 22.05 kHz mono; link 3: Opus
    let orig = song(101, 0.0, 15.0, 44_100);
    let link1 = vorbis(
        &[orig.clone(), orig.iter().map(|v| 0.8 * v).collect()],
        44_100,
        1,
    );
    let link2 = vorbis(&[song(3, 10.0, 12.0, 22_050)], 22_050, 2);
    let chained = [link1.clone(), link2, fixture("tone.opus")].concat();
    let audio = decode(&chained, None);
    assert!(
        (audio.source.duration_s - 28.0).abs() < 0.1,
        "{}",
        audio.source.duration_s
    );
    let r = auditor.check_audio(&audio).unwrap();
    assert_eq!(r.verdict, Verdict::Flag, "{r:?}");
    let best = r.best().unwrap();
    assert_eq!(best.path, "song3.wav");
    assert!((best.query_start_s - 15.0).abs() < 2.0, "{best:?}");
    assert!(
        (best.match_start_s - best.query_start_s + 5.0).abs() < 2.0,
        "{best:?}"
    );
    // the first link alone passes: the flag came from the second
    let r = auditor.check_audio(&decode(&link1, None)).unwrap();
    assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
}

// ---------------------------------------------------------------------------
// 4. Channels that cancel.

/// `x` as stereo with the right channel inverted (`sox remix 1 1i`).
fn inverted(x: &[f32]) -> Vec<f32> {
    x.iter().flat_map(|&v| [v, -v]).collect()
}

#[test]
fn channels_that_cancel_are_analysed_as_their_difference() {
    let x = song(2, 5.0, 12.0, 44_100);
    let plain = from_interleaved(&x, 44_100, 1, TARGET).unwrap();
    for (what, a) in [
        (
            "samples",
            from_interleaved(&inverted(&x), 44_100, 2, TARGET).unwrap(),
        ),
        (
            "a WAV file",
            decode(
                &synth::float_wav_bytes(&inverted(&x), 44_100, 2),
                Some("wav"),
            ),
        ),
    ] {
        assert!(
            (a.source.cancelled_s - a.source.duration_s).abs() < 0.1,
            "{what}: {:?}",
            a.source
        );
        let note = decode::cancelled_note(&a.source).expect("a note");
        assert!(note.contains("left-right difference"), "{note}");
        // the music survives: it is the left channel, as mono
        assert!(rms(&a.samples) > 0.5 * rms(&plain.samples), "{what}");
        assert!(rms_diff(&a.samples, &plain.samples) < 1e-4, "{what}");
    }
    // ordinary stereo (right = 0.7 left, or another signal) is averaged
    let st = stereo(44_100, 44_100);
    let a = from_interleaved(&st, 44_100, 2, TARGET).unwrap();
    assert_eq!(a.source.cancelled_s, 0.0);
    assert!(decode::cancelled_note(&a.source).is_none());
    let mixed: Vec<f32> = x.iter().flat_map(|&v| [v, 0.7 * v]).collect();
    assert_eq!(
        from_interleaved(&mixed, 44_100, 2, TARGET)
            .unwrap()
            .source
            .cancelled_s,
        0.0
    );
    // six channels that sum to nothing: the first channel
    let six: Vec<f32> = x
        .iter()
        .flat_map(|&v| [v, -v, v, -v, 0.5 * v, -0.5 * v])
        .collect();
    let a = from_interleaved(&six, 44_100, 6, TARGET).unwrap();
    assert!(a.source.cancelled_s > 11.0);
    assert!(rms_diff(&a.samples, &plain.samples) < 1e-4);
    // only half of it inverted: that half
    let half: Vec<f32> = x
        .iter()
        .enumerate()
        .flat_map(|(i, &v)| [v, if i < x.len() / 2 { v } else { -v }])
        .collect();
    let a = from_interleaved(&half, 44_100, 2, TARGET).unwrap();
    assert!((a.source.cancelled_s - 6.0).abs() < 0.2, "{:?}", a.source);
    // all but the one block (93 ms) that holds both halves
    let mid = a.samples.len() / 2;
    let block = decode::DOWNMIX_BLOCK * TARGET as usize / 44_100 + 2;
    for range in [0..mid - block, mid + block..a.samples.len()] {
        let d = rms_diff(&a.samples[range.clone()], &plain.samples[range]);
        assert!(d < 1e-4, "{d}");
    }
    // the fingerprint keeps it
    let fp = Analyzer::new(&AnalysisParams::default())
        .analyze(&a)
        .unwrap();
    let back =
        refrain::fingerprint::Fingerprint::from_bytes(&fp.to_bytes(), &AnalysisParams::default())
            .unwrap();
    assert!(
        (back.source.cancelled_s - 6.0).abs() < 0.05,
        "{:?}",
        back.source
    );
}

#[test]
fn copies_with_cancelling_channels_are_flagged_with_a_note() {
    // a query whose channels cancel
    let index = song_index(&[1, 2, 3], |_, x| (x, 1));
    let auditor = Auditor::new(&index);
    let copy = song(2, 8.0, 12.0, 44_100);
    let r = auditor.check_samples(&inverted(&copy), 44_100, 2).unwrap();
    assert_eq!(r.verdict, Verdict::Flag, "{r:?}");
    assert_eq!(r.best().unwrap().path, "song2.wav");
    assert!(
        r.notes.iter().any(|n| n.contains("channels cancel")),
        "{:?}",
        r.notes
    );
    // a plain copy carries no such note
    let r = auditor.check_samples(&copy, 44_100, 1).unwrap();
    assert!(
        r.notes.iter().all(|n| !n.contains("cancel")),
        "{:?}",
        r.notes
    );
    // a training item whose channels cancel: its copies are found
    let index = song_index(
        &[1, 2, 3],
        |s, x| if s == 2 { (inverted(&x), 2) } else { (x, 1) },
    );
    let r = Auditor::new(&index)
        .check_samples(&copy, 44_100, 1)
        .unwrap();
    assert_eq!(r.verdict, Verdict::Flag, "{r:?}");
    assert_eq!(r.best().unwrap().path, "song2.wav");
}

/// Measures how often exact copies of a few lengths are flagged against the
/// songs they were cut from: `cargo test --release --test formats
/// measure_short_copies -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_short_copies() {
    let seeds: Vec<u64> = (1..=8).collect();
    let index = song_index(&seeds, |_, x| (x, 1));
    let auditor = Auditor::new(&index);
    for len in [1.0f32, 1.5, 2.0, 3.0, 4.0, 4.5, 5.0, 5.5, 6.0, 8.0] {
        let (mut flagged, mut right, mut n) = (0, 0, 0);
        for &s in &seeds {
            for off in [1.0f32, 3.0, 6.5, 9.5, 13.0, 17.0, 21.0, 24.5] {
                let x = song(s, off, len, 22_050);
                let r = auditor.check_samples(&x, 22_050, 1).unwrap();
                n += 1;
                if r.verdict == Verdict::Flag {
                    flagged += 1;
                    right += (r.best().unwrap().path == format!("song{s}.wav")) as usize;
                }
            }
        }
        eprintln!("{len:.1} s: {flagged}/{n} flagged, {right} with the right match");
    }
}

// ---------------------------------------------------------------------------
// 5. Too short to judge; reported times inside both files.

#[test]
fn short_queries_carry_a_note_and_times_stay_inside_both_files() {
    let index = song_index(&[1, 2, 3, 4], |_, x| (x, 1));
    let auditor = Auditor::new(&index);
    let dur = |item: usize| index.manifest.items[item].duration_s as f32;
    for (len, short) in [
        (1.0f32, true),
        (1.9, true),
        (3.0, true),
        (4.9, true),
        (5.0, false),
        (12.0, false),
    ] {
        for &(seed, off) in &[(2u64, 10.0f32), (4, 0.0), (1, 18.0)] {
            let x = song(seed, off, len, 22_050);
            let r = auditor.check_samples(&x, 22_050, 1).unwrap();
            let noted = r
                .notes
                .iter()
                .any(|n| n.starts_with("too short to judge: "));
            assert_eq!(noted, short, "{len} s: {:?}", r.notes);
            if short {
                assert!(
                    r.notes[0].contains(&format!("{:.1} s", r.duration_s)),
                    "{:?}",
                    r.notes
                );
            }
            let q = r.duration_s as f32;
            for c in &r.candidates {
                assert!(
                    0.0 <= c.query_start_s
                        && c.query_start_s <= c.query_end_s
                        && c.query_end_s <= q,
                    "{len} s: {c:?}"
                );
                let m = dur(c.item);
                assert!(
                    0.0 <= c.match_start_s
                        && c.match_start_s <= c.match_end_s
                        && c.match_end_s <= m,
                    "{len} s: {c:?}"
                );
            }
        }
    }
    // a 1 s item and a 1 s query: flagged, and inside both
    let params = AnalysisParams::default();
    let mut b = IndexBuilder::new(&params);
    let x = song(5, 4.0, 1.0, 22_050);
    let fp = Analyzer::new(&params)
        .analyze(&from_interleaved(&x, 22_050, 1, params.sample_rate).unwrap())
        .unwrap();
    b.add("one_second.wav", "h", &fp).unwrap();
    let index = b.build();
    let r = Auditor::new(&index).check_samples(&x, 22_050, 1).unwrap();
    let c = r.best().unwrap();
    assert!(
        c.query_end_s <= 1.0 && c.match_end_s <= 1.0 && c.match_start_s >= 0.0,
        "{c:?}"
    );
    assert!(
        r.notes[0].starts_with("too short to judge: 1.0 s"),
        "{:?}",
        r.notes
    );
}

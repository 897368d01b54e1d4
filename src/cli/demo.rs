//! `refrain demo`: the main job end to end on synthesized music, with
//! nothing to supply. It writes a small training set and a batch of
//! "generated" clips as WAV files, indexes the training set, audits the clips
//! and prints the report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use refrain::synth::{self, Render, Timbre};

/// Flags of `refrain demo`, checked once by clap.
#[derive(Debug, clap::Args)]
pub struct Config {
    /// Keep the demo's files in this directory (default: a temporary
    /// directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Also write the HTML report of the audit here (as `reports/example.html`
    /// was made).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

const TRAINING: u64 = 12;

pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let keep = cfg.dir.is_some();
    let dir = cfg.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("refrain-demo-{}", std::process::id()))
    });
    let train = dir.join("training");
    let clips = dir.join("generated");
    let index = dir.join("index");
    for d in [&train, &clips] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let rate = 22_050;
    let timbres = [Timbre::Piano, Timbre::Pluck, Timbre::Organ, Timbre::Strings];
    eprintln!(
        "demo: writing {TRAINING} training songs and 7 generated clips to {}",
        dir.display()
    );
    for seed in 1..=TRAINING {
        let r = Render {
            sample_rate: rate,
            melody: timbres[seed as usize % 4],
            accompaniment: timbres[(seed as usize + 1) % 4],
            ..Render::default()
        };
        let x = synth::render(&synth::compose(seed, 24), &r);
        write_wav(&train.join(format!("song{seed:02}.wav")), &x, rate)?;
    }
    let base = |seed: u64| Render {
        sample_rate: rate,
        melody: timbres[seed as usize % 4],
        accompaniment: timbres[(seed as usize + 1) % 4],
        ..Render::default()
    };
    let clip = |name: &str, seed: u64, r: Render, noise_db: Option<f32>| -> anyhow::Result<()> {
        let mut x = synth::render(&synth::compose(seed, 24), &r);
        if let Some(snr) = noise_db {
            synth::add_noise(&mut x, snr, seed);
        }
        write_wav(&clips.join(name), &x, rate)
    };
    let excerpt = |seed: u64| Render {
        offset_s: 8.0,
        duration_s: Some(20.0),
        ..base(seed)
    };
    clip("a_copy_of_song03_with_noise.wav", 3, excerpt(3), Some(15.0))?;
    clip(
        "b_copy_of_song05_up_2_semitones.wav",
        5,
        Render {
            transpose: 2.0,
            ..excerpt(5)
        },
        None,
    )?;
    clip(
        "c_copy_of_song07_10pct_faster.wav",
        7,
        Render {
            tempo: 1.1,
            ..excerpt(7)
        },
        None,
    )?;
    clip(
        "d_song09_melody_on_strings_down_3.wav",
        9,
        Render {
            transpose: -3.0,
            tempo: 0.92,
            melody: Timbre::Strings,
            accompaniment: Timbre::Organ,
            drums: false,
            ..excerpt(9)
        },
        None,
    )?;
    // originals: the synthesizer plays every note of a timbre with the same
    // waveform, so a piece in a training song's key at nearly its tempo
    // (seed 101: song05's key, 97 against 95 bpm) shares many exact
    // spectral peaks with it, which landmarks rightly find; these three
    // are in other keys or tempos
    for (i, seed) in [102u64, 103, 106].iter().enumerate() {
        clip(
            &format!("{}_original_{seed}.wav", (b'e' + i as u8) as char),
            *seed,
            Render {
                duration_s: Some(20.0),
                ..base(*seed)
            },
            None,
        )?;
    }

    let code = super::index::run(&super::index::Config {
        paths: vec![train.clone()],
        out: index.clone(),
        add: false,
        batch: Default::default(),
    })?;
    anyhow::ensure!(code == ExitCode::SUCCESS, "indexing the demo songs failed");
    eprintln!(
        "\ndemo: auditing the generated clips (a-d copy training songs, e-g are originals):\n"
    );
    let result = super::audit::run(&super::audit::Config {
        index: index.clone(),
        paths: vec![clips.clone()],
        format: super::audit::Format::Csv,
        out: None,
        top: 3,
        audio_threshold: None,
        melody_threshold: None,
        summary: true,
        summary_out: None,
        html: cfg.html.clone(),
        verdicts: true,
        batch: Default::default(),
    });
    // the files go whatever became of the audit (its standard output may
    // have been closed early: `refrain demo | head -3`)
    if keep {
        eprintln!("demo: files kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Writes mono 16-bit PCM WAV.
fn write_wav(path: &Path, samples: &[f32], rate: u32) -> anyhow::Result<()> {
    std::fs::write(path, synth::wav_bytes(samples, rate))
        .with_context(|| format!("cannot write {}", path.display()))
}

//! `refrain inspect FILE`

use std::path::Path;
use std::process::ExitCode;

use refrain::analysis::Analyzer;
use refrain::fingerprint::Fingerprint;
use refrain::{decode, AnalysisParams};

pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let params = AnalysisParams::default();
    let head = read_head(file)?;
    let fp = if Fingerprint::looks_like(&head) {
        Fingerprint::read(file, &params)?
    } else {
        let audio = decode::decode_file(file, params.sample_rate)?;
        Analyzer::new(&params)
            .analyze(&audio)
            .map_err(|e| e.with_path(file))?
    };
    let m = &fp.melody;
    let mut out = String::new();
    macro_rules! outln {
        ($o:ident, $($t:tt)*) => {{
            use std::fmt::Write as _;
            let _ = writeln!($o, $($t)*);
        }};
    }
    outln!(out, "file            {}", file.display());
    outln!(
        out,
        "duration        {:.2} s ({} Hz, {} channel(s))",
        fp.source.duration_s,
        fp.source.sample_rate,
        fp.source.channels
    );
    let mix = if fp.source.channels <= 1 {
        "mono as it is".to_string()
    } else if fp.source.cancelled_s > 0.0 {
        format!(
            "the mean of the channels, except {:.1} s where they cancel, taken as {}",
            fp.source.cancelled_s,
            if fp.source.channels == 2 {
                "the left-right difference"
            } else {
                "the first channel"
            }
        )
    } else {
        "the mean of the channels".to_string()
    };
    outln!(out, "analysed as     {mix}");
    if let Some(n) = decode::cancelled_note(&fp.source) {
        eprintln!("refrain: warning: {}: {n}", file.display());
    }
    outln!(
        out,
        "tuning          {:+.1} cents from A4 = 440 Hz",
        fp.tuning_cents
    );
    match m.range_cents() {
        Some((lo, hi)) => outln!(
            out,
            "melody range    {} to {} ({:.0}–{:.0} Hz, 5th–95th percentile)",
            note_name(lo),
            note_name(hi),
            cents_to_hz(lo),
            cents_to_hz(hi)
        ),
        None => outln!(out, "melody range    (no voiced frames)"),
    }
    outln!(out, "voiced share    {:.1} %", 100.0 * m.voiced_share());
    outln!(
        out,
        "frames          {} chroma at {:.1}/s, {} CENS at {:.1}/s, {} melody at {:.0}/s",
        fp.chroma.nrows(),
        params.chroma_rate(),
        fp.cens.nrows(),
        params.cens_rate(),
        m.cents.len(),
        1.0 / params.melody_frame_seconds()
    );
    outln!(
        out,
        "windows         {} embeddings of {} dimensions",
        fp.embeddings.nrows(),
        fp.embeddings.ncols()
    );
    super::print_out(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn read_head(file: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let meta =
        std::fs::metadata(file).map_err(|e| anyhow::anyhow!("{}: open: {e}", file.display()))?;
    if !meta.is_file() {
        return Err(refrain::inputs::not_a_file(file).into());
    }
    let mut f =
        std::fs::File::open(file).map_err(|e| anyhow::anyhow!("{}: open: {e}", file.display()))?;
    let mut head = vec![0u8; 8];
    let n = f.read(&mut head)?;
    head.truncate(n);
    Ok(head)
}

fn cents_to_hz(c: f32) -> f32 {
    440.0 * 2f32.powf((c - 6900.0) / 1200.0)
}

fn note_name(c: f32) -> String {
    let midi = (c / 100.0).round() as i32;
    let name = refrain::chroma::PITCH_CLASSES[midi.rem_euclid(12) as usize];
    format!("{name}{}", midi / 12 - 1)
}

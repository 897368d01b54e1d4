//! Audit reports as CSV (one row per input, the fixed header below) and as
//! JSON (the same facts plus the top candidates and the raw numbers). The
//! schema is documented in `reports/README.md`.

use std::io::Write;

use serde::Serialize;

use crate::audit::Report;
use crate::index::Thresholds;

/// The CSV header, exactly.
pub const CSV_HEADER: [&str; 12] = [
    "input",
    "verdict",
    "match",
    "audio_score",
    "melody_score",
    "query_start_s",
    "query_end_s",
    "match_start_s",
    "match_end_s",
    "transpose_semitones",
    "tempo_ratio",
    "error",
];

/// The outcome for one input: a report, or the reason it could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The input as given.
    pub input: String,
    /// The report, when the input could be audited.
    #[serde(flatten)]
    pub report: Option<Report>,
    /// Why the input could not be audited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Outcome {
    /// `pass`, `flag` or `error`.
    pub fn verdict(&self) -> &'static str {
        match &self.report {
            Some(r) => r.verdict.as_str(),
            None => "error",
        }
    }
}

fn f(x: f32) -> String {
    format!("{x:.4}")
}

/// Writes the CSV report.
///
/// # Errors
///
/// The writer's I/O errors, as `csv::Error`.
pub fn write_csv<W: Write>(out: W, outcomes: &[Outcome]) -> csv::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_HEADER)?;
    for o in outcomes {
        let mut row: Vec<String> = vec![o.input.clone(), o.verdict().to_string()];
        match o.report.as_ref().and_then(|r| r.best()) {
            Some(c) => row.extend([
                c.path.clone(),
                f(c.audio_score),
                f(c.melody_score),
                format!("{:.2}", c.query_start_s),
                format!("{:.2}", c.query_end_s),
                format!("{:.2}", c.match_start_s),
                format!("{:.2}", c.match_end_s),
                format!("{:.2}", c.transpose_semitones),
                format!("{:.3}", c.tempo_ratio),
            ]),
            None => row.extend(std::iter::repeat_n(String::new(), 9)),
        }
        row.push(o.error.clone().unwrap_or_default());
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

/// The JSON report document.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    /// Always `refrain-audit`.
    pub format: &'static str,
    /// Schema version of this document.
    pub version: u32,
    /// The index audited against.
    pub index: String,
    /// The thresholds applied, and the false-positive rate they were set for.
    pub thresholds: &'a Thresholds,
    /// One entry per input.
    pub results: &'a [Outcome],
}

/// Writes the JSON report.
///
/// # Errors
///
/// The writer's I/O errors, as `serde_json::Error`.
pub fn write_json<W: Write>(
    out: W,
    index: &str,
    thresholds: &Thresholds,
    outcomes: &[Outcome],
) -> serde_json::Result<()> {
    serde_json::to_writer_pretty(
        out,
        &JsonReport {
            format: "refrain-audit",
            version: 1,
            index: index.to_string(),
            thresholds,
            results: outcomes,
        },
    )
}

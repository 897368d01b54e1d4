//! Audit reports as CSV (one row per input, the fixed header below) and as
//! JSON (the same facts plus the top candidates and the raw numbers). The
//! schema is documented in `reports/README.md`.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::audit::Report;
use crate::index::Thresholds;

/// The CSV's contract columns, in order: readers written for the first
/// version of the report rely on them (by name or by position).
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

/// Columns appended after [`CSV_HEADER`], in order: why a row flags
/// (`audio`, `melody`, `audio+melody`, or empty), the thresholds it was
/// judged by, and the report's notes joined by `; `.
pub const CSV_APPENDED: [&str; 4] = ["reason", "audio_threshold", "melody_threshold", "note"];

/// Why a report flags: `audio` (same recording), `melody` (same music),
/// `audio+melody`, or empty for a pass (judged on the best candidate, the
/// one the verdict is about).
pub fn reason(report: &Report) -> &'static str {
    let Some(c) = report.best() else {
        return "";
    };
    let t = &report.thresholds;
    match (c.audio_score >= t.audio, c.melody_score >= t.melody) {
        (true, true) => "audio+melody",
        (true, false) => "audio",
        (false, true) => "melody",
        (false, false) => "",
    }
}

/// The outcome for one input: a report, or the reason it could not be read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// The input as given.
    pub input: String,
    /// The report, when the input could be audited.
    #[serde(flatten)]
    pub report: Option<Report>,
    /// Why the input could not be audited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// Writes the CSV report: [`CSV_HEADER`], then [`CSV_APPENDED`].
///
/// # Errors
///
/// A [`csv::Error`] when writing to `out` fails.
pub fn write_csv<W: Write>(out: W, outcomes: &[Outcome]) -> csv::Result<()> {
    write_csv_with(out, outcomes, &[], |_| Vec::new())
}

/// Writes the CSV report with the columns of [`write_csv`], then `extra`
/// columns (e.g. `set`), their values for outcome `i` from `values(i)`.
///
/// # Errors
///
/// A [`csv::Error`] when writing to `out` fails.
pub fn write_csv_with<W: Write>(
    out: W,
    outcomes: &[Outcome],
    extra: &[&str],
    values: impl Fn(usize) -> Vec<String>,
) -> csv::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let header: Vec<&str> = CSV_HEADER
        .into_iter()
        .chain(CSV_APPENDED)
        .chain(extra.iter().copied())
        .collect();
    w.write_record(&header)?;
    for (i, o) in outcomes.iter().enumerate() {
        let mut row = csv_row(o);
        let mut more = values(i);
        more.resize(extra.len(), String::new());
        row.extend(more);
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

/// One outcome's values of [`CSV_HEADER`] and [`CSV_APPENDED`].
fn csv_row(o: &Outcome) -> Vec<String> {
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
    match &o.report {
        Some(r) => row.extend([
            reason(r).to_string(),
            f(r.thresholds.audio),
            f(r.thresholds.melody),
            r.notes.join("; "),
        ]),
        None => row.extend(std::iter::repeat_n(String::new(), 4)),
    }
    row
}

/// Schema version of the JSON report. Version 2 added `index_info`, the
/// calibration record in `thresholds` (`calibrated_at`, `durations_s`,
/// `excluded_suspects`), `notes` and, for flagged inputs audited with
/// evidence, `evidence`; every version-1 field is still there. Version 3
/// changed the candidates' `raw` numbers to the note and harmony evidence
/// that melody scores are now built from (`melodic_votes`, `harmony_score`,
/// `harmony_null`, `notes_bits`, ... in place of `harmony_evidence`,
/// `melody`, `melody_frames`); older documents still read, their missing
/// `raw` numbers as 0.
pub const JSON_VERSION: u32 = 3;

/// What the report says about the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// Training items.
    pub items: usize,
    /// Hours of training audio.
    pub hours: f64,
    /// The index's format version.
    pub format_version: u32,
}

/// The JSON report document, as written.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    /// Always `refrain-audit`.
    pub format: &'static str,
    /// Schema version of this document ([`JSON_VERSION`]).
    pub version: u32,
    /// The index audited against.
    pub index: String,
    /// The index's size and format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_info: Option<&'a IndexInfo>,
    /// The thresholds applied, and the false-positive rate they were set for.
    pub thresholds: &'a Thresholds,
    /// One entry per input.
    pub results: &'a [Outcome],
}

/// The JSON report document, as read back (versions 1 and 2).
#[derive(Debug, Clone, Deserialize)]
pub struct AuditDocument {
    /// `refrain-audit`.
    pub format: String,
    /// Schema version.
    pub version: u32,
    /// The index audited against.
    pub index: String,
    /// The index's size and format (version 2).
    #[serde(default)]
    pub index_info: Option<IndexInfo>,
    /// The thresholds applied.
    pub thresholds: Thresholds,
    /// One entry per input.
    pub results: Vec<Outcome>,
}

/// Writes the JSON report.
///
/// # Errors
///
/// A [`serde_json::Error`] when writing to `out` fails.
pub fn write_json<W: Write>(
    out: W,
    index: &str,
    index_info: Option<&IndexInfo>,
    thresholds: &Thresholds,
    outcomes: &[Outcome],
) -> serde_json::Result<()> {
    serde_json::to_writer_pretty(
        out,
        &JsonReport {
            format: "refrain-audit",
            version: JSON_VERSION,
            index: index.to_string(),
            index_info,
            thresholds,
            results: outcomes,
        },
    )
}

/// Reads a JSON report written by [`write_json`] (schema version 1 or 2).
///
/// # Errors
///
/// [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt) (stage `open`, with
/// the file named by the caller's [`Error::with_path`](crate::Error::with_path))
/// when the text is not such a report, or is of a later version.
pub fn read_json(text: &str) -> crate::Result<AuditDocument> {
    use crate::{Error, ErrorKind, Stage};
    let bad = |m: String| Error::new(Stage::Open, ErrorKind::Corrupt(m));
    let doc: AuditDocument = serde_json::from_str(text)
        .map_err(|e| bad(format!("not a Refrain audit report (JSON): {e}")))?;
    if doc.format != "refrain-audit" {
        return Err(bad(format!(
            "format `{}`, expected `refrain-audit`",
            doc.format
        )));
    }
    if doc.version > JSON_VERSION {
        return Err(Error::new(
            Stage::Open,
            ErrorKind::Version {
                found: doc.version,
                expected: JSON_VERSION,
            },
        ));
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_report_still_reads_and_later_versions_are_named() {
        // as the first version wrote it: no index_info, no notes, no
        // evidence, no calibration record in the thresholds
        let v1 = r#"{
  "format": "refrain-audit", "version": 1, "index": "idx",
  "thresholds": { "audio": 0.3, "melody": 0.32, "method": "calibrated", "target_fpr": 0.01,
                  "negatives": 70, "fpr_upper_95": 0.042, "flagged_negatives": 0 },
  "results": [
    { "input": "a.wav", "verdict": "flag", "duration_s": 20.1,
      "thresholds": { "audio": 0.3, "melody": 0.32, "method": "calibrated", "target_fpr": 0.01,
                      "negatives": 70, "fpr_upper_95": 0.042, "flagged_negatives": 0 },
      "candidates": [ { "item": 2, "path": "s.wav", "audio_score": 0.94, "melody_score": 0.2,
          "query_start_s": 0.0, "query_end_s": 20.15, "match_start_s": 7.98, "match_end_s": 28.14,
          "transpose_semitones": 0.0, "tempo_ratio": 1.0,
          "raw": { "votes": 35.2, "harmony": 3.9, "harmony_frames": 101, "melody": 0.8,
                   "melody_frames": 190, "audio_corr": 0.91 } } ] },
    { "input": "broken.flac", "error": "broken.flac: decode: damaged" } ] }"#;
        let doc = read_json(v1).unwrap();
        assert_eq!(doc.results.len(), 2);
        let r = doc.results[0].report.as_ref().unwrap();
        assert_eq!(reason(r), "audio");
        assert!(r.evidence.is_none() && r.notes.is_empty() && r.thresholds.durations_s.is_none());
        assert!(doc.results[1].report.is_none());
        assert_eq!(doc.results[1].verdict(), "error");
        let v9 = v1.replace("\"version\": 1", "\"version\": 9");
        let e = read_json(&v9).unwrap_err().to_string();
        assert!(e.contains("version 9"), "{e}");
        assert!(read_json("{\"format\": \"x\"}").is_err());
    }
}

//! Scoring a results table against an evaluation set's labels, exactly as
//! the development set's scorer (`shared/eval/score.py`) does, so that
//! `refrain eval` prints the numbers the scorer would.
//!
//! The labels (`truth.tsv`) are one line per query: its path relative to the
//! set, the expected training stems (`|`-separated, `-` for a negative) and
//! a class. Per class: *identification* (the top match is right), *recall*
//! (flagged and the top match right), the AUC of `max(audio, melody)`
//! against the negatives, and the true-positive rate at the score threshold
//! that flags at most 1 % of the negatives (score alone, and score with the
//! right match). A query without a row, or with an `error` verdict, is a
//! miss with score 0.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result, Stage};
use crate::report::Outcome;

/// One labelled query.
#[derive(Debug, Clone, PartialEq)]
pub struct TruthRow {
    /// The query's path, relative to the evaluation set.
    pub query: String,
    /// Accepted training stems; empty for a negative.
    pub expected: Vec<String>,
    /// The class (`neg` for negatives).
    pub class: String,
}

/// The part of a results row that scoring reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    /// The input as written in the results.
    pub input: String,
    /// `pass`, `flag` or `error`.
    pub verdict: String,
    /// The reported match (a path or stem), possibly empty.
    pub matched: String,
    /// `audio_score`, when it parses as a finite number.
    pub audio: Option<f64>,
    /// `melody_score`, when it parses as a finite number.
    pub melody: Option<f64>,
}

/// Parses `truth.tsv` text (comments and short lines are skipped).
pub fn parse_truth(text: &str) -> Vec<TruthRow> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split('\t').collect();
        if parts.len() < 3 {
            continue;
        }
        let exp = parts[1].trim();
        let cls = parts[2].trim();
        let expected: Vec<String> = if exp == "-" || exp.is_empty() {
            Vec::new()
        } else {
            exp.split('|').map(stem).collect()
        };
        let class = if expected.is_empty() && (cls.is_empty() || cls == "-") {
            "neg".to_string()
        } else {
            cls.to_string()
        };
        rows.push(TruthRow {
            query: parts[0].to_string(),
            expected,
            class,
        });
    }
    rows
}

/// Reads a `truth.tsv` file.
///
/// # Errors
///
/// At [`Stage::Calibrate`], naming `path`: [`ErrorKind::Io`] when it cannot
/// be read, [`ErrorKind::Corrupt`] when a line is not a truth row.
pub fn read_truth(path: &Path) -> Result<Vec<TruthRow>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::at(path, Stage::Calibrate, ErrorKind::Io(e)))?;
    Ok(parse_truth(&text))
}

/// The rows of audit outcomes as the CSV report writes them (scores rounded
/// to 4 decimals), so scoring them equals scoring the CSV.
pub fn rows_of(outcomes: &[Outcome]) -> Vec<ResultRow> {
    outcomes
        .iter()
        .map(|o| {
            let best = o.report.as_ref().and_then(|r| r.best());
            let round = |x: f32| format!("{x:.4}").parse::<f64>().ok();
            ResultRow {
                input: o.input.clone(),
                verdict: o.verdict().to_string(),
                matched: best.map(|c| c.path.clone()).unwrap_or_default(),
                audio: best.and_then(|c| round(c.audio_score)),
                melody: best.and_then(|c| round(c.melody_score)),
            }
        })
        .collect()
}

/// Reads a results CSV with the audit report's header.
///
/// # Errors
///
/// At [`Stage::Calibrate`], naming `path`: [`ErrorKind::Io`] when it cannot
/// be read, [`ErrorKind::Corrupt`] when it is not such a CSV.
pub fn read_results(path: &Path) -> Result<Vec<ResultRow>> {
    let err = |m: String| Error::at(path, Stage::Calibrate, ErrorKind::Corrupt(m));
    let mut r = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let header = r.headers().map_err(|e| err(e.to_string()))?.clone();
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let input = col("input").ok_or_else(|| err("no `input` column".into()))?;
    let (verdict, matched, audio, melody) = (
        col("verdict"),
        col("match"),
        col("audio_score"),
        col("melody_score"),
    );
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| err(e.to_string()))?;
        let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").trim().to_string();
        let num = |c: Option<usize>| get(c).parse::<f64>().ok().filter(|v| v.is_finite());
        let inp = get(Some(input));
        if inp.is_empty() {
            continue;
        }
        rows.push(ResultRow {
            input: inp,
            verdict: get(verdict),
            matched: get(matched),
            audio: num(audio),
            melody: num(melody),
        });
    }
    Ok(rows)
}

/// A file name without its directory and its (possibly stacked) audio
/// extensions: `a/b/x.opus.wav` → `x`.
pub fn stem(p: &str) -> String {
    let p = p.trim().replace('\\', "/");
    let mut b = p.rsplit('/').next().unwrap_or("").to_string();
    const EXT: [&str; 10] = [
        "wav", "flac", "mp3", "ogg", "opus", "m4a", "aac", "mid", "aiff", "aif",
    ];
    loop {
        match b.rfind('.') {
            Some(i) if i > 0 && EXT.iter().any(|e| b[i + 1..].eq_ignore_ascii_case(e)) => {
                b.truncate(i)
            }
            _ => return b,
        }
    }
}

/// A path with `.` components and repeated separators removed, `/`-separated.
fn norm_path(p: &str) -> String {
    let p = p.trim().replace('\\', "/");
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let j = parts.join("/");
    match (absolute, j.is_empty()) {
        (true, _) => format!("/{j}"),
        (false, true) => ".".into(),
        (false, false) => j,
    }
}

/// Results looked up the way the scorer does: the exact path, then a path
/// that ends with the other, then a unique file name. Gives the position of
/// the row among the inputs it was built from.
struct Lookup {
    by_path: HashMap<String, usize>,
    order: Vec<String>,
    by_base: HashMap<String, Vec<usize>>,
}

impl Lookup {
    fn new<'s>(inputs: impl IntoIterator<Item = &'s str>) -> Self {
        let mut l = Lookup {
            by_path: HashMap::new(),
            order: Vec::new(),
            by_base: HashMap::new(),
        };
        for (i, input) in inputs.into_iter().enumerate() {
            let n = norm_path(input);
            if let std::collections::hash_map::Entry::Vacant(e) = l.by_path.entry(n.clone()) {
                e.insert(i);
                l.order.push(n);
            }
            let base = input.rsplit('/').next().unwrap_or("").to_string();
            l.by_base.entry(base).or_default().push(i);
        }
        l
    }

    fn find(&self, q: &str) -> Option<usize> {
        let n = norm_path(q);
        if let Some(&i) = self.by_path.get(&n) {
            return Some(i);
        }
        for k in &self.order {
            if k.ends_with(&format!("/{n}")) || n.ends_with(&format!("/{k}")) {
                return self.by_path.get(k).copied();
            }
        }
        let base = q.rsplit('/').next().unwrap_or("");
        match self.by_base.get(base) {
            Some(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Rec {
    class: String,
    positive: bool,
    score: f64,
    flag: bool,
    correct: bool,
    miss: bool,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassRow {
    /// Class name (or a group such as `copy (all transforms)`).
    pub name: String,
    /// Queries.
    pub n: usize,
    /// Share whose top match is right.
    pub identified: f64,
    /// Share flagged with the right top match.
    pub recall: f64,
    /// AUC of the score against the negatives.
    pub auc: Option<f64>,
    /// Share above the 1 %-FPR score threshold.
    pub tpr_at_1: Option<f64>,
    /// Share above it with the right match.
    pub id_tpr_at_1: Option<f64>,
    /// Missing rows and errors.
    pub missed: usize,
}

/// The whole scorecard.
#[derive(Debug, Clone, PartialEq)]
pub struct Scorecard {
    /// Negatives scored.
    pub negatives: usize,
    /// Score threshold flagging at most 1 % of them (detections are `>`).
    pub threshold: Option<f64>,
    /// Per class (near-copy classes first), then the groups.
    pub rows: Vec<ClassRow>,
    /// Negatives flagged by their verdict.
    pub negatives_flagged: usize,
    /// Negatives missing or in error.
    pub negatives_missed: usize,
    /// Labelled queries without a row.
    pub missing: usize,
    /// Labelled queries.
    pub total: usize,
}

impl Scorecard {
    /// The row named `name`.
    pub fn row(&self, name: &str) -> Option<&ClassRow> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// The negatives' verdict false-positive rate.
    pub fn negative_fpr(&self) -> Option<f64> {
        (self.negatives > 0).then(|| self.negatives_flagged as f64 / self.negatives as f64)
    }

    /// The table as the scorer prints it (without its first line).
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "negatives: n={}  score threshold at <=1% FPR: {}\n",
            self.negatives,
            match self.threshold {
                None => "-".to_string(),
                Some(t) if t.is_finite() => format!("{t:.4}"),
                Some(_) => "-inf".to_string(),
            }
        ));
        s.push_str(&format!(
            "{:<22} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}\n",
            "class", "n", "ident", "recall", "AUC", "TPR@1%", "idTPR1", "err/miss"
        ));
        let line = "-".repeat(72);
        let first_group = self
            .rows
            .iter()
            .position(|r| r.name == COPY_GROUP || r.name == MELODY_GROUP);
        for (i, r) in self.rows.iter().enumerate() {
            if Some(i) == first_group {
                s.push_str(&line);
                s.push('\n');
            }
            s.push_str(&format!(
                "{:<22} {:5} {} {} {} {} {} {:6}\n",
                r.name,
                r.n,
                fmt(Some(r.identified), true),
                fmt(Some(r.recall), true),
                fmt(r.auc, false),
                fmt(r.tpr_at_1, true),
                fmt(r.id_tpr_at_1, true),
                r.missed
            ));
        }
        s.push_str(&line);
        s.push('\n');
        s.push_str(&format!(
            "{:<22} {:5} flagged={} FPR={}  err/miss={}\n",
            "neg (verdict FPR)",
            self.negatives,
            self.negatives_flagged,
            fmt(self.negative_fpr(), true).trim(),
            self.negatives_missed
        ));
        s.push_str(&format!(
            "rows missing from results: {} of {}\n",
            self.missing, self.total
        ));
        s
    }
}

fn fmt(v: Option<f64>, pct: bool) -> String {
    match v {
        None => "   -  ".into(),
        Some(v) if pct => format!("{:5.1}%", 100.0 * v),
        Some(v) => format!("{v:6.3}"),
    }
}

/// Mann–Whitney AUC with average ranks for ties.
pub fn auc(pos: &[f64], neg: &[f64]) -> Option<f64> {
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = pos
        .iter()
        .map(|&v| (v, true))
        .chain(neg.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let avg = (i + j + 1) as f64 / 2.0;
        rank_sum += avg * all[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let np = pos.len() as f64;
    Some((rank_sum - np * (np + 1.0) / 2.0) / (np * neg.len() as f64))
}

/// The score above which at most `⌊fpr·n⌋` negatives lie.
fn threshold_at_fpr(neg: &[f64], fpr: f64) -> Option<f64> {
    if neg.is_empty() {
        return None;
    }
    let mut s = neg.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    let k = (fpr * s.len() as f64).floor() as usize;
    Some(if k < s.len() { s[k] } else { f64::NEG_INFINITY })
}

/// Scores `results` against `truth`.
pub fn score(truth: &[TruthRow], results: &[ResultRow]) -> Scorecard {
    let lookup = Lookup::new(results.iter().map(|r| r.input.as_str()));
    let mut missing = 0;
    let recs: Vec<Rec> = truth
        .iter()
        .map(|t| {
            let positive = !t.expected.is_empty();
            let Some(r) = lookup.find(&t.query).map(|i| &results[i]) else {
                missing += 1;
                return Rec {
                    class: t.class.clone(),
                    positive,
                    score: 0.0,
                    flag: false,
                    correct: false,
                    miss: true,
                };
            };
            let verdict = r.verdict.to_lowercase();
            let err = verdict != "pass" && verdict != "flag";
            let mut sc = [r.audio, r.melody]
                .into_iter()
                .flatten()
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                .unwrap_or(0.0)
                .clamp(0.0, 1.0);
            if err {
                sc = 0.0;
            }
            let correct =
                positive && !r.matched.is_empty() && t.expected.contains(&stem(&r.matched));
            Rec {
                class: t.class.clone(),
                positive,
                score: sc,
                flag: verdict == "flag",
                correct,
                miss: err,
            }
        })
        .collect();
    let negs: Vec<&Rec> = recs.iter().filter(|r| !r.positive).collect();
    let neg_scores: Vec<f64> = negs.iter().map(|r| r.score).collect();
    let thr = threshold_at_fpr(&neg_scores, 0.01);
    let row = |name: &str, rs: &[&Rec]| -> ClassRow {
        let n = rs.len();
        let share = |f: &dyn Fn(&Rec) -> bool| rs.iter().filter(|r| f(r)).count() as f64 / n as f64;
        let pos: Vec<f64> = rs.iter().map(|r| r.score).collect();
        ClassRow {
            name: name.to_string(),
            n,
            identified: share(&|r| r.correct),
            recall: share(&|r| r.correct && r.flag),
            auc: auc(&pos, &neg_scores),
            tpr_at_1: thr.map(|t| share(&|r| r.score > t)),
            id_tpr_at_1: thr.map(|t| share(&|r| r.score > t && r.correct)),
            missed: rs.iter().filter(|r| r.miss).count(),
        }
    };
    let mut classes: Vec<String> = Vec::new();
    for r in recs.iter().filter(|r| r.positive) {
        if !classes.contains(&r.class) {
            classes.push(r.class.clone());
        }
    }
    classes.sort_by(|a, b| (!a.starts_with("copy_"), a).cmp(&(!b.starts_with("copy_"), b)));
    let of =
        |pred: &dyn Fn(&Rec) -> bool| -> Vec<&Rec> { recs.iter().filter(|r| pred(r)).collect() };
    let mut rows: Vec<ClassRow> = classes
        .iter()
        .map(|c| row(c, &of(&|r: &Rec| r.positive && &r.class == c)))
        .collect();
    if classes.iter().filter(|c| c.starts_with("copy_")).count() > 1 {
        rows.push(row(
            COPY_GROUP,
            &of(&|r: &Rec| r.positive && r.class.starts_with("copy_")),
        ));
    }
    if classes.iter().filter(|c| c.starts_with("melody")).count() > 1 {
        rows.push(row(
            MELODY_GROUP,
            &of(&|r: &Rec| r.positive && r.class.starts_with("melody")),
        ));
    }
    let all = of(&|r: &Rec| r.positive);
    if !all.is_empty() {
        rows.push(row("ALL positives", &all));
    }
    Scorecard {
        negatives: negs.len(),
        threshold: thr,
        rows,
        negatives_flagged: negs.iter().filter(|r| r.flag).count(),
        negatives_missed: negs.iter().filter(|r| r.miss).count(),
        missing,
        total: recs.len(),
    }
}

/// Candidate recall of one class: how often the right training item is
/// among the candidates an audit re-ranked, whatever their order and
/// scores. It bounds what re-ranking and scoring can find.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateRecall {
    /// Class name, or [`MELODY_GROUP`] / `ALL positives`.
    pub name: String,
    /// Positive queries of the class.
    pub n: usize,
    /// Share whose right item is among the re-ranked candidates.
    pub among_candidates: f64,
    /// Mean number of candidates re-ranked per query.
    pub mean_candidates: f64,
}

/// Candidate recall per positive class, from outcomes whose reports list
/// every re-ranked candidate (an audit with `top_k` at least the number of
/// candidates gathered, as `refrain eval` runs it). Queries are found among
/// the outcomes as [`score`] finds them; a query without an outcome, or
/// with an error, counts as a miss with no candidates. Classes are ordered
/// as in [`score`]; the `melody*` classes are also summed as
/// [`MELODY_GROUP`], and every positive as `ALL positives`.
pub fn candidate_recall(truth: &[TruthRow], outcomes: &[Outcome]) -> Vec<CandidateRecall> {
    let lookup = Lookup::new(outcomes.iter().map(|o| o.input.as_str()));
    let recs: Vec<(&str, bool, usize)> = truth
        .iter()
        .filter(|t| !t.expected.is_empty())
        .map(|t| {
            let cands = lookup
                .find(&t.query)
                .and_then(|i| outcomes[i].report.as_ref())
                .map(|r| r.candidates.as_slice())
                .unwrap_or(&[]);
            let found = cands.iter().any(|c| t.expected.contains(&stem(&c.path)));
            (t.class.as_str(), found, cands.len())
        })
        .collect();
    let row = |name: &str, pred: &dyn Fn(&str) -> bool| {
        let rs: Vec<_> = recs.iter().filter(|r| pred(r.0)).collect();
        let n = rs.len().max(1) as f64;
        CandidateRecall {
            name: name.to_string(),
            n: rs.len(),
            among_candidates: rs.iter().filter(|r| r.1).count() as f64 / n,
            mean_candidates: rs.iter().map(|r| r.2 as f64).sum::<f64>() / n,
        }
    };
    let mut classes: Vec<&str> = Vec::new();
    for r in &recs {
        if !classes.contains(&r.0) {
            classes.push(r.0);
        }
    }
    classes.sort_by(|a, b| (!a.starts_with("copy_"), a).cmp(&(!b.starts_with("copy_"), b)));
    let mut rows: Vec<CandidateRecall> =
        classes.iter().map(|c| row(c, &|k: &str| k == *c)).collect();
    if classes.iter().filter(|c| c.starts_with("melody")).count() > 1 {
        rows.push(row(MELODY_GROUP, &|k: &str| k.starts_with("melody")));
    }
    if !recs.is_empty() {
        rows.push(row("ALL positives", &|_| true));
    }
    rows
}

/// The candidate-recall table, one line per row of [`candidate_recall`].
pub fn render_candidate_recall(rows: &[CandidateRecall]) -> String {
    let mut s = format!(
        "{:<22} {:>5} {:>10} {:>10}\n",
        "class", "n", "among", "candidates"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<22} {:5} {:9.1}% {:10.1}\n",
            r.name,
            r.n,
            100.0 * r.among_candidates,
            r.mean_candidates
        ));
    }
    s
}

/// The row that sums every `copy_*` class (as `score.py` does).
pub const COPY_GROUP: &str = "copy (all transforms)";
/// The row that sums every `melody*` class (`score.py`'s "melody (all)",
/// its SUMMARY's `melody_recall`).
pub const MELODY_GROUP: &str = "melody (all)";

/// The source of a negative file, so that excerpts of one recording stay on
/// one side of a calibration/test split: the file stem up to `__`, or
/// without its last `_word` when it has no `__`
/// (`drascula_track3__o70_20s_aac_96k` → `drascula_track3`,
/// `bach_bwv154_8_piano` → `bach_bwv154_8`).
pub fn source_key(path: &str) -> String {
    let s = stem(path);
    if let Some((head, _)) = s.split_once("__") {
        return head.to_string();
    }
    match s.rsplit_once('_') {
        Some((head, _)) if !head.is_empty() => head.to_string(),
        _ => s,
    }
}

/// Splits files into a calibration and a test side by their
/// [`source_key`]: sources are ordered by a hash of their key (fixed, not
/// random) and the first `share` of them calibrate. Returns
/// `(calibration, test)`.
pub fn split_by_source<T: Clone>(
    files: &[T],
    name: impl Fn(&T) -> String,
    share: f64,
) -> (Vec<T>, Vec<T>) {
    let mut keys: Vec<String> = files.iter().map(|f| source_key(&name(f))).collect();
    keys.sort();
    keys.dedup();
    keys.sort_by_key(|k| *blake3::hash(k.as_bytes()).as_bytes());
    let n_cal = ((keys.len() as f64) * share.clamp(0.0, 1.0)).round() as usize;
    let cal: std::collections::HashSet<&String> = keys[..n_cal].iter().collect();
    let mut a = Vec::new();
    let mut b = Vec::new();
    for f in files {
        if cal.contains(&source_key(&name(f))) {
            a.push(f.clone());
        } else {
            b.push(f.clone());
        }
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    fn row(input: &str, verdict: &str, m: &str, score: f64) -> ResultRow {
        ResultRow {
            input: input.into(),
            verdict: verdict.into(),
            matched: m.into(),
            audio: Some(score / 2.0),
            melody: Some(score),
        }
    }

    #[test]
    fn stems_and_sources() {
        assert_eq!(stem("a/b/x.opus.wav"), "x");
        assert_eq!(stem("train/song.WAV"), "song");
        assert_eq!(stem("x.txt"), "x.txt");
        assert_eq!(
            source_key("neg/drascula_track3__o70_20s_aac_96k.m4a"),
            "drascula_track3"
        );
        assert_eq!(source_key("neg/bach_bwv154_8_piano.wav"), "bach_bwv154_8");
        assert_eq!(
            source_key("bach_bwv154_8__strings+2_66bpm.wav"),
            "bach_bwv154_8"
        );
        assert_eq!(norm_path("./a//b/../c"), "a/c");
    }

    #[test]
    fn auc_counts_ties_as_half() {
        assert_eq!(auc(&[0.9, 0.8], &[0.1, 0.2]), Some(1.0));
        assert_eq!(auc(&[0.5], &[0.5]), Some(0.5));
        assert_abs_diff_eq!(auc(&[0.3, 0.7], &[0.5]).unwrap(), 0.5);
    }

    #[test]
    fn a_small_set_scores_as_computed_by_hand() {
        let truth = parse_truth(
            "q/copy_a/1.wav\tsong1\tcopy_a\n\
             q/copy_a/2.wav\tsong2|song3\tcopy_a\n\
             q/melody/3.wav\tsong1\tmelody\n\
             # comment\n\
             n/n1.wav\t-\tneg\n\
             n/n2.wav\t-\tneg\n\
             n/n3.wav\t-\tneg\n",
        );
        assert_eq!(truth.len(), 6);
        let results = vec![
            row("/abs/q/copy_a/1.wav", "flag", "train/song1.wav", 0.9),
            row("q/copy_a/2.wav", "pass", "song3", 0.4),
            // 3.wav has no row: a miss
            row("n/n1.wav", "pass", "song1", 0.3),
            row("n/n2.wav", "flag", "song2", 0.6),
            row("n/n3.wav", "error", "", 0.0),
        ];
        let s = score(&truth, &results);
        assert_eq!(s.negatives, 3);
        assert_eq!(s.missing, 1);
        assert_eq!(s.negatives_flagged, 1);
        assert_eq!(s.negatives_missed, 1);
        // negatives' scores 0.6, 0.3, 0 (error): floor(0.03) = 0 → threshold 0.6
        assert_eq!(s.threshold, Some(0.6));
        let a = s.row("copy_a").unwrap();
        assert_eq!((a.n, a.identified, a.recall), (2, 1.0, 0.5));
        // positives 0.9 and 0.4 against 0.6, 0.3, 0: 3 + 2 wins of 6
        assert_abs_diff_eq!(a.auc.unwrap(), 5.0 / 6.0);
        assert_eq!(a.tpr_at_1, Some(0.5));
        let m = s.row("melody").unwrap();
        assert_eq!((m.n, m.missed, m.recall), (1, 1, 0.0));
        assert!(
            s.row("copy (all transforms)").is_none(),
            "one copy class only"
        );
        assert_eq!(s.row("ALL positives").unwrap().n, 3);
        let text = s.render();
        assert!(
            text.contains("neg (verdict FPR)          3 flagged=1 FPR=33.3%  err/miss=1"),
            "{text}"
        );
    }

    /// Classes named `melody*` are summed as "melody (all)" (score.py's
    /// `melody_recall`), after the separator, as score.py prints them.
    #[test]
    fn melody_classes_are_summed_as_score_py_does() {
        let truth = parse_truth(
            "q/melody_solo/1.wav\tsong1\tmelody_solo\n\
             q/melody_solo/2.wav\tsong2\tmelody_solo\n\
             q/melody_accomp/3.wav\tsong3\tmelody_accomp\n\
             n/n1.wav\t-\tneg\n",
        );
        let results = vec![
            row("q/melody_solo/1.wav", "flag", "song1", 0.9),
            row("q/melody_solo/2.wav", "pass", "song2", 0.2),
            row("q/melody_accomp/3.wav", "flag", "song3", 0.8),
            row("n/n1.wav", "pass", "song1", 0.1),
        ];
        let s = score(&truth, &results);
        let m = s.row(MELODY_GROUP).unwrap();
        assert_eq!(m.n, 3);
        assert_abs_diff_eq!(m.recall, 2.0 / 3.0);
        let text = s.render();
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with("melody (all)"))
            .unwrap();
        assert!(lines[at - 1].starts_with("-----"), "{text}");
        assert!(lines[at + 1].starts_with("ALL positives"), "{text}");
        assert!(s.row(COPY_GROUP).is_none());
    }

    /// Candidate recall counts the right item anywhere among the
    /// candidates, not only first; missing and failed queries are misses.
    #[test]
    fn candidate_recall_counts_the_right_item_anywhere_in_the_list() {
        use crate::audit::{Candidate, Report, Verdict};
        use crate::index::Thresholds;
        let cand = |path: &str| Candidate {
            item: 0,
            path: path.into(),
            audio_score: 0.1,
            melody_score: 0.1,
            query_start_s: 0.0,
            query_end_s: 1.0,
            match_start_s: 0.0,
            match_end_s: 1.0,
            transpose_semitones: 0.0,
            tempo_ratio: 1.0,
            raw: Default::default(),
        };
        let out = |input: &str, paths: &[&str]| Outcome {
            input: input.into(),
            report: Some(Report {
                verdict: Verdict::Pass,
                duration_s: 10.0,
                thresholds: Thresholds::default(),
                candidates: paths.iter().map(|p| cand(p)).collect(),
                notes: Vec::new(),
                evidence: None,
            }),
            error: None,
        };
        let truth = parse_truth(
            "q/melody_solo/1.wav\tsong1\tmelody_solo\n\
             q/melody_solo/2.wav\tsong2\tmelody_solo\n\
             q/melody_accomp/3.wav\tsong3\tmelody_accomp\n\
             q/melody_accomp/4.wav\tsong4\tmelody_accomp\n\
             n/n1.wav\t-\tneg\n",
        );
        let outcomes = vec![
            // right item second: found
            out(
                "DEV/q/melody_solo/1.wav",
                &["train/x.wav", "train/song1.wav"],
            ),
            // not among them
            out("DEV/q/melody_solo/2.wav", &["train/x.wav"]),
            out("DEV/q/melody_accomp/3.wav", &["train/song3.flac"]),
            // 4 has no outcome; the negative is not counted
            out("DEV/n/n1.wav", &["train/song1.wav"]),
        ];
        let rows = candidate_recall(&truth, &outcomes);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "melody_accomp",
                "melody_solo",
                MELODY_GROUP,
                "ALL positives"
            ]
        );
        assert_eq!((rows[0].n, rows[1].n, rows[2].n), (2, 2, 4));
        assert_abs_diff_eq!(rows[0].among_candidates, 0.5);
        assert_abs_diff_eq!(rows[1].among_candidates, 0.5);
        assert_abs_diff_eq!(rows[2].among_candidates, 0.5);
        assert_abs_diff_eq!(rows[1].mean_candidates, 1.5);
        assert_abs_diff_eq!(rows[0].mean_candidates, 0.5);
        let text = render_candidate_recall(&rows);
        assert!(text.lines().nth(2).unwrap().contains("50.0%"), "{text}");
    }

    #[test]
    fn split_keeps_sources_together_and_is_fixed() {
        let files: Vec<String> = (0..20)
            .flat_map(|i| [format!("t{i}__a.wav"), format!("t{i}__b.wav")])
            .collect();
        let (a, b) = split_by_source(&files, |f| f.clone(), 0.5);
        assert_eq!((a.len(), b.len()), (20, 20));
        for f in &a {
            assert!(!b.iter().any(|g| source_key(g) == source_key(f)));
        }
        assert_eq!(split_by_source(&files, |f| f.clone(), 0.5).0, a);
    }
}

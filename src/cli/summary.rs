//! `--summary`: the batch's memorization rate and score distributions.

use refrain::index::Thresholds;
use refrain::report::Outcome;

/// Renders the summary table.
pub fn render(outcomes: &[Outcome], t: &Thresholds) -> String {
    let reports: Vec<_> = outcomes.iter().filter_map(|o| o.report.as_ref()).collect();
    let n = reports.len();
    let mut s = String::new();
    if n == 0 {
        return "summary: no input could be audited\n".into();
    }
    let best = |f: &dyn Fn(&refrain::audit::Candidate) -> f32| -> Vec<f32> {
        let mut v: Vec<f32> = reports
            .iter()
            .map(|r| r.best().map(f).unwrap_or(0.0))
            .collect();
        v.sort_by(f32::total_cmp);
        v
    };
    let audio = best(&|c| c.audio_score);
    let melody = best(&|c| c.melody_score);
    let share = |v: &[f32], thr: f32| v.iter().filter(|&&x| x >= thr).count();
    let any = reports
        .iter()
        .filter(|r| r.verdict == refrain::audit::Verdict::Flag)
        .count();
    let pct = |k: usize| 100.0 * k as f64 / n as f64;
    let q = |v: &[f32], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    s.push_str(&format!("summary over {n} audited input(s):\n"));
    s.push_str("  dimension   flagged        rate   best-score p10   p50    p90    max\n");
    for (name, v, thr) in [("audio", &audio, t.audio), ("melody", &melody, t.melody)] {
        let k = share(v, thr);
        s.push_str(&format!(
            "  {name:<10} {k:>5}/{n:<5} {:>6.1} %   {:>6.3}        {:>6.3} {:>6.3} {:>6.3}\n",
            pct(k),
            q(v, 0.1),
            q(v, 0.5),
            q(v, 0.9),
            v[v.len() - 1]
        ));
    }
    s.push_str(&format!(
        "  either     {any:>5}/{n:<5} {:>6.1} %   (memorization rate of this batch)\n",
        pct(any)
    ));
    s
}

/// One line per input for a reader: the verdict, the input, and the
/// training item it copies (a flag: "copies ... (reason)") or the nearest
/// one (a pass: "nearest ..."; a pass names no match), with both scores.
pub fn verdict_lines(outcomes: &[Outcome]) -> String {
    let width = outcomes
        .iter()
        .map(|o| name(&o.input).chars().count())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for o in outcomes {
        let input = name(&o.input);
        let pad = width.saturating_sub(input.chars().count());
        let what = match (&o.report, o.report.as_ref().and_then(|r| r.best())) {
            (Some(r), Some(c)) if r.verdict == refrain::audit::Verdict::Flag => format!(
                "copies  {} ({}: audio {:.4}, melody {:.4}; {:.1}–{:.1} s of the input = {:.1}–{:.1} s of the item)",
                name(&c.path),
                refrain::report::reason(r),
                c.audio_score,
                c.melody_score,
                c.query_start_s,
                c.query_end_s,
                c.match_start_s,
                c.match_end_s
            ),
            (Some(_), Some(c)) => format!(
                "nearest {} (audio {:.4}, melody {:.4})",
                name(&c.path),
                c.audio_score,
                c.melody_score
            ),
            (Some(_), None) => "no candidate".to_string(),
            (None, _) => o.error.clone().unwrap_or_default(),
        };
        s.push_str(&format!(
            "  {:<5} {input}{} {what}\n",
            o.verdict(),
            " ".repeat(pad)
        ));
    }
    s
}

/// The file name of a path, or the path itself.
fn name(p: &str) -> &str {
    std::path::Path::new(p)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(p)
}

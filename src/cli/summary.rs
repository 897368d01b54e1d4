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

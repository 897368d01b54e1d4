use refrain::analysis::Analyzer;
use refrain::sequences::Sequences;
use refrain::{decode, AnalysisParams};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let p = AnalysisParams::default();
    let mut an = Analyzer::new(&p);
    let q = an
        .analyze(&decode::decode_file(a[1].as_ref(), p.sample_rate).unwrap())
        .unwrap();
    let c = an
        .analyze(&decode::decode_file(a[2].as_ref(), p.sample_rate).unwrap())
        .unwrap();
    let (qs, cs) = (
        Sequences::from_fingerprint(&q, &p),
        Sequences::from_fingerprint(&c, &p),
    );
    let off: f64 = a[3].parse().unwrap(); // item time - query time, s
    let r = p.cens_rate();
    let nb = qs.n_bands;
    for i in 0..qs.cens.len() / 12 {
        let j = (i as f64 + off * r).round() as isize;
        if j < 0 || (j as usize) >= cs.cens.len() / 12 {
            continue;
        }
        let j = j as usize;
        let d: u32 = (0..12)
            .map(|k| qs.cens[i * 12 + k] as u32 * cs.cens[j * 12 + k] as u32)
            .sum();
        let bq: f32 =
            (0..nb).map(|b| qs.bands[i * nb + b] as f32).sum::<f32>() / nb as f32 / 2.0 - 120.0;
        let bc: f32 =
            (0..nb).map(|b| cs.bands[j * nb + b] as f32).sum::<f32>() / nb as f32 / 2.0 - 120.0;
        println!(
            "{:5.1}s sim {:.3}  bandmean q {:6.1} c {:6.1}",
            i as f64 / r,
            d as f64 / 65025.0,
            bq,
            bc
        );
    }
}

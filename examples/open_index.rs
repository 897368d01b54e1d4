//! Opens an index and reports how long it took and the resident memory
//! after it (Linux `/proc/self/status`): the open figures of `docs/scale.md`.
//!
//! `cargo run --release --example open_index -- INDEX_DIR`

use std::time::Instant;

fn rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: open_index INDEX_DIR")?;
    let before = rss_mb().unwrap_or(0.0);
    let t = Instant::now();
    let index = refrain::index::Index::open(std::path::Path::new(&dir))?;
    let open_s = t.elapsed().as_secs_f64();
    let after = rss_mb().unwrap_or(0.0);
    let bytes = refrain::index::Index::disk_bytes(std::path::Path::new(&dir));
    println!(
        "{} items, {:.1} h, {} windows: opened in {open_s:.3} s; RSS {before:.0} MB before, {after:.0} MB after; {:.1} MB on disk, {:.2} MB per hour",
        index.len(),
        index.hours(),
        index.window_item.len(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / index.hours()
    );
    Ok(())
}

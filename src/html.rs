//! The self-contained HTML report: one file a reviewer opens without
//! network access. Inline CSS, inline SVG plots drawn by `plotters`' SVG
//! backend, a few lines of inline JavaScript for sorting and filtering the
//! table, and audio excerpts as base64 data URIs.
//!
//! [`render_audit`] turns an [`AuditDocument`] (the JSON report, read back)
//! into the page: a summary (inputs, flags per reason, thresholds and what
//! they were calibrated on, the index), a table of every input, and one
//! evidence panel per flagged input. [`render_memorization`] does the same
//! for `refrain memorization`: both sets' best-score distributions with
//! the thresholds, and the rates with their intervals.

use std::error::Error as StdError;
use std::fmt::Write as _;

use base64::Engine as _;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use crate::audit::{Candidate, Report, Verdict};
use crate::calibrate::{self, BestScores};
use crate::evidence::{Contour, Evidence};
use crate::index::Thresholds;
use crate::report::{reason, AuditDocument, IndexInfo, Outcome};

/// One audio excerpt for a panel: Ogg Opus bytes, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Clip {
    /// The excerpt (Ogg Opus), and the stretch it holds, seconds.
    Audio {
        /// Ogg Opus file bytes.
        bytes: Vec<u8>,
        /// Start and end in the source, seconds.
        range_s: (f64, f64),
    },
    /// Why it could not be made (the file cannot be read here, ...).
    Missing(String),
}

/// The two excerpts of one flagged input: the input's and the training
/// item's matched seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Excerpts {
    /// From the input.
    pub query: Clip,
    /// From the training item.
    pub item: Clip,
}

/// Plot size in pixels (width, height).
const PLOT: (u32, u32) = (420, 300);
/// The time-line plot's size.
const TIMELINE: (u32, u32) = (420, 150);

type PlotResult<T> = Result<T, Box<dyn StdError>>;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Draws one SVG plot; returns the SVG text and what `draw` returned, or
/// the drawing error as text.
fn plot<T>(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> PlotResult<T>,
) -> Result<(String, T), String> {
    let mut svg = String::new();
    let out = {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let t = draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
        t
    };
    Ok((compact(svg), out))
}

/// The SVG, or a line saying why the plot is missing.
fn figure(r: Result<String, String>) -> String {
    match r {
        Ok(svg) => format!("<figure class=\"plot\">{svg}</figure>"),
        Err(e) => format!("<p class=\"missing\">plot not drawn: {}</p>", esc(&e)),
    }
}

const FONT: (&str, u32) = ("sans-serif", 13);
const LABEL: (&str, u32) = ("sans-serif", 11);

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1320px;padding:0 16px;color:#1b1f24;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}h3{font-size:15px;margin:0 0 6px}
.sub{color:#57606a;margin:0 0 16px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}dl.facts dt{color:#57606a}dl.facts dd{margin:0}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #e5e8eb;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f6f8fa;cursor:pointer;user-select:none;position:sticky;top:0}th[data-dir=asc]::after{content:" \25B2"}th[data-dir=desc]::after{content:" \25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.flag{color:#b42318;font-weight:600}.pass{color:#1a7f37}.error{color:#9a6700;font-weight:600}
.rel{color:#57606a;font-size:12px}
.filters{display:flex;gap:16px;align-items:center;margin:8px 0}
section.evidence{border:1px solid #d0d7de;border-radius:6px;padding:12px 14px;margin:16px 0}
.plots{display:flex;flex-wrap:wrap;gap:8px}figure.plot{margin:0}
.clips{display:flex;flex-wrap:wrap;gap:24px;margin-top:8px}.clips figure{margin:0}.clips figcaption{font-size:12px;color:#57606a}
.missing{color:#9a6700}.note{color:#9a6700}
"#;

const SCRIPT: &str = r#"
(function(){
var t=document.getElementById('results');if(!t)return;
var tb=t.tBodies[0],rows=Array.prototype.slice.call(tb.rows);
var ths=t.tHead.rows[0].cells;
Array.prototype.forEach.call(ths,function(th,i){th.addEventListener('click',function(){
var dir=th.getAttribute('data-dir')==='asc'?'desc':'asc';
Array.prototype.forEach.call(ths,function(h){h.removeAttribute('data-dir');});th.setAttribute('data-dir',dir);
var num=th.getAttribute('data-type')==='num';
rows.sort(function(a,b){var x=a.cells[i].getAttribute('data-v'),y=b.cells[i].getAttribute('data-v');
if(x===null)x=a.cells[i].textContent;if(y===null)y=b.cells[i].textContent;
var c=num?((parseFloat(x)||0)-(parseFloat(y)||0)):x.localeCompare(y);return dir==='asc'?c:-c;});
rows.forEach(function(r){tb.appendChild(r);});});});
var v=document.getElementById('f-verdict'),s=document.getElementById('f-score'),n=document.getElementById('f-count');
function filter(){var want=v.value,min=parseFloat(s.value)||0,k=0;
rows.forEach(function(r){var ok=(want==='all'||r.getAttribute('data-verdict')===want)&&(parseFloat(r.getAttribute('data-score'))||0)>=min;
r.hidden=!ok;if(ok)k++;});n.textContent=k+' of '+rows.length+' shown';}
v.addEventListener('change',filter);s.addEventListener('input',filter);filter();
})();
"#;

fn page_start(h: &mut String, title: &str) {
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(title)
    );
}

fn page_end(h: &mut String, script: bool) {
    if script {
        let _ = write!(h, "<script>{SCRIPT}</script>");
    }
    h.push_str("\n</body></html>\n");
}

/// What the thresholds were calibrated on, as `<dt>/<dd>` rows.
fn thresholds_facts(h: &mut String, t: &Thresholds) {
    let _ = write!(
        h,
        "<dt>thresholds</dt><dd>audio {:.3}, melody {:.3} ({})</dd>",
        t.audio,
        t.melody,
        esc(&t.method)
    );
    let how = match (t.target_fpr, t.fpr_upper_95) {
        (Some(f), Some(up)) => {
            let mut s = format!(
                "{} negatives for {:.1} % false positives: {} flagged, at most {:.1} % with 95 % confidence",
                t.negatives,
                100.0 * f,
                t.flagged_negatives
                    .map(|k| k.to_string())
                    .unwrap_or_else(|| "?".into()),
                100.0 * up
            );
            if let Some(d) = t.durations_s {
                let _ = write!(
                    s,
                    "; negatives {:.1}–{:.1} s long (median {:.1} s)",
                    d.min, d.max, d.median
                );
            }
            if t.excluded_suspects > 0 {
                let _ = write!(
                    s,
                    "; {} suspected copies of training items left out",
                    t.excluded_suspects
                );
            }
            s
        }
        _ if t.method == calibrate::METHOD_CALLER => {
            "set by the caller: no false-positive rate is claimed for them".to_string()
        }
        _ => "not calibrated: built-in values (run `refrain calibrate`)".to_string(),
    };
    let _ = write!(h, "<dt>calibrated on</dt><dd>{}</dd>", esc(&how));
    if let Some(at) = &t.calibrated_at {
        let _ = write!(h, "<dt>calibrated</dt><dd>{}</dd>", esc(at));
    }
}

fn index_facts(h: &mut String, index: &str, info: Option<&IndexInfo>) {
    let _ = write!(h, "<dt>index</dt><dd>{}", esc(index));
    if let Some(i) = info {
        let _ = write!(
            h,
            ": {} items, {:.2} h, format version {}",
            i.items, i.hours, i.format_version
        );
    }
    h.push_str("</dd>");
}

/// The audit report page. `excerpts[i]` holds the audio of
/// `doc.results[i]` when it is flagged and its excerpts were made (`None`:
/// not asked for, e.g. in the benchmark, and the panel says so).
pub fn render_audit(doc: &AuditDocument, excerpts: &[Option<Excerpts>]) -> String {
    let n = doc.results.len();
    let mut h = String::with_capacity(16_000 + 600 * n);
    page_start(&mut h, "Refrain audit report");
    h.push_str("<h1>Refrain audit report</h1>");
    let _ = write!(
        h,
        "<p class=\"sub\">Does a generated track copy a training recording? \
         <b>audio</b> = the same recording (transformed), <b>melody</b> = the same music in any \
         rendition; each score in [0, 1] against its own threshold. {}</p>",
        esc(&calibrate::describe(&doc.thresholds))
    );

    // summary
    let reports: Vec<&Report> = doc
        .results
        .iter()
        .filter_map(|o| o.report.as_ref())
        .collect();
    let flagged: Vec<&&Report> = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Flag)
        .collect();
    let by = |why: &str| flagged.iter().filter(|r| reason(r) == why).count();
    let errors = n - reports.len();
    h.push_str("<h2>Summary</h2><dl class=\"facts\">");
    let _ = write!(
        h,
        "<dt>inputs</dt><dd>{n}: <span class=\"flag\">{} flagged</span>, \
         <span class=\"pass\">{} passed</span>, <span class=\"error\">{errors} not readable</span></dd>\
         <dt>flags by reason</dt><dd>audio (same recording) {}, melody (same music) {}, both {}</dd>",
        flagged.len(),
        reports.len() - flagged.len(),
        by("audio"),
        by("melody"),
        by("audio+melody")
    );
    thresholds_facts(&mut h, &doc.thresholds);
    index_facts(&mut h, &doc.index, doc.index_info.as_ref());
    h.push_str("</dl>");

    // the table
    h.push_str(
        "<h2>Inputs</h2><div class=\"filters\"><label>verdict \
         <select id=\"f-verdict\"><option value=\"all\">all</option><option value=\"flag\">flag</option>\
         <option value=\"pass\">pass</option><option value=\"error\">error</option></select></label>\
         <label>best score at least <input id=\"f-score\" type=\"number\" min=\"0\" max=\"1\" step=\"0.05\" value=\"0\"></label>\
         <span id=\"f-count\"></span><span class=\"rel\">click a column to sort</span></div>\
         <table id=\"results\"><thead><tr><th data-type=\"num\">#</th><th>input</th><th>verdict</th><th>reason</th>\
         <th>training item</th><th data-type=\"num\">audio</th><th data-type=\"num\">melody</th>\
         <th>input s</th><th>item s</th><th data-type=\"num\">transp. st</th><th data-type=\"num\">tempo</th>\
         <th>notes</th></tr></thead><tbody>\n",
    );
    for (i, o) in doc.results.iter().enumerate() {
        table_row(&mut h, i, o);
    }
    h.push_str("</tbody></table>");

    // evidence panels
    h.push_str("<h2>Evidence for each flagged input</h2>");
    if flagged.is_empty() {
        h.push_str("<p>No input was flagged.</p>");
    }
    for (i, o) in doc.results.iter().enumerate() {
        if let Some(r) = o.report.as_ref().filter(|r| r.verdict == Verdict::Flag) {
            panel(&mut h, i, o, r, excerpts.get(i).and_then(|e| e.as_ref()));
        }
    }
    page_end(&mut h, true);
    h
}

fn table_row(h: &mut String, i: usize, o: &Outcome) {
    table_cells(h, i, o);
    h.push('\n');
}

fn table_cells(h: &mut String, i: usize, o: &Outcome) {
    let verdict = o.verdict();
    let best = o.report.as_ref().and_then(|r| r.best());
    let score = best.map(|c| c.best_score()).unwrap_or(0.0);
    let _ = write!(
        h,
        "<tr data-verdict=\"{verdict}\" data-score=\"{score:.4}\"><td class=\"num\">{}</td><td>{}</td>\
         <td class=\"{verdict}\">{verdict}</td>",
        i + 1,
        esc(&o.input)
    );
    match (&o.report, best) {
        (Some(r), Some(c)) => {
            let rel = if r.verdict == Verdict::Flag {
                "match"
            } else {
                "nearest"
            };
            let link = if r.verdict == Verdict::Flag {
                format!(" <a href=\"#ev-{}\">evidence</a>", i + 1)
            } else {
                String::new()
            };
            let _ = write!(
                h,
                "<td>{}</td><td><span class=\"rel\">{rel}</span> {}{link}</td>\
                 <td class=\"num\" data-v=\"{:.4}\">{:.4}</td><td class=\"num\" data-v=\"{:.4}\">{:.4}</td>\
                 <td data-v=\"{:.2}\">{:.2}–{:.2}</td><td data-v=\"{:.2}\">{:.2}–{:.2}</td>\
                 <td class=\"num\">{:+.2}</td><td class=\"num\">{:.3}</td><td>{}</td></tr>",
                reason(r),
                esc(&c.path),
                c.audio_score,
                c.audio_score,
                c.melody_score,
                c.melody_score,
                c.query_start_s,
                c.query_start_s,
                c.query_end_s,
                c.match_start_s,
                c.match_start_s,
                c.match_end_s,
                c.transpose_semitones,
                c.tempo_ratio,
                esc(&r.notes.join("; "))
            );
        }
        (Some(r), None) => {
            let _ = write!(
                h,
                "<td></td><td>no candidate</td><td></td><td></td><td></td><td></td><td></td><td></td><td>{}</td></tr>",
                esc(&r.notes.join("; "))
            );
        }
        _ => {
            let _ = write!(
                h,
                "<td></td><td></td><td></td><td></td><td></td><td></td><td></td><td></td><td class=\"error\">{}</td></tr>",
                esc(o.error.as_deref().unwrap_or(""))
            );
        }
    }
}

fn panel(h: &mut String, i: usize, o: &Outcome, r: &Report, clips: Option<&Excerpts>) {
    let Some(c) = r.best() else {
        return;
    };
    let t = &r.thresholds;
    let _ = write!(
        h,
        "<section class=\"evidence\" id=\"ev-{}\"><h3>#{} {} <span class=\"rel\">copies</span> {}</h3>\
         <p>flagged for <b>{}</b>: audio {:.4} (threshold {:.3}), melody {:.4} (threshold {:.3}); \
         input {:.2}–{:.2} s ↔ training item {:.2}–{:.2} s; transposition {:+.2} semitones, tempo ×{:.3}</p>",
        i + 1,
        i + 1,
        esc(&o.input),
        esc(&c.path),
        reason(r),
        c.audio_score,
        t.audio,
        c.melody_score,
        t.melody,
        c.query_start_s,
        c.query_end_s,
        c.match_start_s,
        c.match_end_s,
        c.transpose_semitones,
        c.tempo_ratio
    );
    for note in &r.notes {
        let _ = write!(h, "<p class=\"note\">{}</p>", esc(note));
    }
    match &r.evidence {
        Some(e) => {
            h.push_str("<div class=\"plots\">");
            h.push_str(&figure(matrix_svg(e)));
            h.push_str(&figure(melody_svg(e, c)));
            h.push_str(&figure(landmarks_svg(e)));
            h.push_str(&figure(timeline_svg(r.duration_s as f32, e, c)));
            h.push_str("</div>");
        }
        None => h.push_str(
            "<p class=\"missing\">no evidence in this report: audit with <code>--html FILE</code> or \
             <code>--format json</code> to draw it</p>",
        ),
    }
    h.push_str("<div class=\"clips\">");
    match clips {
        Some(x) => {
            clip(h, "input", &o.input, &x.query);
            clip(h, "training item", &c.path, &x.item);
        }
        None => h.push_str("<p class=\"missing\">audio excerpts not embedded</p>"),
    }
    h.push_str("</div></section>\n");
}

fn clip(h: &mut String, what: &str, path: &str, c: &Clip) {
    match c {
        Clip::Audio { bytes, range_s } => {
            let _ = write!(
                h,
                "<figure><figcaption>{what}: {} {:.2}–{:.2} s</figcaption>\
                 <audio controls preload=\"metadata\" src=\"data:audio/ogg;codecs=opus;base64,{}\"></audio></figure>",
                esc(path),
                range_s.0,
                range_s.1,
                b64(bytes)
            );
        }
        Clip::Missing(why) => {
            let _ = write!(
                h,
                "<p class=\"missing\">{what} excerpt missing: {}</p>",
                esc(why)
            );
        }
    }
}

/// The similarity matrix as an RGB PNG, query time upwards (row 0 = the
/// last query cell), Viridis colours over similarity 0.5–1 (unrelated
/// CENS frames already reach 0.5, so the contrast is spent above it).
fn matrix_png(e: &Evidence) -> Result<Vec<u8>, String> {
    let mut palette = Vec::with_capacity(256 * 3);
    for v in 0..256u32 {
        let s = v as f32 / 255.0;
        let c = ViridisRGB::get_color(((s - 0.5) / 0.5).clamp(0.0, 1.0));
        palette.extend([c.0, c.1, c.2]);
    }
    let mut data = Vec::with_capacity(e.rows * e.cols);
    for r in (0..e.rows).rev() {
        for c in 0..e.cols {
            data.push(e.similarity.get(r * e.cols + c).copied().unwrap_or(0));
        }
    }
    indexed_png(e.cols, e.rows, &data, palette, None)
}

/// An 8-bit indexed PNG of `width × height` palette indices (row 0 on
/// top), palette index 0 transparent when `transparent_zero`.
fn indexed_png(
    width: usize,
    height: usize,
    data: &[u8],
    palette: Vec<u8>,
    transparent_zero: Option<()>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(palette);
        if transparent_zero.is_some() {
            enc.set_trns(vec![0u8]);
        }
        enc.set_compression(png::Compression::High);
        let mut w = enc.write_header().map_err(|x| x.to_string())?;
        w.write_image_data(data).map_err(|x| x.to_string())?;
    }
    Ok(out)
}

/// Cells of the landmark-hit image along each axis: a hit is a dot of
/// about 4 × 4.5 pixels on the 420 × 300 plot, whatever the number of hits
/// (as SVG circles they cost 85 bytes each).
const HIT_GRID: (usize, usize) = (90, 60);

/// The landmark hits as a transparent PNG on a [`HIT_GRID`], x = query
/// time, y = item time upwards.
fn hits_png(e: &Evidence) -> Result<Vec<u8>, String> {
    let (w, h) = HIT_GRID;
    let (q0, q1) = e.query_range_s;
    let (i0, i1) = e.item_range_s;
    let mut data = vec![0u8; w * h];
    for &(q, i) in &e.landmark_hits {
        let x = ((q - q0) / (q1 - q0).max(1e-3) * w as f32).floor();
        let y = ((i - i0) / (i1 - i0).max(1e-3) * h as f32).floor();
        if x >= 0.0 && y >= 0.0 && (x as usize) < w && (y as usize) < h {
            data[(h - 1 - y as usize) * w + x as usize] = 1;
        }
    }
    indexed_png(w, h, &data, vec![255, 255, 255, 20, 60, 200], Some(()))
}

/// `svg` with an `<image>` of `png` over the pixel rectangle `(xr, yr)`,
/// placed first so the axes and series are drawn over it.
fn with_image(
    svg: String,
    png: &[u8],
    (xr, yr): (std::ops::Range<i32>, std::ops::Range<i32>),
) -> String {
    let image = format!(
        "<image x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" preserveAspectRatio=\"none\" \
         style=\"image-rendering:pixelated\" href=\"data:image/png;base64,{}\"/>",
        xr.start,
        yr.start,
        xr.end - xr.start,
        yr.end - yr.start,
        b64(png)
    );
    match svg
        .find("<svg")
        .and_then(|s| svg[s..].find('>').map(|g| s + g + 1))
    {
        Some(at) => format!("{}{image}{}", &svg[..at], &svg[at..]),
        None => svg,
    }
}

/// Drops what the SVG backend writes that changes nothing (default
/// attributes, 16-digit font sizes, line breaks inside labels): a third of
/// a plot's bytes.
fn compact(svg: String) -> String {
    let s = svg
        .replace(" opacity=\"1\"", "")
        .replace(" stroke=\"none\" stroke-width=\"1\"", " stroke=\"none\"")
        .replace(">\n", ">")
        .replace("\n<", "<");
    // font-size="8.870967741935484" -> font-size="8.9"
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    const KEY: &str = "font-size=\"";
    while let Some(i) = rest.find(KEY) {
        out.push_str(&rest[..i + KEY.len()]);
        rest = &rest[i + KEY.len()..];
        let end = rest.find('"').unwrap_or(rest.len());
        match rest[..end].parse::<f64>() {
            Ok(v) => {
                let _ = write!(out, "{v:.1}");
            }
            Err(_) => out.push_str(&rest[..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn range(a: f32, b: f32) -> std::ops::Range<f32> {
    if b > a {
        a..b
    } else {
        a..a + 1.0
    }
}

fn matrix_svg(e: &Evidence) -> Result<String, String> {
    if e.rows == 0 || e.cols == 0 {
        return Err("the similarity matrix is empty".into());
    }
    let png = matrix_png(e)?;
    let (svg, (xr, yr)) = plot(PLOT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("chroma similarity and the path", FONT)
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(44)
            .build_cartesian_2d(
                range(e.item_range_s.0, e.item_range_s.1),
                range(e.query_range_s.0, e.query_range_s.1),
            )?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("training item, s")
            .y_desc("input, s")
            .label_style(LABEL)
            .x_labels(6)
            .y_labels(6)
            .draw()?;
        chart.draw_series(LineSeries::new(
            e.path.iter().map(|&(q, i)| (i, q)),
            RED.stroke_width(2),
        ))?;
        Ok(chart.plotting_area().get_pixel_range())
    })?;
    // the matrix as an image under the axes and the path
    Ok(with_image(svg, &png, (xr, yr)))
}

/// Runs of voiced points of a contour as (s, semitones) segments, each
/// point mapped by `f`.
fn segments(c: &Contour, f: impl Fn(f32, f32) -> (f32, f32)) -> Vec<Vec<(f32, f32)>> {
    let mut out: Vec<Vec<(f32, f32)>> = Vec::new();
    let mut run: Vec<(f32, f32)> = Vec::new();
    for (k, v) in c.cents.iter().enumerate() {
        match v {
            Some(cents) => run.push(f(c.start_s + k as f32 * c.step_s, *cents as f32 / 100.0)),
            None if !run.is_empty() => out.push(std::mem::take(&mut run)),
            None => {}
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

fn melody_svg(e: &Evidence, c: &Candidate) -> Result<String, String> {
    // the query's time mapped onto the item's along the match, its pitch
    // shifted down by the transposition (and by whole octaves, as the
    // comparison is modulo the octave)
    let q_len = c.query_end_s - c.query_start_s;
    let ratio = if q_len > 0.0 {
        (c.match_end_s - c.match_start_s) / q_len
    } else {
        1.0 / c.tempo_ratio.max(1e-3)
    };
    let to_item = |t: f32| c.match_start_s + (t - c.query_start_s) * ratio;
    let item_at = |t: f32| -> Option<f32> {
        let k = ((t - e.item_melody.start_s) / e.item_melody.step_s.max(1e-3)).round();
        if k < 0.0 {
            return None;
        }
        e.item_melody
            .cents
            .get(k as usize)
            .copied()
            .flatten()
            .map(|x| x as f32 / 100.0)
    };
    let mut diffs: Vec<f32> = Vec::new();
    for (k, v) in e.query_melody.cents.iter().enumerate() {
        if let Some(q) = v {
            let t = to_item(e.query_melody.start_s + k as f32 * e.query_melody.step_s);
            if let Some(i) = item_at(t) {
                diffs.push(*q as f32 / 100.0 - c.transpose_semitones - i);
            }
        }
    }
    diffs.sort_by(f32::total_cmp);
    let octaves = diffs
        .get(diffs.len() / 2)
        .map(|d| 12.0 * (d / 12.0).round())
        .unwrap_or(0.0);
    let (x0, x1) = e.item_range_s;
    let query: Vec<Vec<(f32, f32)>> = segments(&e.query_melody, |t, p| {
        (to_item(t), p - c.transpose_semitones - octaves)
    })
    .into_iter()
    .map(|s| {
        s.into_iter()
            .filter(|p| p.0 >= x0 && p.0 <= x1)
            .collect::<Vec<_>>()
    })
    .filter(|s: &Vec<(f32, f32)>| !s.is_empty())
    .collect();
    let item = segments(&e.item_melody, |t, p| (t, p));
    let pitches = query.iter().chain(&item).flatten().map(|p| p.1);
    let (lo, hi) = pitches.fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p), b.max(p)));
    if lo > hi {
        return Err("no voiced melody in the matched stretch".into());
    }
    plot(PLOT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("melody: input (moved onto the item) and item", FONT)
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(44)
            .build_cartesian_2d(range(x0, x1), range(lo - 1.0, hi + 1.0))?;
        chart
            .configure_mesh()
            .x_desc("training item time, s")
            .y_desc("pitch, MIDI note")
            .label_style(LABEL)
            .x_labels(6)
            .y_labels(6)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let item_style = BLUE.mix(0.75).stroke_width(3);
        let query_style = RED.stroke_width(1);
        for (k, s) in item.iter().enumerate() {
            let series = chart.draw_series(LineSeries::new(s.iter().copied(), item_style))?;
            if k == 0 {
                series
                    .label("training item")
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], item_style));
            }
        }
        for (k, s) in query.iter().enumerate() {
            let series = chart.draw_series(LineSeries::new(s.iter().copied(), query_style))?;
            if k == 0 {
                series
                    .label("input")
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], query_style));
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(LABEL)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        Ok(())
    })
    .map(|(s, _)| s)
}

fn landmarks_svg(e: &Evidence) -> Result<String, String> {
    let png = hits_png(e)?;
    let (svg, area) = plot(PLOT, |root| {
        let caption = if e.landmark_hits.is_empty() {
            "landmark hits: none (no same-recording peaks)".to_string()
        } else {
            format!("landmark hits: {} peak pairs", e.landmark_hits.len())
        };
        let mut chart = ChartBuilder::on(root)
            .caption(caption, FONT)
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(44)
            .build_cartesian_2d(
                range(e.query_range_s.0, e.query_range_s.1),
                range(e.item_range_s.0, e.item_range_s.1),
            )?;
        chart
            .configure_mesh()
            .x_desc("input time, s")
            .y_desc("training item time, s")
            .label_style(LABEL)
            .x_labels(6)
            .y_labels(6)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        chart.draw_series(LineSeries::new(
            e.path.iter().copied(),
            RED.mix(0.4).stroke_width(1),
        ))?;
        Ok(chart.plotting_area().get_pixel_range())
    })?;
    Ok(with_image(svg, &png, area))
}

fn timeline_svg(query_s: f32, e: &Evidence, c: &Candidate) -> Result<String, String> {
    plot(TIMELINE, |root| {
        let rows = root.split_evenly((2, 1));
        for (area, (name, len, a, b, shown)) in rows.iter().zip([
            (
                "input",
                query_s,
                c.query_start_s,
                c.query_end_s,
                e.query_range_s,
            ),
            (
                "training item",
                e.item_duration_s,
                c.match_start_s,
                c.match_end_s,
                e.item_range_s,
            ),
        ]) {
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{name}: {a:.2}–{b:.2} s of {len:.1} s"), LABEL)
                .margin(4)
                .x_label_area_size(20)
                .y_label_area_size(10)
                .build_cartesian_2d(range(0.0, len.max(b)), 0f32..1f32)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .disable_y_axis()
                .label_style(LABEL)
                .draw()?;
            chart.draw_series([
                Rectangle::new([(0.0, 0.25), (len, 0.75)], BLACK.mix(0.12).filled()),
                Rectangle::new([(shown.0, 0.2), (shown.1, 0.8)], BLUE.mix(0.15).filled()),
                Rectangle::new([(a, 0.1), (b, 0.9)], RED.mix(0.75).filled()),
            ])?;
        }
        Ok(())
    })
    .map(|(s, _)| s)
}

/// One row of the memorization table.
#[derive(Debug, Clone, PartialEq)]
pub struct RateRow {
    /// `generated` or `reference`.
    pub set: String,
    /// `audio`, `melody` or `either`.
    pub dimension: String,
    /// Inputs audited.
    pub n: usize,
    /// Inputs flagged.
    pub flagged: usize,
    /// 95 % Wilson interval of the rate.
    pub ci95: (f64, f64),
}

/// What the memorization page shows.
#[derive(Debug, Clone)]
pub struct Memorization<'a> {
    /// The index audited against.
    pub index: &'a str,
    /// Its size and format.
    pub index_info: Option<&'a IndexInfo>,
    /// The thresholds applied.
    pub thresholds: &'a Thresholds,
    /// Rates per set and dimension.
    pub rows: &'a [RateRow],
    /// Generated − reference per dimension: (dimension, points, 95 %
    /// Newcombe interval in points).
    pub differences: &'a [(String, f64, (f64, f64))],
    /// Best scores of the generated set.
    pub generated: &'a [BestScores],
    /// Best scores of the reference set.
    pub reference: &'a [BestScores],
}

/// Bins of the best-score histograms over [0, 1].
const BINS: usize = 20;

/// The memorization page: the rates with their intervals, and both sets'
/// best-score distributions with the thresholds.
pub fn render_memorization(m: &Memorization) -> String {
    let mut h = String::with_capacity(64_000);
    page_start(&mut h, "Refrain memorization report");
    h.push_str("<h1>Refrain memorization report</h1>");
    let _ = write!(
        h,
        "<p class=\"sub\">The share of a model's outputs that copy the training set (generated), \
         against the same share for real music that is not in it (reference). {}</p><dl class=\"facts\">",
        esc(&calibrate::describe(m.thresholds))
    );
    let _ = write!(
        h,
        "<dt>inputs</dt><dd>generated {}, reference {}</dd>",
        m.generated.len(),
        m.reference.len()
    );
    thresholds_facts(&mut h, m.thresholds);
    index_facts(&mut h, m.index, m.index_info);
    h.push_str("</dl><h2>Rates</h2><table><thead><tr><th>set</th><th>dimension</th><th>n</th><th>flagged</th>\
                <th>rate</th><th>95 % interval</th></tr></thead><tbody>");
    for r in m.rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{:.1} %</td><td class=\"num\">{:.1}–{:.1} %</td></tr>",
            esc(&r.set),
            esc(&r.dimension),
            r.n,
            r.flagged,
            100.0 * r.flagged as f64 / r.n.max(1) as f64,
            100.0 * r.ci95.0,
            100.0 * r.ci95.1
        );
    }
    for (dim, d, (lo, hi)) in m.differences {
        let _ = write!(
            h,
            "<tr><td colspan=\"2\">{} generated − reference</td><td></td><td></td>\
             <td class=\"num\">{d:+.1} points</td><td class=\"num\">{lo:+.1} to {hi:+.1}</td></tr>",
            esc(dim)
        );
    }
    h.push_str("</tbody></table><div class=\"plots\">");
    h.push_str(&figure(rates_svg(m.rows)));
    h.push_str("</div><h2>Best-score distributions</h2><div class=\"plots\">");
    for (dim, thr, f) in [
        (
            "audio",
            m.thresholds.audio,
            (|s: &BestScores| s.audio) as fn(&BestScores) -> f32,
        ),
        ("melody", m.thresholds.melody, |s: &BestScores| s.melody),
    ] {
        h.push_str(&figure(distribution_svg(
            dim,
            thr,
            m.generated,
            m.reference,
            f,
        )));
    }
    h.push_str("</div>");
    page_end(&mut h, false);
    h
}

fn shares(v: &[BestScores], f: fn(&BestScores) -> f32) -> [f32; BINS] {
    let mut b = [0f32; BINS];
    for s in v {
        let k = ((f(s).clamp(0.0, 1.0) * BINS as f32) as usize).min(BINS - 1);
        b[k] += 1.0;
    }
    b.map(|x| x / v.len().max(1) as f32)
}

fn distribution_svg(
    dim: &str,
    threshold: f32,
    generated: &[BestScores],
    reference: &[BestScores],
    f: fn(&BestScores) -> f32,
) -> Result<String, String> {
    let (g, r) = (shares(generated, f), shares(reference, f));
    let top = g.iter().chain(&r).copied().fold(0.0f32, f32::max).max(0.05) * 1.1;
    plot(PLOT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(format!("best {dim} score (threshold {threshold:.3})"), FONT)
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(44)
            .build_cartesian_2d(0f32..1f32, 0f32..top)?;
        chart
            .configure_mesh()
            .x_desc(format!("{dim} score"))
            .y_desc("share of the set")
            .label_style(LABEL)
            .x_labels(6)
            .y_labels(6)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let w = 1.0 / BINS as f32;
        for (name, bins, color) in [("generated", &g, RED), ("reference", &r, BLUE)] {
            chart
                .draw_series(
                    bins.iter()
                        .enumerate()
                        .filter(|b| *b.1 > 0.0)
                        .map(|(k, &v)| {
                            Rectangle::new(
                                [(k as f32 * w, 0.0), ((k + 1) as f32 * w, v)],
                                color.mix(0.4).filled(),
                            )
                        }),
                )?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 4), (x + 12, y + 4)], color.mix(0.4).filled())
                });
        }
        chart
            .draw_series(LineSeries::new(
                [(threshold, 0.0), (threshold, top)],
                BLACK.stroke_width(2),
            ))?
            .label("threshold")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], BLACK.stroke_width(2)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(LABEL)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        Ok(())
    })
    .map(|(s, _)| s)
}

fn rates_svg(rows: &[RateRow]) -> Result<String, String> {
    let labels: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}", r.set, r.dimension))
        .collect();
    let n = rows.len().max(1) as f32;
    plot(PLOT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("flag rates with 95 % intervals", FONT)
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(120)
            .build_cartesian_2d(0f32..100f32, -0.5f32..n - 0.5)?;
        chart
            .configure_mesh()
            .x_desc("flagged, %")
            .y_labels(rows.len().max(1))
            .y_label_formatter(&|y| {
                let k = y.round();
                if (y - k).abs() < 0.01 && k >= 0.0 {
                    labels.get(k as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .label_style(LABEL)
            .x_labels(6)
            .y_labels(6)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        chart.draw_series(rows.iter().enumerate().map(|(k, r)| {
            let color = if r.set == "generated" { RED } else { BLUE };
            let rate = 100.0 * r.flagged as f32 / r.n.max(1) as f32;
            ErrorBar::new_horizontal(
                k as f32,
                100.0 * r.ci95.0 as f32,
                rate,
                100.0 * r.ci95.1 as f32,
                color.filled(),
                10,
            )
        }))?;
        Ok(())
    })
    .map(|(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Raw;
    use crate::report::JSON_VERSION;

    /// A flagged report with evidence of the largest size.
    fn flagged(k: usize) -> Outcome {
        let cells = crate::evidence::MAX_CELLS;
        let e = Evidence {
            item: 1,
            query_range_s: (0.0, 20.0),
            item_range_s: (10.0, 30.0),
            item_duration_s: 60.0,
            rows: cells,
            cols: cells,
            // like a real one: a bright diagonal over a smooth background,
            // with noise of ±8 levels (a matrix of pure noise would add
            // about 6 kB a panel)
            similarity: {
                let mut rng = crate::synth::Rng::new(k as u64);
                (0..cells * cells)
                    .map(|i| {
                        let (r, c) = ((i / cells) as f32, (i % cells) as f32);
                        let base = if (r - c).abs() < 1.5 {
                            245.0
                        } else {
                            150.0 + 40.0 * (r / 9.0).sin() * (c / 7.0).cos()
                        };
                        (base + rng.below(17) as f32 - 8.0).clamp(0.0, 255.0) as u8
                    })
                    .collect()
            },
            path: vec![(0.0, 10.0), (20.0, 30.0)],
            query_melody: Contour {
                start_s: 0.0,
                step_s: 0.1,
                cents: (0..crate::evidence::MAX_CONTOUR_POINTS)
                    .map(|i| (i % 20 > 2).then_some(6000 + (i / 4 % 12) as i16 * 100))
                    .collect(),
            },
            item_melody: Contour {
                start_s: 10.0,
                step_s: 0.1,
                cents: (0..crate::evidence::MAX_CONTOUR_POINTS)
                    .map(|i| (i % 20 > 1).then_some(6200 + (i / 4 % 12) as i16 * 100))
                    .collect(),
            },
            landmark_hits: (0..crate::evidence::MAX_HITS)
                .map(|i| (i as f32 / 15.0, 10.0 + i as f32 / 15.0))
                .collect(),
        };
        Outcome {
            input: format!("gen/<clip {k}>.wav"),
            report: Some(Report {
                verdict: Verdict::Flag,
                duration_s: 20.0,
                thresholds: Thresholds::default(),
                candidates: vec![Candidate {
                    item: 1,
                    path: "train/song & co.wav".into(),
                    audio_score: 0.99,
                    melody_score: 0.7,
                    query_start_s: 0.0,
                    query_end_s: 20.0,
                    match_start_s: 10.0,
                    match_end_s: 30.0,
                    transpose_semitones: 2.0,
                    tempo_ratio: 1.0,
                    raw: Raw::default(),
                }],
                notes: vec!["a note".into()],
                evidence: Some(e),
            }),
            error: None,
        }
    }

    fn doc(results: Vec<Outcome>) -> AuditDocument {
        AuditDocument {
            format: "refrain-audit".into(),
            version: JSON_VERSION,
            index: "idx".into(),
            index_info: Some(IndexInfo {
                items: 12,
                hours: 0.2,
                format_version: 3,
            }),
            thresholds: Thresholds::default(),
            results,
        }
    }

    #[test]
    fn a_page_of_100_flagged_inputs_without_audio_is_under_3_mb_with_every_panel() {
        let d = doc((0..100).map(flagged).collect());
        let html = render_audit(&d, &[]);
        eprintln!(
            "100 flagged inputs, most hits and contour points: {} bytes",
            html.len()
        );
        assert!(html.len() < 3_000_000, "{} bytes", html.len());
        assert_eq!(html.matches("<section class=\"evidence\"").count(), 100);
        // each panel: the four plots, the matrix image inside the first
        assert_eq!(html.matches("<svg").count(), 400);
        assert_eq!(html.matches("data:image/png;base64,").count(), 200);
        assert!(!html.contains("plot not drawn"), "a plot failed");
        // text is escaped, and nothing is fetched from elsewhere
        assert!(html.contains("gen/&lt;clip 7&gt;.wav") && html.contains("song &amp; co.wav"));
        assert!(
            !html.contains("http://")
                || html.matches("http://").count()
                    == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
        assert!(!html.contains("https://"));
        assert!(html.contains("flagged for <b>audio+melody</b>"));
        assert!(html.contains("audio excerpts not embedded"));
    }

    #[test]
    fn pass_rows_name_the_nearest_item_errors_their_reason_and_clips_are_embedded() {
        let mut pass = flagged(1);
        let r = pass.report.as_mut().unwrap();
        r.verdict = Verdict::Pass;
        r.candidates[0].audio_score = 0.1;
        r.candidates[0].melody_score = 0.2;
        r.evidence = None;
        let err = Outcome {
            input: "bad.flac".into(),
            report: None,
            error: Some("bad.flac: decode: damaged".into()),
        };
        let d = doc(vec![flagged(0), pass, err]);
        let clips = vec![
            Some(Excerpts {
                query: Clip::Audio {
                    bytes: b"OggS-query".to_vec(),
                    range_s: (0.0, 10.0),
                },
                item: Clip::Missing("train/song.wav: open: not found".into()),
            }),
            None,
            None,
        ];
        let html = render_audit(&d, &clips);
        assert_eq!(html.matches("<section class=\"evidence\"").count(), 1);
        assert!(html.contains("<span class=\"rel\">nearest</span> train/song &amp; co.wav"));
        assert!(html.contains("<span class=\"rel\">match</span> train/song &amp; co.wav"));
        assert!(html.contains("bad.flac: decode: damaged"));
        assert!(html.contains(&format!("base64,{}", b64(b"OggS-query"))));
        assert!(html.contains("training item excerpt missing: train/song.wav: open: not found"));
        assert!(
            html.contains("3: <span class=\"flag\">1 flagged</span>"),
            "{}",
            &html[..3000]
        );
        assert!(html.contains("12 items, 0.20 h, format version 3"));
    }

    #[test]
    fn the_memorization_page_draws_both_distributions_and_the_rates() {
        let g: Vec<BestScores> = (0..50)
            .map(|i| BestScores {
                audio: i as f32 / 50.0,
                melody: 0.3,
            })
            .collect();
        let r: Vec<BestScores> = (0..40)
            .map(|i| BestScores {
                audio: i as f32 / 400.0,
                melody: 0.1,
            })
            .collect();
        let rows = vec![
            RateRow {
                set: "generated".into(),
                dimension: "either".into(),
                n: 50,
                flagged: 25,
                ci95: (0.37, 0.63),
            },
            RateRow {
                set: "reference".into(),
                dimension: "either".into(),
                n: 40,
                flagged: 0,
                ci95: (0.0, 0.09),
            },
        ];
        let t = Thresholds::default();
        let diffs = vec![("either".to_string(), 50.0, (35.0, 62.0))];
        let html = render_memorization(&Memorization {
            index: "idx",
            index_info: None,
            thresholds: &t,
            rows: &rows,
            differences: &diffs,
            generated: &g,
            reference: &r,
        });
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(!html.contains("plot not drawn"));
        assert!(html.contains("50.0 %") && html.contains("+50.0 points"));
        assert!(html.contains("best audio score (threshold 0.500)"));
    }
}

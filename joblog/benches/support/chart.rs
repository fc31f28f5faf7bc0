//! A line chart as SVG text, drawn by the benchmarks from the figures they measured (how a
//! cost grows with the work): logarithmic x (the work: rows, details, runs), linear y from
//! zero, one line with dots per series, a legend. Shared by the benchmarks that write charts
//! (included with `#[path]`); no dependency, no script, no font files.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::PathBuf;

/// One line of the chart: its name and its `(x, y)` points.
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
}

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

/// A "nice" step for about five ticks up to `max`.
fn y_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// `1_000_000` as `1M`, `300_000` as `300k`.
pub(crate) fn short(n: f64) -> String {
    if n >= 1e6 {
        format!("{}M", trim(n / 1e6))
    } else if n >= 1e3 {
        format!("{}k", trim(n / 1e3))
    } else {
        trim(n)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The chart as a standalone SVG document.
pub(crate) fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    let ys: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).collect();
    let (x_min, x_max) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    let y_max = ys.iter().copied().fold(0.0_f64, f64::max).max(1e-9) * 1.08;
    let (lx0, lx1) = (x_min.max(1.0).log10(), x_max.max(1.0).log10());
    let span = if lx1 > lx0 { lx1 - lx0 } else { 1.0 };
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x.max(1.0).log10() - lx0) / span * plot_w;
    let py = |y: f64| TOP + plot_h - y / y_max * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="#fff"/>
<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
"##,
        LEFT + plot_w / 2.0,
        esc(title)
    );
    // Axes, grid and ticks.
    let step = y_step(y_max);
    let mut y = 0.0;
    while y <= y_max + 1e-9 {
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 8.0,
            py(y) + 4.0,
            trim(y),
            py = py(y)
        );
        y += step;
    }
    let mut ticks: Vec<f64> = xs.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for x in ticks {
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{}" stroke="#f0f0f0"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            short(x),
            px = px(x)
        );
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{b}" stroke="#333"/><line x1="{LEFT}" x2="{r}" y1="{b}" y2="{b}" stroke="#333"/>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}</text>"##,
        LEFT + plot_w / 2.0,
        H - 12.0,
        esc(x_label),
        TOP + plot_h / 2.0,
        esc(y_label),
        b = TOP + plot_h,
        r = LEFT + plot_w
    );
    // The lines and the legend.
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut pts = s.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"##,
            path.join(" ")
        );
        for (x, y) in &pts {
            let _ = writeln!(
                svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"><title>{}: {} → {}</title></circle>"##,
                px(*x),
                py(*y),
                esc(&s.name),
                short(*x),
                trim(*y)
            );
        }
        let ly = TOP + 10.0 + i as f64 * 20.0;
        let lx = W - RIGHT + 16.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"##,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Where `--svg PATH` writes: a relative path is taken from the workspace root (`cargo
/// bench` runs a benchmark in its package's directory). Creates the folder; call it before
/// the benchmark runs, so that a bad path fails at once rather than after the run.
pub(crate) fn out_path(path: &str) -> std::io::Result<PathBuf> {
    let p = PathBuf::from(path);
    let p = if p.is_absolute() {
        p
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
    };
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)?;
    Ok(p)
}

/// The series as a markdown table: a row per series, a column per x.
pub(crate) fn print_table(first: &str, xs: &[f64], series: &[Series]) {
    let heads: Vec<String> = xs.iter().map(|x| short(*x)).collect();
    println!("| {first} | {} |", heads.join(" | "));
    println!("|---|{}", "---:|".repeat(xs.len()));
    for s in series {
        let cells: Vec<String> = s.points.iter().map(|p| format!("{:.2}", p.1)).collect();
        println!("| {} | {} |", s.name, cells.join(" | "));
    }
}

//! The mapping experiment's plots as SVG: ticks per operation by strategy
//! and workload (grouped bars, log axis), and faults against ticks (one
//! point per run, log-log). Pure and deterministic: the same rows give the
//! same bytes.

use std::fmt::Write as _;

use crate::experiment::Row;

const COLOURS: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
];
const LEFT: f64 = 80.0;
const TOP: f64 = 70.0;
const HEIGHT: f64 = 300.0;
const BAR: f64 = 22.0;
const GROUP_PAD: f64 = 30.0;

/// Strategies in first-seen order, each with its colour.
fn strategies(rows: &[Row]) -> Vec<(&str, &'static str)> {
    let mut out: Vec<(&str, &'static str)> = Vec::new();
    for r in rows {
        if !out.iter().any(|(s, _)| *s == r.strategy) {
            out.push((&r.strategy, COLOURS[out.len() % COLOURS.len()]));
        }
    }
    out
}

fn workloads(rows: &[Row]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for r in rows {
        if !out.contains(&r.workload.as_str()) {
            out.push(&r.workload);
        }
    }
    out
}

/// Powers of ten spanning the positive values, the lowest strictly below
/// the smallest.
fn decades(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi == 0.0 {
        return (0, 1);
    }
    let low = lo.log10().ceil() as i32 - 1;
    (low, (hi.log10().ceil() as i32).max(low + 1))
}

fn scale(v: f64, (low, high): (i32, i32), length: f64) -> f64 {
    if v <= 0.0 {
        return 0.0;
    }
    (length * (v.log10() - f64::from(low)) / f64::from(high - low)).clamp(0.0, length)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn legend(out: &mut String, strategies: &[(&str, &str)], y: f64) {
    let mut x = LEFT;
    for (name, colour) in strategies {
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{colour}"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            y - 10.0,
            x + 16.0,
            y,
            escape(name)
        );
        x += 30.0 + 7.0 * name.len() as f64;
    }
}

fn y_axis(out: &mut String, range: (i32, i32), width: f64, label: &str) {
    for e in range.0..=range.1 {
        let y = TOP + HEIGHT - scale(10f64.powi(e), range, HEIGHT);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">1e{e}</text>"##,
            width - 20.0,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" font-size="12" transform="rotate(-90 16 {:.1})" text-anchor="middle">{label}</text>"#,
        TOP + HEIGHT / 2.0,
        TOP + HEIGHT / 2.0
    );
}

/// Ticks per operation: a group per workload, a bar per strategy.
pub fn ticks_per_op(rows: &[Row]) -> String {
    // A run the guest did not finish has no ticks to show.
    let finished: Vec<Row> = rows.iter().filter(|r| r.finished).cloned().collect();
    let rows = &finished[..];
    let strategies = strategies(rows);
    let workloads = workloads(rows);
    let per_op = |r: &Row| r.run.ticks as f64 / r.run.ops.max(1) as f64;
    let range = decades(rows.iter().map(per_op));
    let group = strategies.len() as f64 * BAR + GROUP_PAD;
    let width = (LEFT + group * workloads.len() as f64 + 40.0).max(480.0);
    let height = TOP + HEIGHT + 50.0;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif">"#
    );
    out.push('\n');
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="24" font-size="16">vTLB strategies: guest ticks per operation (log scale, QEMU -icount shift=0)</text>"#
    );
    legend(&mut out, &strategies, 48.0);
    y_axis(&mut out, range, width, "ticks per operation");
    for (g, workload) in workloads.iter().enumerate() {
        let x0 = LEFT + GROUP_PAD / 2.0 + g as f64 * group;
        for (s, (name, colour)) in strategies.iter().enumerate() {
            let Some(r) = rows
                .iter()
                .find(|r| r.workload == *workload && r.strategy == *name)
            else {
                continue;
            };
            let h = scale(per_op(r), range, HEIGHT);
            let _ = writeln!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{colour}"><title>{} × {}: {:.0} ticks/op, {} violations</title></rect>"#,
                x0 + s as f64 * BAR,
                TOP + HEIGHT - h,
                BAR - 2.0,
                escape(name),
                escape(workload),
                per_op(r),
                r.violations
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            x0 + strategies.len() as f64 * BAR / 2.0,
            TOP + HEIGHT + 20.0,
            escape(workload)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Faults against ticks: one point per run, coloured by strategy, labelled
/// with its workload.
pub fn faults_vs_ticks(rows: &[Row]) -> String {
    // A run the guest did not finish has no ticks to show.
    let finished: Vec<Row> = rows.iter().filter(|r| r.finished).cloned().collect();
    let rows = &finished[..];
    let strategies = strategies(rows);
    let x_range = decades(rows.iter().map(|r| r.run.faults as f64));
    let y_range = decades(rows.iter().map(|r| r.run.ticks as f64));
    let plot_width = 480.0;
    let width = LEFT + plot_width + 60.0;
    let height = TOP + HEIGHT + 60.0;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif">"#
    );
    out.push('\n');
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="24" font-size="16">vTLB strategies: page faults against guest ticks (log-log)</text>"#
    );
    legend(&mut out, &strategies, 48.0);
    y_axis(&mut out, y_range, width, "guest ticks");
    for e in x_range.0..=x_range.1 {
        let x = LEFT + scale(10f64.powi(e), x_range, plot_width);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">1e{e}</text>"##,
            TOP + HEIGHT,
            TOP + HEIGHT + 16.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">page faults served</text>"#,
        LEFT + plot_width / 2.0,
        TOP + HEIGHT + 40.0
    );
    for r in rows {
        let colour = strategies
            .iter()
            .find(|(s, _)| *s == r.strategy)
            .map_or("#000", |(_, c)| c);
        let x = LEFT + scale(r.run.faults as f64, x_range, plot_width);
        let y = TOP + HEIGHT - scale(r.run.ticks as f64, y_range, HEIGHT);
        let _ = writeln!(
            out,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="{colour}"><title>{} × {}: {} faults, {} ticks</title></circle><text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
            escape(&r.strategy),
            escape(&r.workload),
            r.run.faults,
            r.run.ticks,
            x + 7.0,
            y + 3.0,
            escape(&r.workload)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Figures;

    fn rows() -> Vec<Row> {
        let mut out = Vec::new();
        for (w, base) in [("ptmut", 1000u64), ("aschurn", 50_000)] {
            for (i, s) in ["flush", "keep", "broken-keep-all"].iter().enumerate() {
                out.push(Row {
                    strategy: s.to_string(),
                    workload: w.to_string(),
                    run: Figures {
                        ops: 10,
                        ticks: base * 10 * (3 - i as u64),
                        faults: 100 * (3 - i as u64),
                        ..Figures::default()
                    },
                    finished: true,
                    ..Row::default()
                });
            }
        }
        out
    }

    #[test]
    fn the_plots_have_a_mark_per_run_and_are_deterministic() {
        let bars = ticks_per_op(&rows());
        assert_eq!(bars.matches("<rect x=").count(), 6 + 3, "bars and legend");
        assert_eq!(bars, ticks_per_op(&rows()));
        assert!(bars.contains("broken-keep-all × aschurn"));
        let points = faults_vs_ticks(&rows());
        assert_eq!(points.matches("<circle").count(), 6);
        // A taller value is drawn higher (smaller y).
        let y_of = |svg: &str, key: &str| -> f64 {
            let at = svg.find(key).unwrap();
            let head = &svg[..at];
            let cy = head.rfind("cy=\"").unwrap() + 4;
            head[cy..].split('"').next().unwrap().parse().unwrap()
        };
        assert!(y_of(&points, "flush × aschurn") < y_of(&points, "flush × ptmut"));
    }

    #[test]
    fn empty_and_zero_rows_draw_without_panicking() {
        assert!(ticks_per_op(&[]).ends_with("</svg>\n"));
        let zero = vec![Row {
            strategy: "keep".into(),
            workload: "ptmut".into(),
            finished: true,
            ..Row::default()
        }];
        assert!(faults_vs_ticks(&zero).contains("<circle"));
        // A run the guest did not finish has no ticks: no mark.
        let unfinished = vec![Row {
            finished: false,
            ..zero[0].clone()
        }];
        assert!(!faults_vs_ticks(&unfinished).contains("<circle"));
    }
}

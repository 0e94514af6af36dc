//! The comparison of `cargo xtask bench` as an SVG bar chart: per workload
//! a bare, a seL4 (pre-virtualized) and, when measured, a plain-image bare
//! and a trap-and-emulate bar of ticks per iteration, on a log axis
//! because the workloads span eight orders of magnitude (irqsave ~10, cpu
//! ~400,000, Linux's boot ~10^9). Pure and deterministic: the same rows
//! give the same bytes.

use std::fmt::Write as _;

use crate::bench::{per_iteration_text, ratio_text, speedup_text, Comparison};

/// The platforms a chart shows: indices into [`PLATFORMS`] (and
/// [`Comparison::values`]), in drawing order.
type Shown = Vec<usize>;

// Layout, in SVG user units (px).
const LEFT: f64 = 72.0; // room for the axis labels
const RIGHT: f64 = 24.0;
const PLOT_TOP: f64 = 72.0; // title, subtitle, legend and the top bar's label
const PLOT_HEIGHT: f64 = 300.0;
const BAR_WIDTH: f64 = 44.0; // "409840.0" at 10 px fits over a bar
const BAR_GAP: f64 = 10.0; // keeps neighbouring value labels apart
const GROUP_PAD: f64 = 28.0;
const MIN_WIDTH: f64 = 640.0;
const NOTE_LINE: f64 = 15.0;
/// Longer names are cut (the whole name is in the group's tooltip).
const NAME_CHARS: usize = 16;

const PLAIN_COLOUR: &str = "#76b7b2";
const BARE_COLOUR: &str = "#4e79a7";
const SEL4_COLOUR: &str = "#e15759";
const TRAP_COLOUR: &str = "#f28e2b";

/// The platforms of a group, in drawing order: bare and seL4 always,
/// plain (the unpadded image, bare) and trap (trap-and-emulate) when any
/// row has a value for them.
const PLATFORMS: [(&str, &str); 4] = [
    ("plain", PLAIN_COLOUR),
    ("bare", BARE_COLOUR),
    ("seL4", SEL4_COLOUR),
    ("trap", TRAP_COLOUR),
];
const PLAIN: usize = 0;
const TRAP: usize = 3;

/// The platforms `rows` show.
fn platforms(rows: &[Comparison]) -> Shown {
    (0..PLATFORMS.len())
        .filter(|&p| (p != PLAIN && p != TRAP) || rows.iter().any(|r| r.values()[p].is_some()))
        .collect()
}

/// The ratio lines under each group: seL4/bare always, then bare/plain
/// and trap/seL4 when shown.
fn ratio_lines(shown: &Shown) -> usize {
    1 + usize::from(shown.contains(&PLAIN)) + usize::from(shown.contains(&TRAP))
}

/// The width of one workload's group of `n` bars.
fn group_width(n: usize) -> f64 {
    n as f64 * (BAR_WIDTH + BAR_GAP) - BAR_GAP + GROUP_PAD
}

/// The space under the plot for the names and the ratio lines.
fn under_plot(shown: &Shown) -> f64 {
    49.0 + 15.0 * ratio_lines(shown) as f64
}

/// The y axis: powers of ten from 10^`low` (the baseline) to 10^`high`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale {
    low: i32,
    high: i32,
}

impl Scale {
    /// Spans every drawable value, with the baseline strictly below the
    /// smallest so that every bar has a height.
    fn for_values(values: impl Iterator<Item = f64>) -> Scale {
        let (mut min, mut max) = (f64::INFINITY, 0.0f64);
        for v in values.filter(|&v| drawable(v)) {
            min = min.min(v);
            max = max.max(v);
        }
        if max == 0.0 {
            return Scale { low: 0, high: 1 };
        }
        // The exponents of finite f64s are within ±330: the casts are exact.
        let low = min.log10().ceil() as i32 - 1;
        let high = (max.log10().ceil() as i32).max(low + 1);
        Scale { low, high }
    }

    /// The height of a bar of `value` (drawable) above the baseline.
    fn height(self, value: f64) -> f64 {
        let span = f64::from(self.high - self.low);
        (PLOT_HEIGHT * (value.log10() - f64::from(self.low)) / span).clamp(0.0, PLOT_HEIGHT)
    }

    /// The y coordinate of 10^`exponent`.
    fn y_of_power(self, exponent: f64) -> f64 {
        let span = f64::from(self.high - self.low);
        PLOT_TOP + PLOT_HEIGHT - PLOT_HEIGHT * (exponent - f64::from(self.low)) / span
    }
}

/// Whether a value can be a bar on a log axis.
fn drawable(value: f64) -> bool {
    value.is_finite() && value > 0.0
}

/// Renders `rows` as a self-contained SVG 1.1 document titled `title`.
pub fn render(title: &str, rows: &[Comparison]) -> String {
    let shown = platforms(rows);
    let n = shown.len();
    let width = (LEFT + group_width(n) * rows.len() as f64 + RIGHT).max(MIN_WIDTH);
    let notes = notes(rows, &shown);
    let height = if rows.is_empty() {
        200.0
    } else {
        PLOT_TOP + PLOT_HEIGHT + under_plot(&shown) + NOTE_LINE * notes.len() as f64
    };
    let mut svg = String::new();
    let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(svg, "<title>{}</title>", escape(title));
    let _ = writeln!(
        svg,
        r##"<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        escape(title)
    );
    if rows.is_empty() {
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="110" font-size="14" text-anchor="middle" fill="#555555">no data</text>"##,
            width / 2.0
        );
        svg.push_str("</svg>\n");
        return svg;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="42" font-size="11" fill="#555555">{}</text>"##,
        subtitle(&shown)
    );
    legend(&mut svg, width, &shown);
    let scale = Scale::for_values(rows.iter().flat_map(|r| r.values()).flatten());
    axis(&mut svg, scale, width);
    for (i, row) in rows.iter().enumerate() {
        group(&mut svg, scale, i, row, &shown);
    }
    let baseline = PLOT_TOP + PLOT_HEIGHT;
    for (i, note) in notes.iter().enumerate() {
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="{}" font-size="11" fill="#555555">{}</text>"##,
            baseline + under_plot(&shown) + NOTE_LINE * i as f64 - 4.0,
            escape(note)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// What the bars are and the ratio lines under each group say.
fn subtitle(shown: &Shown) -> String {
    let mut text = String::from("ticks per iteration under QEMU -icount shift=0 (log scale)");
    if shown.contains(&PLAIN) {
        text.push_str("; plain: the unpadded image, bare");
    }
    text.push_str("; seL4: pre-virtualized");
    if shown.contains(&TRAP) {
        text.push_str(", trap: trap-and-emulate on seL4");
    }
    text.push_str("; under each workload: seL4/bare");
    if shown.contains(&PLAIN) {
        text.push_str(", bare/plain (the padding)");
    }
    if shown.contains(&TRAP) {
        text.push_str(", trap/seL4 (the speed-up)");
    }
    text
}

fn legend(svg: &mut String, width: f64, shown: &Shown) {
    let mut x = width - RIGHT - 65.0 * shown.len() as f64;
    for (name, colour) in shown.iter().map(|&p| PLATFORMS[p]) {
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="14" width="12" height="12" fill="{colour}"/><text x="{}" y="24" font-size="12">{name}</text>"#,
            x + 16.0
        );
        x += 65.0;
    }
}

/// Gridlines and labels at each power of ten, lighter lines at 2..9 times
/// it, and the axis lines.
fn axis(svg: &mut String, scale: Scale, width: f64) {
    let right = width - RIGHT;
    for exponent in scale.low..=scale.high {
        let y = scale.y_of_power(f64::from(exponent));
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.2}" x2="{right}" y2="{y:.2}" stroke="#cccccc" stroke-width="1"/><text x="{}" y="{:.2}" font-size="11" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            power_label(exponent)
        );
        if exponent < scale.high {
            for m in 2..10 {
                let y = scale.y_of_power(f64::from(exponent) + f64::from(m).log10());
                let _ = writeln!(
                    svg,
                    r##"<line x1="{LEFT}" y1="{y:.2}" x2="{right}" y2="{y:.2}" stroke="#eeeeee" stroke-width="1"/>"##
                );
            }
        }
    }
    let baseline = PLOT_TOP + PLOT_HEIGHT;
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{PLOT_TOP}" x2="{LEFT}" y2="{baseline}" stroke="#333333" stroke-width="1"/><line x1="{LEFT}" y1="{baseline}" x2="{right}" y2="{baseline}" stroke="#333333" stroke-width="1"/>"##
    );
    let middle = PLOT_TOP + PLOT_HEIGHT / 2.0;
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{middle}" font-size="11" text-anchor="middle" transform="rotate(-90 18 {middle})">ticks / iteration</text>"#
    );
}

/// 10^`exponent` as an axis label: 1, 10, 100, 1k ... 100M, then 1e9.
fn power_label(exponent: i32) -> String {
    match exponent {
        0..=2 => 10u32.pow(exponent.unsigned_abs()).to_string(),
        3..=5 => format!("{}k", 10u32.pow((exponent - 3).unsigned_abs())),
        6..=8 => format!("{}M", 10u32.pow((exponent - 6).unsigned_abs())),
        -3..=-1 => format!(
            "{:.*}",
            exponent.unsigned_abs() as usize,
            10f64.powi(exponent)
        ),
        _ => format!("1e{exponent}"),
    }
}

/// One workload: its two bars (or, for a missing or zero value, a mark on
/// the baseline), each with its value above it, and the name and ratio
/// under it.
fn group(svg: &mut String, scale: Scale, index: usize, row: &Comparison, shown: &Shown) {
    let n = shown.len();
    let baseline = PLOT_TOP + PLOT_HEIGHT;
    let left = LEFT + GROUP_PAD / 2.0 + group_width(n) * index as f64;
    let _ = writeln!(svg, "<g>");
    let values = row.values();
    let bars = shown.iter().map(|&p| (PLATFORMS[p], values[p]));
    for (i, ((platform, colour), value)) in bars.enumerate() {
        let x = left + (BAR_WIDTH + BAR_GAP) * i as f64;
        let centre = x + BAR_WIDTH / 2.0;
        let (label, top) = match value {
            Some(v) if drawable(v) => {
                let h = scale.height(v);
                let _ = writeln!(
                    svg,
                    r#"<rect class="bar {platform}" x="{x:.2}" y="{:.2}" width="{BAR_WIDTH}" height="{h:.2}" fill="{colour}"><title>{}, {platform}: {} ticks/iteration</title></rect>"#,
                    baseline - h,
                    escape(&row.workload),
                    per_iteration_text(v)
                );
                (bar_label(v), baseline - h)
            }
            // No bar; the notes under the chart say why.
            Some(v) => (per_iteration_text(v), baseline),
            None => ("none".to_string(), baseline),
        };
        let _ = writeln!(
            svg,
            r#"<text x="{centre:.2}" y="{:.2}" font-size="10" text-anchor="middle">{}</text>"#,
            top - 4.0,
            escape(&label)
        );
    }
    let centre = left + (group_width(n) - GROUP_PAD) / 2.0;
    let _ = writeln!(
        svg,
        r#"<text x="{centre:.2}" y="{:.2}" font-size="12" text-anchor="middle">{}<title>{}</title></text>"#,
        baseline + 18.0,
        escape(&short_name(&row.workload)),
        escape(&row.workload)
    );
    let mut lines = vec![row
        .ratio()
        .map_or_else(|| "no ratio".to_string(), |r| format!("{}×", ratio_text(r)))];
    if shown.contains(&PLAIN) {
        lines.push(row.padding().map_or_else(
            || "no padding ratio".to_string(),
            |r| format!("padded {}×", ratio_text(r)),
        ));
    }
    if shown.contains(&TRAP) {
        lines.push(row.speedup().map_or_else(
            || "no speed-up".to_string(),
            |r| format!("{}× faster", speedup_text(r)),
        ));
    }
    for (k, line) in lines.iter().enumerate() {
        let _ = writeln!(
            svg,
            r##"<text x="{centre:.2}" y="{:.2}" font-size="11" text-anchor="middle" fill="#555555">{}</text>"##,
            baseline + 33.0 + 15.0 * k as f64,
            escape(line)
        );
    }
    let _ = writeln!(svg, "</g>");
}

/// The value over a bar: in millions from ten million up (Linux's boot),
/// which would not fit over a bar in full; the bar's tooltip has it all.
fn bar_label(value: f64) -> String {
    if value >= 1e7 {
        format!("{:.1}M", value / 1e6)
    } else {
        per_iteration_text(value)
    }
}

fn short_name(name: &str) -> String {
    if name.chars().count() <= NAME_CHARS {
        name.to_string()
    } else {
        let mut short: String = name.chars().take(NAME_CHARS - 1).collect();
        short.push('…');
        short
    }
}

/// Why a value has no bar, one line each.
fn notes(rows: &[Comparison], shown: &Shown) -> Vec<String> {
    let mut notes = Vec::new();
    for row in rows {
        let values = row.values();
        for ((platform, _), value) in shown.iter().map(|&p| (PLATFORMS[p], values[p])) {
            let why = match value {
                Some(v) if drawable(v) => continue,
                Some(v) => format!(
                    "{} ticks/iteration, not drawable on a log scale",
                    per_iteration_text(v)
                ),
                None => "no sample".to_string(),
            };
            notes.push(format!("{}, {platform}: no bar ({why})", row.workload));
        }
    }
    notes
}

/// Text for XML character data and attribute values. Characters XML 1.0
/// cannot carry at all, even as references, become U+FFFD.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: &str, bare: Option<f64>, sel4: Option<f64>) -> Comparison {
        Comparison {
            workload: workload.to_string(),
            plain: None,
            bare,
            sel4,
            trap: None,
        }
    }

    /// Parses `svg` as XML (failing the test if it does not parse) and
    /// returns (class, height) of each bar, in document order.
    fn bars(svg: &str) -> Vec<(String, f64)> {
        let doc = roxmltree::Document::parse(svg).expect("the SVG parses as XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.has_tag_name("rect"))
            .filter_map(|n| {
                let class = n.attribute("class")?;
                let height = n.attribute("height")?.parse().unwrap();
                Some((class.to_string(), height))
            })
            .collect()
    }

    fn texts(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).unwrap();
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| {
                n.children()
                    .filter(|c| c.is_text())
                    .filter_map(|c| c.text())
                    .collect()
            })
            .collect()
    }

    fn today() -> Vec<Comparison> {
        vec![
            row("cpu", Some(409606.0), Some(409840.0)),
            row("irqsave", Some(11.0), Some(28.0)),
            row("pagefault", Some(200.0), Some(10000.0)),
        ]
    }

    #[test]
    fn real_figures_make_a_well_formed_chart_with_every_bar_and_label() {
        let svg = render("t", &today());
        let bars = bars(&svg);
        assert_eq!(bars.len(), 6);
        let classes: Vec<&str> = bars.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            classes,
            ["bar bare", "bar seL4", "bar bare", "bar seL4", "bar bare", "bar seL4"]
        );
        let texts = texts(&svg);
        for expected in [
            "409606.0",
            "409840.0",
            "11.0",
            "28.0",
            "200.0",
            "10000.0",
            "1.001×",
            "2.545×",
            "50.000×",
            "bare",
            "seL4",
            "cpu",
            "irqsave",
            "pagefault",
            "10",
            "1M",
        ] {
            assert!(
                texts.iter().any(|t| t == expected),
                "no text {expected:?} in {texts:?}"
            );
        }
        // 11 needs the 10..100 decade, 409840 the one up to 1M.
        assert_eq!(
            Scale::for_values([11.0, 409840.0].into_iter()),
            Scale { low: 1, high: 6 }
        );
        assert!(!svg.contains("<script"));
        assert!(svg.contains(r#"font-family="sans-serif""#));
    }

    #[test]
    fn bar_heights_grow_with_the_value_on_a_log_scale() {
        let values = [
            0.5, 1.0, 3.0, 10.0, 11.0, 99.0, 1000.0, 409606.0, 409840.0, 2e6,
        ];
        let rows: Vec<Comparison> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| row(&format!("w{i}"), Some(v), None))
            .collect();
        let heights: Vec<f64> = bars(&render("t", &rows))
            .into_iter()
            .map(|(_, h)| h)
            .collect();
        assert_eq!(heights.len(), values.len());
        assert!(heights.windows(2).all(|w| w[0] < w[1]), "{heights:?}");
        assert!(heights[0] > 0.0 && heights[heights.len() - 1] <= PLOT_HEIGHT);
        // Log, not linear: each tenfold step adds the same height.
        let scale = Scale::for_values(values.into_iter());
        let step = |v: f64| scale.height(10.0 * v) - scale.height(v);
        assert!((step(1.0) - step(1000.0)).abs() < 1e-9);
    }

    #[test]
    fn text_is_escaped() {
        let svg = render("a <b> & \"c\"", &[row("<&>'\u{1}", Some(1.0), Some(2.0))]);
        assert!(svg.contains("&lt;&amp;&gt;&apos;\u{fffd}"), "{svg}");
        assert!(!svg.contains("<&>"));
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let title = doc.descendants().find(|n| n.has_tag_name("title")).unwrap();
        assert_eq!(title.text(), Some("a <b> & \"c\""));
        assert!(texts(&svg).iter().any(|t| t == "<&>'\u{fffd}"));
    }

    #[test]
    fn no_rows_say_no_data() {
        let svg = render("t", &[]);
        assert!(bars(&svg).is_empty());
        assert_eq!(texts(&svg), ["t", "no data"]);
    }

    #[test]
    fn a_missing_or_zero_value_has_no_bar_and_a_note() {
        let rows = [
            row("bareonly", Some(5.0), None),
            row("sel4only", None, Some(7.0)),
            row("zero", Some(0.0), Some(3.0)),
            row("odd", Some(f64::NAN), Some(f64::INFINITY)),
        ];
        let svg = render("t", &rows);
        let drawn = bars(&svg);
        assert_eq!(drawn.len(), 3, "{drawn:?}");
        let texts = texts(&svg);
        for note in [
            "bareonly, seL4: no bar (no sample)",
            "sel4only, bare: no bar (no sample)",
            "zero, bare: no bar (0.0 ticks/iteration, not drawable on a log scale)",
            "odd, bare: no bar (NaN ticks/iteration, not drawable on a log scale)",
            "odd, seL4: no bar (inf ticks/iteration, not drawable on a log scale)",
        ] {
            assert!(
                texts.iter().any(|t| t == note),
                "no note {note:?} in {texts:?}"
            );
        }
        assert_eq!(texts.iter().filter(|t| *t == "no ratio").count(), 4);
        // Nothing drawable at all still makes a chart.
        assert!(bars(&render("t", &[row("z", Some(0.0), None)])).is_empty());
    }

    #[test]
    fn output_is_deterministic_and_long_names_are_cut() {
        let name = "a-very-long-workload-name";
        let rows = [row(name, Some(1.0), Some(2.0))];
        assert_eq!(render("t", &rows), render("t", &rows));
        let texts = texts(&render("t", &rows));
        assert!(texts.iter().any(|t| t == "a-very-long-wor…"));
    }

    #[test]
    fn a_trap_value_adds_a_third_bar_and_the_speed_up() {
        let mut rows = today();
        rows[1].trap = Some(3500.0);
        let svg = render("t", &rows);
        let classes: Vec<String> = bars(&svg).into_iter().map(|(c, _)| c).collect();
        assert_eq!(
            classes,
            ["bar bare", "bar seL4", "bar bare", "bar seL4", "bar trap", "bar bare", "bar seL4"]
        );
        let texts = texts(&svg);
        for expected in [
            "3500.0",
            "125.0× faster",
            "trap",
            "cpu, trap: no bar (no sample)",
        ] {
            assert!(
                texts.iter().any(|t| t == expected),
                "no text {expected:?} in {texts:?}"
            );
        }
        assert_eq!(texts.iter().filter(|t| *t == "no speed-up").count(), 2);
    }

    #[test]
    fn a_plain_value_adds_a_bar_before_bare_and_the_padding_ratio() {
        let mut rows = today();
        rows.push(row("linux-boot", Some(1.2e9), Some(3.0e9)));
        rows[3].plain = Some(1.0e9);
        let svg = render("t", &rows);
        let classes: Vec<String> = bars(&svg).into_iter().map(|(c, _)| c).collect();
        assert_eq!(classes.len(), 9);
        assert_eq!(classes[6..], ["bar plain", "bar bare", "bar seL4"]);
        let texts = texts(&svg);
        for expected in [
            "1000.0M",
            "1200.0M",
            "padded 1.200×",
            "2.500×",
            "plain",
            "cpu, plain: no bar (no sample)",
            "1e9",
        ] {
            assert!(
                texts.iter().any(|t| t == expected),
                "no text {expected:?} in {texts:?}"
            );
        }
        assert_eq!(texts.iter().filter(|t| *t == "no padding ratio").count(), 3);
        assert!(svg.contains("linux-boot, plain: 1000000000.0 ticks/iteration"));
        // Without plain values, no plain bar, legend or line.
        assert!(!render("t", &today()).contains("plain"));
    }

    #[test]
    fn axis_labels() {
        let labels: Vec<String> = (-4..=10).map(power_label).collect();
        assert_eq!(
            labels,
            [
                "1e-4", "0.001", "0.01", "0.1", "1", "10", "100", "1k", "10k", "100k", "1M", "10M",
                "100M", "1e9", "1e10"
            ]
        );
    }
}

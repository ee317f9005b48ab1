//! The benchmark's pictures: throughput over time, one line per way of changing the kernel,
//! the moment the change starts at x = 0, drawn with `plotters` to SVG and PNG. Text uses a
//! TrueType font read at run time (DejaVu Sans, Debian's `fonts-dejavu-core`).

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// One line of a panel.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend text.
    pub label: String,
    /// Colour.
    pub color: RGBColor,
    /// (seconds from the event, value).
    pub points: Vec<(f64, f64)>,
}

/// One panel (a y axis) of a chart.
#[derive(Debug, Clone)]
pub struct Panel {
    /// The y axis' name.
    pub y_desc: String,
    /// Its lines.
    pub lines: Vec<Line>,
    /// A fixed top of the y axis (e.g. 100 for a percentage), else from the data.
    pub y_max: Option<f64>,
}

/// A chart: a title and panels stacked vertically over one time axis.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// Panels, top to bottom.
    pub panels: Vec<Panel>,
}

const FONT_PATHS: &[&str] =
    &["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"];

/// Registers DejaVu Sans as plotters' `sans-serif` (installing `fonts-dejavu-core` with
/// apt-get when no copy is there).
pub fn register_font() -> Result<()> {
    let find = || FONT_PATHS.iter().find(|p| Path::new(p).exists());
    if find().is_none() {
        let status = std::process::Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends", "fonts-dejavu-core"])
            .status()
            .context("running apt-get")?;
        anyhow::ensure!(status.success(), "apt-get install fonts-dejavu-core failed");
    }
    let path = find().context("no DejaVuSans.ttf after installing fonts-dejavu-core")?;
    let bytes: &'static [u8] = Vec::leak(std::fs::read(path).with_context(|| format!("reading {path}"))?);
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{path} is not a font ab_glyph can read"))?;
    Ok(())
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &Chart) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing: {e:?}");
    root.fill(&WHITE).map_err(e)?;
    let root = root.titled(&chart.title, ("sans-serif", 24)).map_err(e)?;
    let (x0, x1) = chart
        .panels
        .iter()
        .flat_map(|p| p.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)))
        .fold((0.0f64, 1.0f64), |(a, b), x| (a.min(x), b.max(x)));
    let areas = root.split_evenly((chart.panels.len(), 1));
    for (i, (panel, area)) in chart.panels.iter().zip(&areas).enumerate() {
        let top = panel.y_max.unwrap_or_else(|| {
            let m = panel.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(0.0f64, f64::max);
            (m * 1.15).max(1.0)
        });
        let mut c = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, 0.0..top)
            .map_err(e)?;
        let last = i + 1 == chart.panels.len();
        c.configure_mesh()
            .x_desc(if last { "seconds from the start of the upgrade / reboot / kexec" } else { "" })
            .y_desc(&panel.y_desc)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(e)?;
        for l in &panel.lines {
            let color = l.color;
            // A line breaks where points are missing (no hit rate while nothing answered).
            let mut segments: Vec<Vec<(f64, f64)>> = Vec::new();
            for &p in &l.points {
                match segments.last_mut() {
                    Some(s) if s.last().is_some_and(|q| p.0 - q.0 <= 1.0) => s.push(p),
                    _ => segments.push(vec![p]),
                }
            }
            for (k, seg) in segments.into_iter().enumerate() {
                let drawn = c.draw_series(LineSeries::new(seg, color.stroke_width(2))).map_err(e)?;
                if k == 0 {
                    drawn
                        .label(&l.label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
                }
            }
        }
        c.draw_series(std::iter::once(PathElement::new(vec![(0.0, 0.0), (0.0, top)], BLACK.stroke_width(1))))
            .map_err(e)?;
        c.draw_series(std::iter::once(Text::new(
            "kernel change starts",
            (0.0, top * 0.97),
            ("sans-serif", 14).into_font().color(&BLACK),
        )))
        .map_err(e)?;
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

/// Writes `chart` to `stem.svg` and `stem.png`.
pub fn write(chart: &Chart, stem: &Path) -> Result<()> {
    let height = 320 + 300 * chart.panels.len() as u32;
    let svg = stem.with_extension("svg");
    draw(&SVGBackend::new(&svg, (1100, height)).into_drawing_area(), chart)
        .with_context(|| format!("writing {}", svg.display()))?;
    let png = stem.with_extension("png");
    draw(&BitMapBackend::new(&png, (1100, height)).into_drawing_area(), chart)
        .with_context(|| format!("writing {}", png.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_svg_and_png() -> Result<()> {
        register_font()?;
        let dir = std::env::temp_dir().join(format!("seamless-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let line = |label: &str, color, f: fn(f64) -> f64| Line {
            label: label.into(),
            color,
            points: (-20..60).map(|x| (f64::from(x), f(f64::from(x)))).collect(),
        };
        let chart = Chart {
            title: "test".into(),
            panels: vec![
                Panel {
                    y_desc: "requests / s".into(),
                    lines: vec![line("a", RED, |x| if (0.0..10.0).contains(&x) { 0.0 } else { 100.0 })],
                    y_max: None,
                },
                Panel { y_desc: "hit rate (%)".into(), lines: vec![line("b", BLUE, |_| 99.0)], y_max: Some(105.0) },
            ],
        };
        write(&chart, &dir.join("t"))?;
        let svg = std::fs::read_to_string(dir.join("t.svg"))?;
        assert!(svg.contains("requests / s"));
        assert!(std::fs::metadata(dir.join("t.png"))?.len() > 1000);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}

//! Line charts drawn by plotters' SVG backend into a string, to be inlined in the page.
use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// One line of a chart: `(x, y)` points in x order; non-finite points are left out.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// What a chart shows.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series],
    /// Draw a dot at every point: for sparse series such as one metric value per snapshot.
    pub markers: bool,
    /// A point to ring, e.g. the best FID.
    pub highlight: Option<(f64, f64)>,
}

const WIDTH: u32 = 1040;
const HEIGHT: u32 = 340;
/// The legend's panel at the right, beside the plot so that it never hides a line.
const LEGEND_WIDTH: u32 = 210;

/// Distinct colours that stay apart on white (a colour-blind-safe qualitative palette).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(160, 40, 40),
];

/// The chart as an `<svg>` element, or None when no series has a finite point.
pub fn line_chart(chart: &Chart) -> Result<Option<String>> {
    let finite: Vec<Vec<(f64, f64)>> = chart
        .series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect()
        })
        .collect();
    let all = || finite.iter().flatten();
    if all().next().is_none() {
        return Ok(None);
    }
    let x_range = padded(all().map(|p| p.0), 0.02);
    let y_range = padded(all().map(|p| p.1), 0.06);
    let mut svg = String::new();
    draw(chart, &finite, x_range, y_range, &mut svg)
        .map_err(|e| anyhow!("cannot draw the chart '{}': {e}", chart.title))?;
    Ok(Some(svg))
}

fn draw(
    chart: &Chart,
    finite: &[Vec<(f64, f64)>],
    x_range: std::ops::Range<f64>,
    y_range: std::ops::Range<f64>,
    svg: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    let area = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    area.fill(&WHITE)?;
    let (plot_area, legend_area) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    let mut ctx = ChartBuilder::on(&plot_area)
        .caption(chart.title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(42)
        .y_label_area_size(72)
        .build_cartesian_2d(x_range, y_range)?;
    ctx.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .light_line_style(RGBColor(238, 240, 243))
        .bold_line_style(RGBColor(220, 224, 229))
        .label_style(("sans-serif", 15))
        .draw()?;
    for (i, (series, points)) in chart.series.iter().zip(finite).enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let dots = if chart.markers || points.len() == 1 {
            3
        } else {
            0
        };
        ctx.draw_series(
            LineSeries::new(points.iter().copied(), color.stroke_width(2)).point_size(dots),
        )?;
        let y = 44 + 22 * i as i32;
        legend_area.draw(&PathElement::new(
            vec![(4, y), (26, y)],
            color.stroke_width(3),
        ))?;
        legend_area.draw(&Text::new(
            series.label.clone(),
            (32, y - 7),
            ("sans-serif", 15).into_font(),
        ))?;
    }
    if let Some(p) = chart.highlight {
        ctx.draw_series(std::iter::once(Circle::new(
            p,
            8,
            RGBColor(214, 69, 69).stroke_width(2),
        )))?;
    }
    area.present()?;
    Ok(())
}

/// The span of `values` widened by `pad` of its length on each side; a single value gets a
/// span around it so that the axis still has ticks.
fn padded(values: impl Iterator<Item = f64>, pad: f64) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let span = hi - lo;
    if span <= f64::EPSILON * hi.abs().max(1.0) {
        let half = (hi.abs() * 0.05).max(0.5);
        return lo - half..hi + half;
    }
    lo - span * pad..hi + span * pad
}

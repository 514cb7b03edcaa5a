//! PNG line charts (curves over a common x axis), drawn with plotters and the embedded font.

use super::plot::{DrawResult, Frame, axes, ensure_font, markers_and_legend, write_png};
use crate::error::{DsbError, Result};
use plotters::prelude::*;
use std::path::Path;

/// One curve: label, points (x, y) in order, RGB colour.
pub type Curve = (String, Vec<(f64, f64)>, (u8, u8, u8));

/// A line chart of one or more curves.
#[derive(Debug, Default)]
pub struct LinePlot {
    /// Title drawn above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_desc: String,
    /// Label of the y axis.
    pub y_desc: String,
    /// The curves (non-finite points are left out).
    pub curves: Vec<Curve>,
}

/// Draws `plot` to an 800×600 PNG file at `path`, atomically.
pub fn lines_png(path: &Path, plot: &LinePlot) -> Result<()> {
    ensure_font();
    let pts = || {
        plot.curves
            .iter()
            .flat_map(|c| c.1.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts() {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Err(DsbError::InvalidInput(format!(
            "{}: no finite point to plot",
            path.display()
        )));
    }
    let pad = |a: f64, b: f64| {
        let p = ((b - a) * 0.05).max(1e-9);
        (a - p, b + p)
    };
    let ((x0, x1), (y0, y1)) = (pad(x0, x1), pad(y0, y1));
    write_png(path, |tmp| -> DrawResult {
        let root = BitMapBackend::new(tmp, (800, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let frame = Frame {
            x_desc: &plot.x_desc,
            y_desc: &plot.y_desc,
            y_label_area: 60,
        };
        let mut chart = axes(&root, &plot.title, 22, (x0, x1), (y0, y1), &frame)?;
        for (label, points, (r, g, b)) in &plot.curves {
            let c = RGBColor(*r, *g, *b);
            let finite = points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite());
            chart
                .draw_series(LineSeries::new(finite, c.stroke_width(2)))?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x - 8, y), (x + 8, y)], c.stroke_width(2))
                });
        }
        markers_and_legend(&mut chart, None)?;
        root.present()?;
        Ok(())
    })
}

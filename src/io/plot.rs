//! PNG scatter plots of the first two coordinates, drawn with plotters and an embedded font
//! (DejaVu Sans, see `assets/DejaVuSans.LICENSE`), so no system font libraries are needed.

use super::atomic_write_with;
use crate::error::{DsbError, Result};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn ensure_font() {
    REGISTER.call_once(|| {
        // Registering can only fail on a malformed font file, which is embedded and fixed.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One layer of a scatter plot: label, points (x, y) and RGB colour.
pub type Layer = (String, Vec<(f64, f64)>, (u8, u8, u8));

/// A scatter plot: points in one or more layers, each with a label and colour.
#[derive(Debug, Default)]
pub struct ScatterPlot {
    /// Title drawn above the plot.
    pub title: String,
    /// Layers of (label, points (x, y), RGB colour).
    pub layers: Vec<Layer>,
    /// Extra markers (e.g. true mode centres): label and points, drawn as crosses.
    pub markers: Option<(String, Vec<(f64, f64)>)>,
}

/// Draws `plot` to a PNG file at `path` (800×800), atomically.
pub fn scatter_png(path: &Path, plot: &ScatterPlot) -> Result<()> {
    ensure_font();
    let all = plot
        .layers
        .iter()
        .flat_map(|l| l.1.iter())
        .chain(plot.markers.iter().flat_map(|m| m.1.iter()));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all.filter(|p| p.0.is_finite() && p.1.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Err(DsbError::InvalidInput("nothing finite to plot".into()));
    }
    let pad = |a: f64, b: f64| ((b - a) * 0.05).max(1e-3);
    let (px, py) = (pad(x0, x1), pad(y0, y1));
    atomic_write_with(path, |tmp| {
        let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
            let root = BitMapBackend::new(tmp, (800, 800)).into_drawing_area();
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&plot.title, ("sans-serif", 22))
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py)..(y1 + py))?;
            chart
                .configure_mesh()
                .x_desc("x1")
                .y_desc("x2")
                .label_style(("sans-serif", 14))
                .draw()?;
            for (label, pts, (r, g, b)) in &plot.layers {
                let c = RGBColor(*r, *g, *b).mix(0.35);
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 2, c.filled())))?
                    .label(label.as_str())
                    .legend(move |(x, y)| Circle::new((x, y), 4, c.filled()));
            }
            if let Some((label, pts)) = &plot.markers {
                chart
                    .draw_series(pts.iter().map(|&p| Cross::new(p, 5, RED.stroke_width(2))))?
                    .label(label.as_str())
                    .legend(|(x, y)| Cross::new((x, y), 5, RED.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()?;
            root.present()?;
            Ok(())
        };
        draw().map_err(|e| {
            DsbError::InvalidInput(format!("{}: cannot draw the plot: {e}", path.display()))
        })
    })
}

//! PNG scatter plots of the first two coordinates (and weighted histograms for 1-D samples,
//! which have no second coordinate), drawn with plotters and an embedded font (DejaVu Sans, see
//! `assets/DejaVuSans.LICENSE`), so no system font libraries are needed.

use super::atomic_write_with;
use crate::error::{DsbError, Result};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

pub(super) fn ensure_font() {
    REGISTER.call_once(|| {
        // Registering can only fail on a malformed font file, which is embedded and fixed.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// A drawing that can fail inside plotters.
pub(super) type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Draws a PNG to `path` atomically: `draw` writes it to the temporary path it is given.
pub(super) fn write_png(path: &Path, draw: impl FnOnce(&Path) -> DrawResult) -> Result<()> {
    atomic_write_with(path, |tmp| {
        draw(tmp).map_err(|e| {
            DsbError::InvalidInput(format!("{}: cannot draw the plot: {e}", path.display()))
        })
    })
}

/// Draws `markers` (label and points) as red crosses, then the legend box of every labelled
/// series: the end of the single chart and of the histogram.
pub(super) fn markers_and_legend<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    markers: Option<(&str, Vec<(f64, f64)>)>,
) -> DrawResult {
    if let Some((label, pts)) = markers {
        chart
            .draw_series(
                pts.into_iter()
                    .map(|p| Cross::new(p, 5, RED.stroke_width(2))),
            )?
            .label(label)
            .legend(|(x, y)| Cross::new((x, y), 5, RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
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
    /// Draw each layer in its own panel, side by side on the same axes (e.g. data beside
    /// generated points), instead of all layers on one chart.
    pub side_by_side: bool,
}

/// Draws `plot` to a PNG file at `path` (800×800, or 600 high and 600 wide per layer when side
/// by side), atomically.
pub fn scatter_png(path: &Path, plot: &ScatterPlot) -> Result<()> {
    ensure_font();
    if plot.side_by_side {
        return panels_png(path, plot);
    }
    let all = plot
        .layers
        .iter()
        .flat_map(|l| l.1.iter())
        .chain(plot.markers.iter().flat_map(|m| m.1.iter()));
    let ((x0, x1), (y0, y1)) = padded(all)?;
    write_png(path, |tmp| {
        let root = BitMapBackend::new(tmp, (800, 800)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = axes(&root, &plot.title, 22, (x0, x1), (y0, y1), &SCATTER)?;
        for (label, pts, (r, g, b)) in &plot.layers {
            let c = RGBColor(*r, *g, *b).mix(0.35);
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 2, c.filled())))?
                .label(label.as_str())
                .legend(move |(x, y)| Circle::new((x, y), 4, c.filled()));
        }
        let markers = plot.markers.as_ref().map(|(l, p)| (l.as_str(), p.clone()));
        markers_and_legend(&mut chart, markers)?;
        root.present()?;
        Ok(())
    })
}

/// One layer of a histogram: label, values, their weights (any non-negative scale; normalised
/// per layer) and RGB colour.
pub type HistLayer = (String, Vec<f64>, Vec<f64>, (u8, u8, u8));

/// A weighted histogram of 1-D samples: each layer drawn as a density (its bars integrate to 1).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Title drawn above the plot.
    pub title: String,
    /// Layers, drawn over each other.
    pub layers: Vec<HistLayer>,
    /// Extra markers on the x axis (e.g. true mode centres): label and positions.
    pub markers: Option<(String, Vec<f64>)>,
}

/// Bins of a histogram.
const BINS: usize = 60;

/// Per-layer densities over `BINS` equal bins of [x0, x1]; non-finite values or weights are
/// left out.
fn densities(values: &[f64], weights: &[f64], (x0, x1): (f64, f64)) -> Vec<f64> {
    let width = (x1 - x0) / BINS as f64;
    let mut h = vec![0.0; BINS];
    let mut total = 0.0;
    for (&v, &w) in values.iter().zip(weights) {
        if v.is_finite() && w.is_finite() && w > 0.0 {
            let b = (((v - x0) / width) as usize).min(BINS - 1);
            h[b] += w;
            total += w;
        }
    }
    if total > 0.0 {
        h.iter_mut().for_each(|v| *v /= total * width);
    }
    h
}

/// Draws `hist` to an 800×600 PNG file at `path`, atomically.
pub fn histogram_png(path: &Path, hist: &Histogram) -> Result<()> {
    ensure_font();
    let xs: Vec<(f64, f64)> = hist
        .layers
        .iter()
        .flat_map(|l| l.1.iter())
        .chain(hist.markers.iter().flat_map(|m| m.1.iter()))
        .map(|&v| (v, 0.0))
        .collect();
    let ((x0, x1), _) = padded(xs.iter())?;
    let dens: Vec<Vec<f64>> = hist
        .layers
        .iter()
        .map(|(_, v, w, _)| densities(v, w, (x0, x1)))
        .collect();
    let top = dens.iter().flatten().cloned().fold(0.0f64, f64::max);
    let y1 = if top > 0.0 { top * 1.05 } else { 1.0 };
    let width = (x1 - x0) / BINS as f64;
    write_png(path, |tmp| {
        let root = BitMapBackend::new(tmp, (800, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let frame = Frame {
            x_desc: "x1",
            y_desc: "density",
            y_label_area: 60,
        };
        let mut chart = axes(&root, &hist.title, 22, (x0, x1), (0.0, y1), &frame)?;
        for ((label, _, _, (r, g, b)), d) in hist.layers.iter().zip(&dens) {
            let c = RGBColor(*r, *g, *b);
            let fill = c.mix(0.35);
            chart
                .draw_series(d.iter().enumerate().map(|(i, &h)| {
                    let a = x0 + i as f64 * width;
                    Rectangle::new([(a, 0.0), (a + width, h)], fill.filled())
                }))?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x - 5, y - 5), (x + 5, y + 5)], fill.filled())
                });
            chart.draw_series(d.iter().enumerate().map(|(i, &h)| {
                let a = x0 + i as f64 * width;
                Rectangle::new([(a, 0.0), (a + width, h)], c.stroke_width(1))
            }))?;
        }
        let markers = hist
            .markers
            .as_ref()
            .map(|(l, p)| (l.as_str(), p.iter().map(|&v| (v, 0.0)).collect()));
        markers_and_legend(&mut chart, markers)?;
        root.present()?;
        Ok(())
    })
}

/// The x and y ranges of the finite points, padded by 5% on each side.
type Ranges = ((f64, f64), (f64, f64));

fn padded<'a>(points: impl Iterator<Item = &'a (f64, f64)>) -> Result<Ranges> {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points.filter(|p| p.0.is_finite() && p.1.is_finite()) {
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
    Ok(((x0 - px, x1 + px), (y0 - py, y1 + py)))
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The axis labels and the width of the y-label area of a chart frame ([`axes`]).
pub(super) struct Frame<'s> {
    pub(super) x_desc: &'s str,
    pub(super) y_desc: &'s str,
    pub(super) y_label_area: u32,
}

/// The frame of the scatter plots: axes x1, x2.
const SCATTER: Frame<'static> = Frame {
    x_desc: "x1",
    y_desc: "x2",
    y_label_area: 50,
};

/// A captioned chart on `area` over [x0, x1] × [y0, y1], with its grid and axis labels drawn:
/// the frame shared by the single chart, the side-by-side panels, the histogram and the line
/// charts.
pub(super) fn axes<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    caption_size: u32,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    frame: &Frame<'_>,
) -> std::result::Result<Chart<'a, 'b>, Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", caption_size))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(frame.y_label_area)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(frame.x_desc)
        .y_desc(frame.y_desc)
        .label_style(("sans-serif", 14))
        .draw()?;
    Ok(chart)
}

/// One panel per layer, side by side, on the same axes.
fn panels_png(path: &Path, plot: &ScatterPlot) -> Result<()> {
    let ((x0, x1), (y0, y1)) = padded(plot.layers.iter().flat_map(|l| l.1.iter()))?;
    let panels = plot.layers.len().max(1) as u32;
    write_png(path, |tmp| {
        let root = BitMapBackend::new(tmp, (600 * panels, 640)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(&plot.title, ("sans-serif", 22))?;
        let areas = root.split_evenly((1, panels as usize));
        for ((label, pts, (r, g, b)), area) in plot.layers.iter().zip(&areas) {
            let c = RGBColor(*r, *g, *b).mix(0.4);
            let mut chart = axes(area, label, 18, (x0, x1), (y0, y1), &SCATTER)?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, c.filled())))?;
        }
        root.present()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weighted densities integrate to one and follow the weights.
    #[test]
    fn histogram_densities_follow_the_weights() {
        let d = densities(
            &[0.1, 0.9, 0.95, f64::NAN],
            &[3.0, 1.0, 0.0, 1.0],
            (0.0, 1.0),
        );
        let w = 1.0 / BINS as f64;
        assert!((d.iter().sum::<f64>() * w - 1.0).abs() < 1e-12);
        assert!((d[6] * w - 0.75).abs() < 1e-12 && (d[54] * w - 0.25).abs() < 1e-12);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.png");
        let hist = Histogram {
            title: "1-D".into(),
            layers: vec![(
                "dsb".into(),
                vec![-1.0, 0.0, 0.5, 2.0],
                vec![1.0; 4],
                (31, 119, 180),
            )],
            markers: Some(("modes".into(), vec![0.0])),
        };
        histogram_png(&p, &hist).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 600);
    }

    #[test]
    fn side_by_side_panels_are_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("two.png");
        let plot = ScatterPlot {
            title: "data and samples".into(),
            layers: vec![
                ("data".into(), vec![(0.0, 0.0), (1.0, 2.0)], (255, 127, 14)),
                ("generated".into(), vec![(0.5, 1.0)], (31, 119, 180)),
            ],
            markers: None,
            side_by_side: true,
        };
        scatter_png(&p, &plot).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        // Width 1200 (two panels) in the IHDR chunk.
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 1200);
    }
}

//! Files: sample output (CSV, NPY) and pictures (PNG); the atomic writes of [`crate::fsutil`] are
//! re-exported here.

mod grid;
mod lines;
mod plot;
mod samples;

pub use grid::{GRID_GAP, grid_size, image_grid_png, pixel_byte, upscale};
pub use lines::{Curve, LinePlot, lines_png};
pub use plot::{HistLayer, Histogram, ScatterPlot, histogram_png, scatter_png};
pub use samples::{write_points_csv, write_samples, write_samples_csv, write_samples_npy};

pub use crate::fsutil::{atomic_write, atomic_write_with};

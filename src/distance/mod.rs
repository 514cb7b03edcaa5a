//! Two-sample distances between point sets (rows of f64, row-major): the unbiased MMD² with
//! median-heuristic Gaussian kernels, and the energy distance.
//!
//! A leaf module: it imports nothing from the crate, so both `fit` (its per-iteration rows) and
//! `metrics` (which re-exports these functions) use it without an edge against the dependency
//! order.

mod energy;
mod mmd;

pub use energy::energy_distance;
pub use mmd::{MMD_BANDWIDTH_FACTORS, median_distance, mmd2, mmd2_with_bandwidths};

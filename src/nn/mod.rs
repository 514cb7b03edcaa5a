//! Drift networks and their parameters.

mod drift;
mod params;

pub use drift::{DriftNet, TimeFeatures};
pub use params::{Init, ParamStore};

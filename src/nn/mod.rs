//! Drift networks (an MLP for vectors, a UNet for images) and their parameters.

mod drift;
mod params;
pub mod unet;

pub use drift::{DriftNet, TimeFeatures};
pub use params::{Init, ParamStore};
pub use unet::{UNet, UNetConfig};

//! Drift networks (an MLP for vectors, a UNet for images) and their parameters.

mod drift;
mod fast;
mod params;
pub mod unet;

pub use drift::{DriftNet, TimeFeatures};
pub use fast::{FastDrift, FastGradients, HalfDrift, StepAdjoint, split_point};
pub use params::{Init, ParamStore, read_safetensors};
pub use unet::{UNet, UNetConfig};

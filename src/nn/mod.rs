//! Drift networks (an MLP for vectors, a UNet for images) and their parameters.

mod conv;
mod drift;
mod fast;
mod norm;
mod op_support;
mod params;
pub mod unet;

pub use conv::Conv2d;
pub use drift::{DriftNet, TimeFeatures};
pub(crate) use fast::tiled;
pub use fast::{FastDrift, FastGradients, HalfDrift, MIN_PART_ROWS, StepAdjoint, split_point};
pub use norm::GroupNorm;
pub(crate) use op_support::HostView;
pub use params::{Init, ParamStore, read_safetensors};
pub use unet::{UNet, UNetConfig};

//! Baselines that run through the same [`crate::target::Target`] trait as the diffusion
//! sampler: adaptive-tempering sequential Monte Carlo ([`run_smc`], gives log Ẑ) and the
//! No-U-Turn sampler (posterior moments only).

mod nuts;
mod particles;
mod smc;

pub use nuts::{NutsConfig, NutsResult, run_nuts};
pub use particles::{DiagGaussian, Want, evaluate};
pub use smc::{MoveKernel, SmcConfig, SmcResult, SmcStep, run_smc};

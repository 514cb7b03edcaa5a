//! Baselines that run through the same [`crate::target::Target`] trait as the diffusion
//! sampler: adaptive-tempering sequential Monte Carlo ([`run_smc`], gives log Ẑ) and the
//! No-U-Turn sampler (posterior moments only).

mod nuts;
mod particles;
mod precondition;
mod smc;

/// Kept here for existing callers; the evaluation lives in [`crate::target`].
pub use crate::target::{Want, evaluate};
pub use nuts::{NutsConfig, NutsResult, run_nuts};
pub use particles::DiagGaussian;
pub use precondition::Preconditioner;
pub use smc::{MoveKernel, SmcConfig, SmcResult, SmcStep, run_smc};
pub(crate) use smc::{Population, TemperedMove, ess_fraction, final_set, tempered};

use serde::{Deserialize, Serialize};

/// A sampling method: the diffusion sampler or one of the baselines.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The diffusion sampler (trained, then sampled; log Z, ELBO, ESS).
    #[default]
    Dsb,
    /// Adaptive-tempering SMC from N(0, σ²) with MALA or HMC moves (log Z and samples).
    Smc,
    /// The No-U-Turn sampler of nuts-rs (posterior moments; no log Z).
    Nuts,
    /// The sequential diffusion sampler ([`crate::sequential`]): learned controlled Langevin
    /// transitions along the annealing path, with resampling and HMC moves (log Z ± s.e.).
    Sequential,
}

//! Baselines that run through the same [`crate::target::Target`] trait as the diffusion
//! sampler: adaptive-tempering sequential Monte Carlo ([`run_smc`], gives log Ẑ) and the
//! No-U-Turn sampler (posterior moments only).

mod nuts;
mod smc;

/// The starting Gaussian and the preconditioner live in [`crate::mcmc`], which the moves share.
pub use crate::mcmc::{DiagGaussian, Preconditioner};
/// Kept here for existing callers; the evaluation lives in [`crate::target`].
pub use crate::target::{Want, evaluate};
pub use nuts::{NutsConfig, NutsResult, run_nuts};
pub use smc::{MoveKernel, SmcConfig, SmcResult, SmcStep, run_smc};
pub(crate) use smc::{ess_fraction, final_set, run_smc_in_target_coordinates};

use serde::{Deserialize, Serialize};

impl DiagGaussian {
    /// The diagonal prior N(m, diag(σᵢ²)) a diffusion sampler with settings `scfg` starts from
    /// (m = 0 unless `prior_mean` is set): the start of both baselines, so that every method
    /// begins from the same Gaussian.
    pub fn sampler_prior(scfg: &crate::sampler::SamplerConfig, dim: usize) -> Self {
        Self {
            mean: scfg.prior_mean.clone().unwrap_or_else(|| vec![0.0; dim]),
            scale: scfg.scales(dim),
        }
    }
}

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

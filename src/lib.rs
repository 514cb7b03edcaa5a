//! # dsb: diffusion samplers and Schrödinger bridges
//!
//! `dsb` samples from probability densities known up to a normalising constant, and estimates
//! that constant, by learning the time reversal of an Ornstein–Uhlenbeck noising diffusion
//! (the Denoising Diffusion Sampler) — see `docs/design.md` in the repository for the architecture
//! and the algorithms.
//!
//! The main entry points: implement [`target::Target`] (or pick a built-in one), build a
//! [`sampler::DiffusionSampler`], train it with [`train::train`], then draw weighted samples with
//! [`sampler::DiffusionSampler::sample`], whose [`estimate::Estimates`] hold log Ẑ, the ELBO
//! and the effective sample size. [`ipf::run`] refines the trained sampler into a Schrödinger
//! bridge by iterative proportional fitting (useful with short horizons or few steps);
//! [`ipf::SampleRun`] runs both with checkpoints that a later run resumes exactly; and
//! [`bridge::GaussianBridge`] is the closed-form Gaussian case that checks it.
//! [`data::load`] reads data sets for generative training (2-D toy generators, CSV points,
//! MNIST-style IDX images), and [`fit::Fit`] trains generative models on them: a DDPM-style
//! model refined into a Schrödinger bridge by IPF (DSB), with held-out MMD, energy distance and
//! ELBO ([`fit`]).
//!
//! ```
//! use candle_core::Device;
//! use dsb::prelude::*;
//! use rand::SeedableRng;
//!
//! // A 2-D correlated Gaussian whose log Z is known.
//! let target = CorrelatedGaussian::builtin(2).unwrap();
//! let config = SamplerConfig { sigma: 2.0, steps: 16, width: 32, ..Default::default() };
//! let mut sampler = DiffusionSampler::new(target.dim(), config, 0, &Device::Cpu).unwrap();
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let train_cfg = TrainConfig { iterations: 30, batch: 64, ..Default::default() };
//! train(&mut sampler, &target, &train_cfg, &mut rng, |_| {}).unwrap();
//! let set = sampler.sample(&target, 500, 500, &mut rng).unwrap();
//! assert_eq!(set.len(), 500);
//! assert!(set.estimates.log_z.is_finite());
//! println!("log Z ≈ {:.3} (true {:.3})", set.estimates.log_z, target.log_z().unwrap());
//! ```

#![warn(missing_docs)]

pub mod baseline;
/// The `dsb bench` suite (used by the binary; not part of the library's API).
#[doc(hidden)]
pub mod bench;
pub mod binomial;
pub mod bridge;
/// The command-line interface (used by the binary; not part of the library's API).
#[doc(hidden)]
pub mod cli;
pub mod condition;
pub mod csv_table;
pub mod data;
pub mod distance;
pub mod error;
pub mod estimate;
pub mod eval;
pub mod fit;
mod fsutil;
pub mod io;
pub mod ipf;
mod mcmc;
pub mod metrics;
pub mod nn;
pub mod process;
pub mod recommend;
pub mod sampler;
pub mod sequential;
pub mod target;
pub mod train;

#[cfg(test)]
mod test_support;

/// The types most programs need.
pub mod prelude {
    pub use crate::error::{DsbError, Result};
    pub use crate::estimate::Estimates;
    pub use crate::ipf::{Checkpoints, ForwardFitConfig, IpfConfig, IpfRow, RunSpec, SampleRun};
    pub use crate::process::Schedule;
    pub use crate::recommend::recommended_settings;
    pub use crate::sampler::{DiffusionSampler, SampleSet, SamplerConfig};
    pub use crate::target::{CorrelatedGaussian, Funnel, GaussianMixture, ManyWell, Target};
    pub use crate::train::checkpoint::RunRng;
    pub use crate::train::{Loss, TrainConfig, Trainer, train};
}

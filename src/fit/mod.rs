//! Generative modelling from data by Schrödinger-bridge IPF (DSB, De Bortoli et al., 2021),
//! on the time grid and reference process of the sampler.
//!
//! Points are standardised per coordinate ([`Normalisation`]), so the prior is N(0, I) (σ = 1)
//! in the model's coordinates. Images (`mnist`, `fashion-mnist`, a directory of IDX files) keep
//! their pixel values in [−1, 1] ([`Normalisation::identity`]; the prior is N(0, I) on them),
//! travel flattened to `[B, C·H·W]` and are modelled by a UNet ([`NetworkSpec::Unet`],
//! reshaped around its call by [`UNetNet`]); their held-out bound is also reported in bits per
//! dimension with uniform dequantisation ([`elbo`] documents the formula). Every kernel is Gaussian with a variance shared by the forward
//! and backward kernel of a step ([`Kernels`]):
//!
//! - forward process P: x_0 = data, x_{k+1} ~ N(a_k x_k + s_k f(x_k, t_k), s_k² I), where f is
//!   absent (zero) at IPF iteration 0, making P the reference (OU by default), and a learned,
//!   zero-initialised network afterwards;
//! - backward process Q: x_N ~ N(0, I), x_k ~ N(b_k x_{k+1} + λ_k g(x_{k+1}, t_{k+1}), s_k² I)
//!   with the learned network g (Tweedie's form, see [`Kernels`]).
//!
//! IPF iteration 0 fits g by mean matching on reference paths from the data: a DDPM-style
//! model. Iteration n ≥ 1 first fits f to the reversal of Q on cached paths of Q from the prior,
//! then g to the reversal of the new P on cached paths of P from the data ([`Fit::run`]). Both
//! regressions use the exact conditional mean rather than DSB's first-order target
//! ([`losses`](self) explains why). Networks warm-start from one half-step to the next and end
//! each holding the EMA of their weights, which is what is sampled and saved.
//!
//! ```
//! use dsb::fit::{DataSpec, Fit, FitConfig, GenerateOptions, NetworkSpec, RunOptions};
//! use rand::SeedableRng;
//!
//! let data = DataSpec { name: "two-moons".into(), n: 600, seed: 1, held_out: 0.2, data_dir: None };
//! let config = FitConfig {
//!     steps: 10,
//!     iters: 30,
//!     batch: 64,
//!     network: NetworkSpec::Mlp { width: 16, depth: 1 },
//!     eval_samples: 100,
//!     ..Default::default()
//! };
//! let mut fit = Fit::new(data, config, &candle_core::Device::Cpu).unwrap();
//! assert!(fit.run(&RunOptions::default(), |_| {}).unwrap());
//! let row = &fit.progress().rows[0];
//! println!("MMD² {:.4}, held-out ELBO {:.3} nats/dim", row.mmd2, row.elbo.nats_per_dim);
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let points = fit.model.generate(5, &GenerateOptions::default(), &mut rng).unwrap();
//! assert_eq!((points.n, points.dim), (5, 2));
//! ```

mod checkpoint;
mod config;
mod elbo;
mod evaluate;
mod losses;
mod model;
mod net;
mod normalise;
mod progress;
mod setup;
mod train;

pub use crate::process::{Kernels, StepKernel};
pub use crate::train::checkpoint::{MODEL_SETTINGS, MODEL_WEIGHTS, TRAIN_STATE};
pub use checkpoint::{SavedFit, load_model};
pub use config::{DataSpec, FitConfig, FitData, is_image_data};
pub use elbo::{Elbo, ElboOptions, elbo, elbo_subdivided};
pub use evaluate::{BridgeMetrics, FitRow, prior_baseline, sample_metrics};
pub use model::{FitModel, GenerateOptions, ModelSettings};
pub use net::{MlpNet, NetworkSpec, TimeNet, UNetNet};
pub use normalise::Normalisation;
pub use progress::{FitEvent, Half, Phase, Progress, RunOptions};
pub use train::Fit;

use rand::SeedableRng;
use rand::rngs::StdRng;

/// SplitMix64's finaliser: a bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A generator for draw number `index` of the family `tag` of the run seeded with `seed`: what a
/// gradient step or a cache refill draws depends only on these three numbers, so a resumed run
/// draws the same as an uninterrupted one.
pub(crate) fn tagged_rng(seed: u64, tag: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(mix(mix(mix(seed) ^ tag) ^ index))
}

#[cfg(test)]
mod tests;

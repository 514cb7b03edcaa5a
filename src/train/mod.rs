//! Training a sampler: the losses and the optimisation loop.
//!
//! Two objectives for the backward half-step against the OU reference (docs/design.md § Training
//! losses):
//! - [`Loss::ReverseKl`]: E_Q[−log w], the path-space reverse KL up to −log Z, differentiated
//!   through the simulated path (the Denoising Diffusion Sampler objective).
//! - [`Loss::LogVariance`]: the variance over the batch of the log weights of paths simulated with
//!   the current network and then held fixed; only the backward kernels' log densities are
//!   differentiated, in one batched pass over all steps. Its minimum (zero) is the same optimal
//!   sampler, and because the paths are off-policy it is less prone to dropping modes.

mod adam;
pub mod checkpoint;
mod ema;
mod kl_fast;
mod loss;
mod optim;
mod replay;
mod trainer;

pub use adam::{Adam, AdamState};
pub use ema::{Ema, EmaState};
pub use kl_fast::reverse_kl_loss_fast;
pub use loss::{
    FastLoss, log_variance_loss, log_variance_loss_fast, log_variance_loss_with_replay,
    reverse_kl_loss,
};
pub use optim::{Optimiser, OptimiserState, clip_grad_norm, cosine_lr};
pub(crate) use trainer::validate as validate_config;
pub use trainer::{Trainer, TrainerCounters};

use crate::error::Result;
use crate::estimate::Estimates;
use crate::sampler::DiffusionSampler;
use crate::target::Target;
use serde::Serialize;

/// The training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// Path-space reverse KL, backpropagated through the simulated path.
    #[value(name = "kl")]
    ReverseKl,
    /// Log-variance of the importance weights of detached paths.
    #[value(name = "log-var")]
    LogVariance,
}

/// Settings of the optimisation.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Number of gradient steps.
    pub iterations: usize,
    /// Paths per step.
    pub batch: usize,
    /// Peak learning rate of Adam (no weight decay); it decays to a tenth along a cosine.
    pub lr: f64,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
    /// The objective.
    pub loss: Loss,
    /// Exploration factor λ ≥ 1 of the log-variance loss: training paths start from N(0, λ²σ²)
    /// and take noise λ s_k, which visits regions the sampler underweights. 1 is on-policy.
    #[serde(default = "one")]
    pub explore: f64,
    /// Decay ρ of an exponential moving average of the weights (0: none). When set, the network
    /// holds the average when training ends (it is what is simulated and saved).
    #[serde(default)]
    pub ema: f64,
    /// Noising paths added to each log-variance batch, as a fraction of `batch` (0: none).
    /// They start at the states of as many persistent HMC chains on the target (started at the
    /// first batch's endpoints, moved `replay_moves` times per iteration) and run the forward
    /// process from there: approximate paths of P, so the loss also sees where Q_θ puts too
    /// little mass (mass-covering), which on-policy paths rarely visit. They shape training
    /// only; no estimate uses them.
    #[serde(default)]
    pub replay: f64,
    /// HMC transitions (5 leapfrog steps each) of every replay chain per training iteration.
    #[serde(default = "twenty")]
    pub replay_moves: usize,
    /// Weight of the replay paths' cross-entropy term in the loss
    /// ([`log_variance_loss_with_replay`]).
    #[serde(default = "three")]
    pub replay_weight: f64,
    /// Compute the log-variance loss's gradients on the CPU fast path of the drift network
    /// ([`crate::nn::FastDrift`]) when the network is on the CPU; `false` runs candle's autograd
    /// (the reference the fast path is tested against; slower).
    #[serde(default = "yes")]
    pub fast_path: bool,
}

fn yes() -> bool {
    true
}

fn twenty() -> usize {
    20
}

fn three() -> f64 {
    3.0
}

fn one() -> f64 {
    1.0
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            iterations: 1000,
            batch: 256,
            lr: 1e-3,
            grad_clip: 10.0,
            loss: Loss::LogVariance,
            explore: 1.0,
            ema: 0.0,
            replay: 0.0,
            replay_moves: 20,
            replay_weight: 3.0,
            fast_path: true,
        }
    }
}

/// What one training iteration reports.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct IterStats {
    /// Iteration index, from 0.
    pub iteration: usize,
    /// The loss value.
    #[serde(deserialize_with = "crate::estimate::f64_or_nan")]
    pub loss: f64,
    /// Gradient norm before clipping.
    #[serde(deserialize_with = "crate::estimate::f64_or_nan")]
    pub grad_norm: f64,
    /// Estimates from this iteration's batch of paths.
    pub estimates: Estimates,
}

/// Summary of a training run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TrainReport {
    /// Iterations run.
    pub iterations: usize,
    /// Iterations skipped because the loss was not finite.
    pub skipped: usize,
    /// Statistics of the last iteration.
    pub last: Option<IterStats>,
    /// Why the run stopped before `TrainConfig::iterations`, when it did (`iterations` then
    /// says how many ran).
    pub stopped_early: Option<String>,
}

/// A log-variance loss whose magnitude stays below this for [`ZERO_LOSS_PATIENCE`] iterations
/// in a row has nothing left to teach: the log weights of the batch agree to ≈ 10⁻⁴ (ESS >
/// 1 − 10⁻⁸), so the sampler is already exact (e.g. a target that is the sampler's own prior).
/// It sits above the f32 rounding floor of the loss of an exact sampler (measured ≈ 10⁻¹² on a
/// 2-D target with 8 steps; it grows with dimension and steps), which 10⁻¹² would not.
pub const ZERO_LOSS: f64 = 1e-8;

/// Consecutive iterations of a loss below [`ZERO_LOSS`] that stop training early.
pub const ZERO_LOSS_PATIENCE: usize = 20;

/// How many consecutive bad iterations end the run with an error.
const PATIENCE: usize = 20;

/// A loss or gradient norm this many times its first value (or 1, whichever is larger) has
/// exploded: the weights are running away (a learning rate far too high).
pub const EXPLOSION_FACTOR: f64 = 1e6;

/// How many consecutive exploded iterations end the run with an error (fewer than [`PATIENCE`]:
/// an exploded run does not recover, and each further step costs time).
const EXPLOSION_PATIENCE: usize = 5;

/// Tracks the first finite loss and gradient norm of a run and counts consecutive iterations
/// in which either grew past [`EXPLOSION_FACTOR`] times it.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub(crate) struct ExplosionWatch {
    first_loss: Option<f64>,
    first_grad: Option<f64>,
    /// Consecutive exploded iterations up to the last one seen.
    pub(crate) run: usize,
}

impl ExplosionWatch {
    /// Whether the run of exploded iterations is long enough to stop.
    pub(crate) fn stop(&self) -> bool {
        self.run >= EXPLOSION_PATIENCE
    }

    /// Records an iteration; returns why it counts as exploded, if it does. Non-finite values
    /// are not judged here (the callers count them against [`PATIENCE`]), but a finite loss
    /// beside a non-finite gradient is.
    pub(crate) fn see(&mut self, loss: f64, grad_norm: f64) -> Option<String> {
        if !loss.is_finite() {
            return None;
        }
        let l0 = *self.first_loss.get_or_insert(loss);
        let g0 = grad_norm
            .is_finite()
            .then(|| *self.first_grad.get_or_insert(grad_norm));
        let limit = |v0: f64| EXPLOSION_FACTOR * v0.abs().max(1.0);
        let why = if loss.abs() > limit(l0) {
            Some(format!(
                "loss {loss:.3e}, over {EXPLOSION_FACTOR:.0e} times its first value {l0:.3e}"
            ))
        } else {
            g0.filter(|&g0| grad_norm > limit(g0)).map(|g0| {
                format!(
                    "gradient norm {grad_norm:.3e}, over {EXPLOSION_FACTOR:.0e} times its first \
                     value {g0:.3e}"
                )
            })
        };
        self.run = if why.is_some() { self.run + 1 } else { 0 };
        why
    }
}

/// Trains `sampler` on `target`. `on_iter` sees every iteration's statistics (for progress bars
/// and logs). Non-finite target values only zero the affected particles; a non-finite loss skips
/// the update; either persisting for [`PATIENCE`] iterations ends the run with an error. A loss
/// or gradient norm that explodes (grows past [`EXPLOSION_FACTOR`] times its first value) for a
/// few iterations in a row, or in the last one, ends it with [`crate::error::DsbError::Diverged`] too.
/// [`Trainer`] runs the same loop one iteration at a time, with checkpoints.
pub fn train(
    sampler: &mut DiffusionSampler,
    target: &dyn Target,
    cfg: &TrainConfig,
    rng: &mut impl rand::Rng,
    mut on_iter: impl FnMut(&IterStats),
) -> Result<TrainReport> {
    let mut trainer = Trainer::new(sampler, cfg)?;
    while !trainer.is_done() {
        trainer.step(sampler, target, rng, &mut on_iter)?;
    }
    trainer.finish(sampler)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::SamplerConfig;
    use crate::target::CorrelatedGaussian;
    use candle_core::Device;
    use nalgebra::DMatrix;
    use rand::{SeedableRng, rngs::StdRng};

    /// On a target that is the sampler's own prior N(0, I) the untrained sampler is exact and the
    /// log-variance loss is zero (f32 rounding: ≈ 10⁻¹²) from the first iteration. Adam would
    /// blow the tiny gradient up to steps of size lr and move the sampler off the optimum
    /// (measured: loss 5·10⁻⁵ after one step at lr 10⁻³), so a vanishing lr keeps the weights
    /// where they are, as an exactly zero gradient does; training stops after
    /// [`ZERO_LOSS_PATIENCE`] iterations, saying so.
    #[test]
    fn zero_loss_from_the_start_stops_training_early() {
        let t = CorrelatedGaussian::new(vec![0.0; 2], DMatrix::identity(2, 2)).unwrap();
        let scfg = SamplerConfig {
            sigma: 1.0,
            steps: 8,
            width: 16,
            ..Default::default()
        };
        let mut s = DiffusionSampler::new(2, scfg, 0, &Device::Cpu).unwrap();
        let cfg = TrainConfig {
            iterations: 1000,
            batch: 64,
            lr: 1e-30,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(0);
        let mut losses = Vec::new();
        let r = train(&mut s, &t, &cfg, &mut rng, |st| losses.push(st.loss)).unwrap();
        assert!(losses[0].abs() < ZERO_LOSS, "first loss {}", losses[0]);
        assert_eq!(r.iterations, ZERO_LOSS_PATIENCE, "{losses:?}");
        let why = r.stopped_early.unwrap();
        assert!(
            why.contains("after 20 of 1000 iterations") && why.contains("below 1e-8"),
            "{why}"
        );
        // A target that is not the prior trains all its iterations.
        let g = CorrelatedGaussian::builtin(2).unwrap();
        let mut s = DiffusionSampler::new(2, SamplerConfig::default(), 0, &Device::Cpu).unwrap();
        let cfg = TrainConfig {
            iterations: 30,
            batch: 16,
            ..Default::default()
        };
        let r = train(&mut s, &g, &cfg, &mut rng, |_| {}).unwrap();
        assert_eq!((r.iterations, r.stopped_early), (30, None));
    }

    #[test]
    fn explosion_is_judged_against_the_first_values() {
        let mut w = ExplosionWatch::default();
        assert!(w.see(10.0, 2.0).is_none());
        // Large swings within the factor are training, not divergence.
        assert!(w.see(1e5, 1e4).is_none());
        assert!(w.see(-3.0, 0.1).is_none());
        let why = w.see(2e7, 1.0).unwrap();
        assert!(why.contains("loss 2.000e7"), "{why}");
        // A finite loss beside a non-finite gradient is still judged.
        assert!(w.see(2e7, f64::NAN).is_some());
        let why = w.see(1.0, 3e6).unwrap();
        assert!(why.contains("gradient norm"), "{why}");
        assert_eq!(w.run, 3);
        assert!(!w.stop());
        for _ in 0..2 {
            w.see(1e8, 1.0);
        }
        assert!(w.stop());
        // Non-finite losses are left to the callers' patience and reset nothing.
        assert!(w.see(f64::NAN, f64::NAN).is_none());
        assert!(w.see(1.0, 1.0).is_none());
        assert_eq!(w.run, 0);
    }
}

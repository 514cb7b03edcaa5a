//! Settings of the sequential diffusion sampler.

use crate::error::{DsbError, Result};
use serde::{Deserialize, Serialize};

/// How the particles are resampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Resampling {
    /// Independent draws: the Lee–Whiteley standard error is calibrated for it (measured:
    /// reported s.e. / spread over runs 0.83–1.02).
    Multinomial,
    /// Systematic: a little less variance, but the Eve-index standard error then
    /// underestimates the spread over runs (measured ratio 0.5–0.65).
    Systematic,
}

/// Settings of [`super::SequentialSampler`]: the annealing grid, the particle system, the
/// control network and its training, and the pilot that scales the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialConfig {
    /// Number of annealing steps K (transitions from π₀ to the target).
    pub steps: usize,
    /// Particles of the final run (the estimate and the returned samples).
    pub particles: usize,
    /// Resample when the normalised ESS falls below this fraction.
    pub resample_threshold: f64,
    /// The resampling scheme.
    pub resampling: Resampling,
    /// HMC moves, invariant for the current intermediate density, after every resampling.
    pub moves: usize,
    /// HMC moves after every other step (no resampling) but the last: more gradient
    /// evaluations for less weight degeneracy, as in SMC, which moves at every temperature.
    #[serde(default)]
    pub step_moves: usize,
    /// Leapfrog steps per HMC move.
    pub leapfrog_steps: usize,
    /// Initial Langevin step δ of every transition, in the start's whitened units (learned per
    /// step when training).
    pub langevin_step: f64,
    /// Largest displacement of a transition's mean per coordinate, in whitened units. The same
    /// clipped mean enters the proposal and the weight, so the weights stay exact.
    pub drift_clip: f64,
    /// Gradient steps of training (0: the untrained sampler, i.e. annealed importance sampling
    /// with unadjusted Langevin transitions, resampling and HMC moves: SMC on the same path).
    pub iterations: usize,
    /// Particles of each training simulation.
    pub batch: usize,
    /// A new training simulation every `refresh` gradient steps; steps in between reuse
    /// simulations from the replay buffer (off-policy).
    pub refresh: usize,
    /// Simulations kept in the replay buffer.
    pub buffer: usize,
    /// Peak learning rate of Adam (cosine decay to a tenth).
    pub lr: f64,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
    /// Width of the control network's hidden layers.
    pub width: usize,
    /// Number of hidden layers.
    pub depth: usize,
    /// Particles of the pilot runs that place and scale the start and adapt the schedule
    /// (0: no pilot; the start is given and the schedule is geometric).
    pub pilot_particles: usize,
    /// The start's scale is the pilot's posterior standard deviation times this factor.
    pub pilot_inflate: f64,
    /// Up to this dimension the sampler works in the coordinates whitened by the pilot's full
    /// (shrunk) covariance, so that correlated posteriors look round to the Langevin
    /// transitions; above it, by the pilot's standard deviations only.
    #[serde(default = "default_full_covariance_max_dim")]
    pub full_covariance_max_dim: usize,
    /// Conditional ESS kept between temperatures by the schedule pilot (as in SMC's adaptive
    /// tempering); the resulting temperatures are interpolated onto the K steps.
    pub schedule_cess: f64,
}

fn default_full_covariance_max_dim() -> usize {
    128
}

impl Default for SequentialConfig {
    fn default() -> Self {
        Self {
            steps: 64,
            particles: 2048,
            resample_threshold: 0.3,
            resampling: Resampling::Multinomial,
            moves: 2,
            step_moves: 0,
            leapfrog_steps: 5,
            langevin_step: 0.05,
            drift_clip: 10.0,
            iterations: 50,
            batch: 64,
            refresh: 4,
            buffer: 8,
            lr: 1e-3,
            grad_clip: 10.0,
            width: 64,
            depth: 2,
            pilot_particles: 256,
            pilot_inflate: 1.5,
            full_covariance_max_dim: default_full_covariance_max_dim(),
            schedule_cess: 0.9,
        }
    }
}

impl SequentialConfig {
    /// Checks the settings, naming the flag at fault.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DsbError::InvalidInput(m));
        if self.steps == 0 {
            return bad("--steps must be at least 1".into());
        }
        if self.particles < 2 {
            return bad(format!(
                "--particles {}: the sequential sampler needs at least 2 particles",
                self.particles
            ));
        }
        if !(0.0..=1.0).contains(&self.resample_threshold) {
            return bad(format!(
                "resample threshold {} must lie in [0, 1]",
                self.resample_threshold
            ));
        }
        if (self.moves > 0 || self.step_moves > 0) && self.leapfrog_steps == 0 {
            return bad("--leapfrog 0: an HMC move needs at least one leapfrog step".into());
        }
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if !positive(self.langevin_step) || !positive(self.drift_clip) {
            return bad("the Langevin step and the drift clip must be positive".into());
        }
        if self.iterations > 0 {
            if self.batch < 2 {
                return bad("--batch must be at least 2".into());
            }
            if !positive(self.lr) || !positive(self.grad_clip) {
                return bad("--lr and --grad-clip must be positive".into());
            }
        }
        if self.refresh == 0 || self.buffer == 0 {
            return bad("the refresh interval and the replay buffer must be at least 1".into());
        }
        if self.width == 0 || self.depth == 0 {
            return bad("--width and --depth must be at least 1".into());
        }
        if self.pilot_particles == 1 {
            return bad("the pilot needs at least 2 particles (or 0: none)".into());
        }
        if !positive(self.pilot_inflate) {
            return bad("the pilot inflation must be positive".into());
        }
        if !(self.schedule_cess > 0.0 && self.schedule_cess < 1.0) {
            return bad("the schedule CESS must lie strictly between 0 and 1".into());
        }
        Ok(())
    }
}

//! Inference under a fitted model: samples of p̃(x₀) ∝ q(x₀) r(x₀), where q is the model
//! ([`FitModel`]: the law of x₀ under its backward process) and r a second density: an
//! observation of some coordinates with Gaussian noise (inpainting; denoising when every
//! coordinate is observed), a linear-Gaussian measurement y = Ax + ε, or any likelihood written
//! as a [`Target`].
//!
//! As in Sohl-Dickstein et al. (2015, § 2.5), each backward kernel q(x_k | x_{k+1}) is multiplied
//! by a potential r_k evaluated along the path, and the product is sampled by a Gaussian kernel
//! whose mean is perturbed towards r. The perturbed process is then a proposal: sequential
//! Monte Carlo with importance weights and resampling (docs/design.md § Conditioning) corrects
//! it, with the potentials telescoping
//!
//! w_k = q(x_k | x_{k+1}) r_k(x_k) / (q̃(x_k | x_{k+1}) r_{k+1}(x_{k+1})),   r_0 = r,
//!
//! so that the weighted particles target the path law q(x_{0:N}) r(x₀) exactly as the number of
//! particles grows, whatever the intermediate potentials r_k are; these only set the variance.
//!
//! **What is exact and what is approximate.** The result is exact (consistent as the number of
//! particles grows, with the weights and log Ẑ = log E_q[r(x₀)] unbiased for a fixed count) for
//! the *model's* posterior: the law of x₀ under the learned backward process, final noise
//! included, times r. How close that is to the posterior under the true data law depends on how
//! well the model fits the data, which nothing here corrects. The intermediate potentials
//! approximate E[r(x₀) | x_k] by treating x_k / ā_k as an observation of x₀ with the forward
//! process's noise ν_k²/ā_k² (for Gaussian observations: the variance is added; for any other
//! likelihood: r is tempered by β_k = ā_k² / (ā_k² + ν_k²)); a poor approximation shows as a low
//! effective sample size ([`Conditioned::min_ess`]), not as bias.
//!
//! For a Gaussian observation of coordinates the proposal is the exact product of the backward
//! kernel and the potential (both Gaussian), and the weight does not depend on the new state
//! (a fully adapted particle filter). For other observations the mean is moved by the kernel
//! variance times the gradient of log r_k, as in the paper.
//!
//! ```
//! use dsb::condition::{ConditionOptions, Observation, condition};
//! use dsb::data::Points;
//! use dsb::fit::{DataSpec, Fit, FitConfig};
//! use rand::SeedableRng;
//!
//! // A model of 2-D points (untrained here, so its x₀ is N(mean, diag(scale²)) of the data),
//! // conditioned on the first coordinate observed as 1.0 with noise sd 0.1.
//! let pts = |n| Points::new((0..2 * n).map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0).collect(), n, 2).unwrap();
//! let spec = DataSpec { name: "points".into(), n: 200, seed: 0, held_out: 0.2, data_dir: None };
//! let fit = Fit::with_points(spec, pts(200), pts(50), FitConfig { steps: 10, ..Default::default() },
//!     &candle_core::Device::Cpu).unwrap();
//! let obs = Observation::Coordinates { observed: vec![0], values: vec![1.0], noise_sd: 0.1 };
//! let opts = ConditionOptions { particles: 256, ..Default::default() };
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let out = condition(&fit.model, &obs, &opts, &mut rng).unwrap();
//! assert!((out.weighted_mean()[0] - 1.0).abs() < 0.1);
//! println!("log evidence {:.3}, ESS {:.2}", out.log_evidence, out.ess);
//! ```

mod smc;
#[cfg(test)]
mod tests;

pub use smc::{condition, condition_with_progress};

use crate::data::Points;
use crate::error::{DsbError, Result};
use crate::target::Target;
use nalgebra::DMatrix;

/// The second density r(x) of a conditioned model, in data coordinates.
pub enum Observation {
    /// The coordinates `observed` of x were seen as `values`, each with Gaussian noise of
    /// standard deviation `noise_sd` (data units): inpainting with a mask, or denoising when
    /// every coordinate is observed. `noise_sd` must be positive (a small value pins the
    /// coordinates).
    Coordinates {
        /// Indices of the observed coordinates.
        observed: Vec<usize>,
        /// Their observed values.
        values: Vec<f64>,
        /// Standard deviation of the observation noise.
        noise_sd: f64,
    },
    /// A linear-Gaussian measurement y = A x + ε, ε ~ N(0, noise_sd² I).
    Linear {
        /// The measurement matrix, `[m, d]`.
        a: DMatrix<f64>,
        /// The measurement, length m.
        y: Vec<f64>,
        /// Standard deviation of the measurement noise.
        noise_sd: f64,
    },
    /// Any likelihood: r is the target's (unnormalised) density, with its gradient.
    Likelihood(Box<dyn Target>),
}

impl std::fmt::Debug for Observation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Coordinates {
                observed, noise_sd, ..
            } => write!(
                f,
                "Coordinates({} observed, noise sd {noise_sd})",
                observed.len()
            ),
            Self::Linear { a, noise_sd, .. } => {
                write!(
                    f,
                    "Linear({}×{}, noise sd {noise_sd})",
                    a.nrows(),
                    a.ncols()
                )
            }
            Self::Likelihood(t) => write!(f, "Likelihood({})", t.name()),
        }
    }
}

impl Observation {
    /// Checks the observation against a model of dimension `dim`, before any work.
    pub fn validate(&self, dim: usize) -> Result<()> {
        let bad = |m: String| Err(DsbError::InvalidInput(m));
        let sd_ok = |s: f64| s > 0.0 && s.is_finite();
        match self {
            Self::Coordinates {
                observed,
                values,
                noise_sd,
            } => {
                if observed.len() != values.len() {
                    return bad(format!(
                        "{} observed coordinates but {} values",
                        observed.len(),
                        values.len()
                    ));
                }
                if let Some(i) = observed.iter().find(|&&i| i >= dim) {
                    return bad(format!(
                        "observed coordinate {i} is outside the model's {dim} coordinates"
                    ));
                }
                if values.iter().any(|v| !v.is_finite()) {
                    return bad("an observed value is not finite".into());
                }
                if !sd_ok(*noise_sd) {
                    return bad(format!(
                        "--noise-sd must be positive and finite, got {noise_sd} (a small value \
                         such as 0.01 pins the observed values)"
                    ));
                }
            }
            Self::Linear { a, y, noise_sd } => {
                if a.ncols() != dim || a.nrows() != y.len() || y.is_empty() {
                    return bad(format!(
                        "the measurement matrix is {}×{} and y has {} values; a model of \
                         dimension {dim} needs A of m×{dim} and y of m values",
                        a.nrows(),
                        a.ncols(),
                        y.len()
                    ));
                }
                if !sd_ok(*noise_sd) {
                    return bad(format!(
                        "--noise-sd must be positive and finite, got {noise_sd}"
                    ));
                }
                if a.iter().chain(y).any(|v| !v.is_finite()) {
                    return bad("the measurement has a non-finite value".into());
                }
            }
            Self::Likelihood(t) => crate::target::check_dimension(t.as_ref(), dim)?,
        }
        Ok(())
    }
}

/// Settings of [`condition`].
#[derive(Debug, Clone)]
pub struct ConditionOptions {
    /// Number of particles (≥ 2).
    pub particles: usize,
    /// Resample (systematically) when the effective sample size falls below this fraction of
    /// the particles (0: never; 1: at every step).
    pub resample_below: f64,
}

impl Default for ConditionOptions {
    fn default() -> Self {
        Self {
            particles: 1024,
            resample_below: 0.5,
        }
    }
}

/// Weighted samples of the conditioned model.
#[derive(Debug, Clone)]
pub struct Conditioned {
    /// The particles x₀, in data coordinates.
    pub samples: Points,
    /// Their log importance weights (f64, unnormalised).
    pub log_weights: Vec<f64>,
    /// The effective sample size of the final weights, as a fraction of the particles.
    pub ess: f64,
    /// log Ẑ, the estimate of log E_q[r(x₀)] (the evidence of the observation under the model),
    /// accumulated over all steps in f64; Ẑ is unbiased.
    pub log_evidence: f64,
    /// The lowest effective sample size (fraction of the particles) seen before any
    /// resampling: near 0 means the proposal fits the conditioned process poorly.
    pub min_ess: f64,
    /// Number of resampling steps.
    pub resamples: usize,
}

impl Conditioned {
    /// The self-normalised weights.
    pub fn normalised_weights(&self) -> Vec<f64> {
        crate::estimate::normalised_weights(&self.log_weights)
    }

    /// The weighted mean of the samples (data coordinates).
    pub fn weighted_mean(&self) -> Vec<f64> {
        let w = self.normalised_weights();
        crate::estimate::weighted_mean_var(&self.samples.data, self.samples.dim, &w).0
    }

    /// The weighted covariance of the samples (data coordinates), `[d, d]`.
    pub fn weighted_covariance(&self) -> DMatrix<f64> {
        let (d, w, m) = (
            self.samples.dim,
            self.normalised_weights(),
            self.weighted_mean(),
        );
        let mut c = DMatrix::zeros(d, d);
        for (row, wi) in self.samples.data.chunks(d).zip(&w) {
            for i in 0..d {
                for j in 0..d {
                    c[(i, j)] += wi * (row[i] as f64 - m[i]) * (row[j] as f64 - m[j]);
                }
            }
        }
        c
    }

    /// `m` equally weighted samples drawn from the particles by systematic resampling.
    pub fn resampled(&self, m: usize, rng: &mut impl rand::Rng) -> Result<Points> {
        let idx = crate::estimate::systematic_resample(&self.log_weights, m, rng);
        let d = self.samples.dim;
        let mut data = Vec::with_capacity(m * d);
        for i in idx {
            data.extend_from_slice(&self.samples.data[i * d..(i + 1) * d]);
        }
        Ok(Points::new(data, m, d)?)
    }
}

//! Sample-quality metrics of a fit against held-out data, and the per-iteration rows.

use super::config::FitConfig;
use super::elbo::Elbo;
use super::model::FitModel;
use super::tagged_rng;
use crate::data::Points;
use crate::distance::{energy_distance, mmd2};
use crate::error::Result;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Tag of the generator of the prior baseline's samples.
const TAG_BASELINE: u64 = 4;

/// The outcome of one IPF iteration, evaluated after its backward half-step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitRow {
    /// IPF iteration (0: the DDPM-style model).
    pub iteration: usize,
    /// Unbiased MMD² ([`crate::distance::mmd2`]) of generated points against held-out points.
    pub mmd2: f64,
    /// Energy distance of the same two samples.
    pub energy: f64,
    /// The bound on the held-out log-likelihood.
    pub elbo: Elbo,
    /// Mean loss of the last tenth of the backward half-step.
    pub backward_loss: f64,
    /// The same for the forward half-step (none at iteration 0).
    pub forward_loss: Option<f64>,
    /// Gradient steps of this iteration.
    pub steps: usize,
    /// Seconds of training in this iteration (excluding evaluation).
    pub seconds: f64,
    /// Gradient steps per second of training.
    pub steps_per_second: f64,
}

/// MMD² and energy distance between `generated` and the held-out rows `held` (length `dim`
/// each, data coordinates).
pub fn sample_metrics(generated: &Points, held: &[f32], dim: usize) -> (f64, f64) {
    let a: Vec<f64> = generated.data.iter().map(|&v| f64::from(v)).collect();
    let b: Vec<f64> = held.iter().map(|&v| f64::from(v)).collect();
    (mmd2(&a, &b, dim), energy_distance(&a, &b, dim))
}

/// The metrics of `config.eval_samples` draws of the prior N(mean, diag(scale²)) (data
/// coordinates) against the first `eval_samples` held-out points: the baseline that a fitted
/// model must beat.
pub fn prior_baseline(model: &FitModel, held: &Points, config: &FitConfig) -> Result<(f64, f64)> {
    let mut rng = tagged_rng(config.seed, TAG_BASELINE, 0);
    let n = config.eval_samples;
    let d = model.dim();
    let z: Vec<f32> = (0..n * d)
        .map(|_| {
            let v: f64 = StandardNormal.sample(&mut rng);
            v as f32
        })
        .collect();
    let prior = Points::new(model.settings().normalisation.invert(&z), n, d)?;
    Ok(sample_metrics(
        &prior,
        &held.data[..held.len().min(n) * d],
        d,
    ))
}

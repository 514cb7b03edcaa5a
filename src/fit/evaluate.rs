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
    #[serde(deserialize_with = "crate::estimate::f64_or_nan")]
    pub backward_loss: f64,
    /// The same for the forward half-step (none at iteration 0).
    pub forward_loss: Option<f64>,
    /// Gradient steps of this iteration.
    pub steps: usize,
    /// Seconds of training in this iteration (excluding evaluation).
    pub seconds: f64,
    /// Gradient steps per second of training.
    pub steps_per_second: f64,
    /// A bridge's metrics in both directions (none for a model of one data set, whose
    /// `mmd2`/`energy` compare its samples from the prior with the held-out data; for a bridge
    /// they compare the backward transport of the far end's held-out points with this end's).
    #[serde(default)]
    pub bridge: Option<BridgeMetrics>,
}

/// What a bridge between two data sets A (t = 0) and B (t = T) reports per IPF iteration, in
/// data coordinates, on held-out points of both.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BridgeMetrics {
    /// MMD² of A's points carried forward against B's held-out points.
    pub forward_mmd2: f64,
    /// Energy distance of the same two samples.
    pub forward_energy: f64,
    /// E|X_0 − X_T|² over the forward coupling (A's held-out points and their forward
    /// transport, with every kernel's noise): the transport cost that entropic OT minimises.
    pub forward_cost: f64,
    /// E|Y_0 − Y_T|² over the backward coupling (B's held-out points carried back to t = 0,
    /// with every kernel's noise).
    pub backward_cost: f64,
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

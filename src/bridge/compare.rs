//! A learned bridge between two data sets against the entropic OT plan between samples of them.
//!
//! A bridge fitted by [`crate::fit::Fit::bridge`] with a Brownian reference works in
//! coordinates z = (x − m)/s with one scale s for every coordinate, where the reference has unit
//! variance per unit time over [0, T]. In data coordinates that is a Brownian motion of variance
//! σ² = s² per unit time, so the static Schrödinger bridge is the entropic OT plan with cost
//! |x − y|² and ε = 2σ²T = 2s²T ([`super::bridge_epsilon`]). The comparison draws `points`
//! held-out points of each end, solves that problem by [`super::sinkhorn`], and sets against it
//! the learned forward coupling from the same points of A: its cost E|X_0 − X_T|² and its
//! conditional means E[X_T | X_0 = x_i], each from `draws` forward paths per point.
//!
//! The two differ by the bridge's training error and by the sampling error of the plan between
//! `points` samples (the entropic plan between empirical measures converges to the continuous
//! one as the samples grow; its cost is biased upwards by O(1/points) at a fixed ε).

use super::sinkhorn::{SinkhornConfig, bridge_epsilon, sinkhorn};
use crate::error::{DsbError, Result};
use crate::fit::Fit;
use crate::process::ReferenceKind;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// The learned coupling of a bridge against the entropic OT plan at the same ε.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OtComparison {
    /// Held-out points of each end in the OT problem.
    pub points: usize,
    /// Forward paths per point of A for the learned coupling.
    pub draws: usize,
    /// σ²T: the reference's variance per coordinate over [0, T], in data coordinates.
    pub reference_variance: f64,
    /// ε = 2σ²T.
    pub epsilon: f64,
    /// ⟨P, C⟩ of the Sinkhorn plan: its E|X − Y|².
    pub sinkhorn_cost: f64,
    /// Sinkhorn iterations run.
    pub sinkhorn_iterations: usize,
    /// L1 error of the plan's row marginals at the end.
    pub sinkhorn_marginal_error: f64,
    /// E|X_0 − X_T|² of the learned forward coupling from the same points.
    pub bridge_cost: f64,
    /// Standard error of `bridge_cost` (over the points, each averaged over its draws).
    pub bridge_cost_stderr: f64,
    /// d σ² T: the cost of the reference alone (the untrained bridge's coupling from A), a
    /// scale for the two costs above.
    pub reference_cost: f64,
    /// Root mean square over the points of |E_bridge[X_T | x_i] − E_plan[Y | x_i]|.
    pub conditional_mean_rmse: f64,
    /// Root mean square over the points of |E_plan[Y | x_i] − mean of Y|: how far the plan's
    /// conditional means move from the independent coupling's, a scale for the error above.
    pub conditional_mean_spread: f64,
    /// The part of `conditional_mean_rmse` that the finite draws alone explain:
    /// √(mean over points of tr Var(X_T | x_i) / draws), from the draws' sample variances.
    #[serde(default)]
    pub conditional_mean_noise: f64,
}

/// Compares the bridge `fit` (Brownian reference, points data) with the entropic OT plan between
/// `points` held-out points of each end, the learned coupling from `draws` forward paths per
/// point, all random draws from `rng`.
pub fn compare_with_sinkhorn(
    fit: &Fit,
    points: usize,
    draws: usize,
    rng: &mut impl rand::Rng,
) -> Result<OtComparison> {
    let settings = fit.model.settings();
    let (Some(far), true) = (
        fit.far_held_out(),
        settings.reference == ReferenceKind::Brownian,
    ) else {
        return Err(DsbError::InvalidInput(
            "the OT comparison needs a bridge between two data sets with a Brownian reference \
             (--reference brownian)"
                .into(),
        ));
    };
    let scale = settings.normalisation.scale[0];
    if settings.normalisation.scale.iter().any(|&s| s != scale) {
        return Err(DsbError::InvalidInput(
            "the OT comparison needs one scale for every coordinate (a bridge's standardisation)"
                .into(),
        ));
    }
    crate::error::ensure_valid!(
        points >= 2 && draws >= 1,
        "the OT comparison needs at least 2 points and 1 draw per point"
    );
    let a = fit.held_out().head(points);
    let b = far.head(points);
    let (n, dim) = (a.len(), a.dim);
    let f64s = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| f64::from(x)).collect() };
    let (x, y) = (f64s(&a.data), f64s(&b.data));
    let horizon = settings.horizon;
    let epsilon = bridge_epsilon(scale, horizon);
    let cfg = SinkhornConfig {
        epsilon,
        ..Default::default()
    };
    let plan = sinkhorn(&x, &y, dim, &cfg)?;
    let plan_means = plan.conditional_means(&y, dim);

    // Each point repeated `draws` times, carried forward in one batch.
    let idx: Vec<u32> = (0..n as u32)
        .flat_map(|i| std::iter::repeat_n(i, draws))
        .collect();
    let start = fit.model.standardise(&a)?;
    let idx = Tensor::from_vec(idx, n * draws, start.device())?;
    let ends = fit.model.to_data(
        &fit.model
            .transport_forward(&start.index_select(&idx, 0)?, rng)?,
    )?;
    let mut per_point = vec![0.0; n];
    let mut learned_means = vec![0.0; n * dim];
    let mut second = vec![0.0; n * dim];
    for (r, row) in ends.data.chunks(dim).enumerate() {
        let i = r / draws;
        for c in 0..dim {
            let v = f64::from(row[c]);
            per_point[i] += (v - x[i * dim + c]).powi(2) / draws as f64;
            learned_means[i * dim + c] += v / draws as f64;
            second[i * dim + c] += v * v / draws as f64;
        }
    }
    // Unbiased per-point variances (zero with a single draw), summed over coordinates.
    let noise = if draws > 1 {
        let total: f64 = (0..n * dim)
            .map(|k| (second[k] - learned_means[k].powi(2)) * draws as f64 / (draws - 1) as f64)
            .sum();
        (total / n as f64 / draws as f64).max(0.0).sqrt()
    } else {
        f64::NAN
    };
    let cost = per_point.iter().sum::<f64>() / n as f64;
    let var = per_point.iter().map(|c| (c - cost).powi(2)).sum::<f64>() / (n - 1) as f64;
    let y_mean: Vec<f64> = (0..dim)
        .map(|c| y.chunks(dim).map(|r| r[c]).sum::<f64>() / b.len() as f64)
        .collect();
    let rms = |f: &dyn Fn(usize, usize) -> f64| -> f64 {
        let s: f64 = (0..n)
            .map(|i| (0..dim).map(|c| f(i, c).powi(2)).sum::<f64>())
            .sum();
        (s / n as f64).sqrt()
    };
    Ok(OtComparison {
        points: n,
        draws,
        reference_variance: scale * scale * horizon,
        epsilon,
        sinkhorn_cost: plan.cost,
        sinkhorn_iterations: plan.iterations,
        sinkhorn_marginal_error: plan.marginal_error,
        bridge_cost: cost,
        bridge_cost_stderr: (var / n as f64).sqrt(),
        reference_cost: dim as f64 * scale * scale * horizon,
        conditional_mean_rmse: rms(&|i, c| learned_means[i * dim + c] - plan_means[i * dim + c]),
        conditional_mean_spread: rms(&|i, c| plan_means[i * dim + c] - y_mean[c]),
        conditional_mean_noise: noise,
    })
}

//! Posterior-moment errors of a weighted sample against reference moments, in units of the
//! reference standard deviation (the scale on which statisticians read a posterior summary).

use crate::estimate::{normalised_weights, weighted_mean_var};
use crate::target::PosteriorReference;
use serde::Serialize;

/// How far a sample's weighted means and standard deviations are from the reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MomentErrors {
    /// maxⱼ |m̂ⱼ − mⱼ| / sⱼ.
    pub mean_max: f64,
    /// √(mean over j of ((m̂ⱼ − mⱼ)/sⱼ)²).
    pub mean_rms: f64,
    /// maxⱼ |ŝⱼ − sⱼ| / sⱼ.
    pub sd_max: f64,
    /// √(mean over j of ((ŝⱼ − sⱼ)/sⱼ)²).
    pub sd_rms: f64,
}

/// Weighted mean and standard deviation per coordinate of `samples` (`[n, dim]` row-major),
/// with importance weights from `log_w` (non-finite entries weigh zero).
pub fn weighted_moments(samples: &[f32], dim: usize, log_w: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (mean, var) = weighted_mean_var(samples, dim, &normalised_weights(log_w));
    (mean, var.into_iter().map(f64::sqrt).collect())
}

/// The moment errors of a weighted sample against `reference`.
pub fn moment_errors(
    samples: &[f32],
    dim: usize,
    log_w: &[f64],
    reference: &PosteriorReference,
) -> MomentErrors {
    let (m, s) = weighted_moments(samples, dim, log_w);
    let dm: Vec<f64> = (0..dim)
        .map(|j| (m[j] - reference.mean[j]) / reference.sd[j])
        .collect();
    let ds: Vec<f64> = (0..dim)
        .map(|j| (s[j] - reference.sd[j]) / reference.sd[j])
        .collect();
    let max = |v: &[f64]| v.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    let rms = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    MomentErrors {
        mean_max: max(&dm),
        mean_rms: rms(&dm),
        sd_max: max(&ds),
        sd_rms: rms(&ds),
    }
}

/// The moment errors of a weighted sample set against `target`'s reference moments, where the
/// target has them.
pub fn sample_moment_errors(
    set: &crate::sampler::SampleSet,
    target: &dyn crate::target::Target,
) -> Option<MomentErrors> {
    target
        .posterior_moments()
        .map(|r| moment_errors(&set.samples, set.dim, &set.log_w, &r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_in_reference_standard_deviations() {
        // Two points ±1 around 1 with equal weight: mean 1, sd 1.
        let samples = [0.0f32, 2.0];
        let r = PosteriorReference {
            mean: vec![0.5],
            sd: vec![2.0],
        };
        let e = moment_errors(&samples, 1, &[0.0, 0.0], &r);
        assert!((e.mean_max - 0.25).abs() < 1e-12 && (e.sd_max - 0.5).abs() < 1e-12);
        // A zero weight removes a point.
        let (m, s) = weighted_moments(&samples, 1, &[0.0, f64::NEG_INFINITY]);
        assert_eq!((m[0], s[0]), (0.0, 0.0));
    }
}

//! Standardisation of the data: the model works in coordinates where the data have mean 0 and
//! unit standard deviation in every coordinate, so the prior is N(0, I) (σ = 1) whatever the
//! data's units.
//!
//! Per-coordinate scales (rather than one overall scale) keep a CSV column in large units from
//! dominating the others; on the 2-D toy sets the two scales differ by less than 20%. The prior
//! in data coordinates is therefore N(mean, diag(scale²)), and a density in data coordinates is
//! the standardised one minus Σ log scaleᵢ (the log-Jacobian, [`Normalisation::log_det`]).

use crate::error::{DsbError, Result};
use serde::{Deserialize, Serialize};

/// x ↦ (x − mean)/scale per coordinate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    /// Per-coordinate mean of the training data.
    pub mean: Vec<f64>,
    /// Per-coordinate standard deviation of the training data.
    pub scale: Vec<f64>,
}

impl Normalisation {
    /// The identity map in dimension `dim` (for data already on a fixed scale, such as images
    /// in [−1, 1]).
    pub fn identity(dim: usize) -> Self {
        Self {
            mean: vec![0.0; dim],
            scale: vec![1.0; dim],
        }
    }

    /// The mean and standard deviation of each coordinate of `data` (rows of length `dim`),
    /// accumulated in f64. A constant coordinate is an error, since it cannot be scaled.
    pub fn fit(data: &[f32], dim: usize) -> Result<Self> {
        let n = data.len() / dim.max(1);
        if dim == 0 || n < 2 || data.len() != n * dim {
            return Err(DsbError::InvalidInput(format!(
                "need at least two points of dimension ≥ 1 to standardise, got {} values of \
                 dimension {dim}",
                data.len()
            )));
        }
        let mut mean = vec![0.0; dim];
        for row in data.chunks(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0; dim];
        for row in data.chunks(dim) {
            for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (f64::from(v) - m).powi(2);
            }
        }
        let scale: Vec<f64> = var.iter().map(|s| (s / (n - 1) as f64).sqrt()).collect();
        if let Some(i) = scale.iter().position(|s| !s.is_finite()) {
            return Err(DsbError::InvalidInput(format!(
                "coordinate {} of the data has values too large to standardise (its variance is \
                 not finite); rescale it before fitting",
                i + 1
            )));
        }
        if let Some(i) = scale.iter().position(|s| *s <= 0.0) {
            return Err(DsbError::InvalidInput(format!(
                "coordinate {} of the data is constant; remove it before fitting",
                i + 1
            )));
        }
        Ok(Self { mean, scale })
    }

    /// One map for both ends of a bridge ([`crate::fit::Fit::bridge`]): the per-coordinate mean
    /// of the pooled rows of `a` and `b`, and one scale for every coordinate, the square root of
    /// the mean of the pooled per-coordinate variances. An isotropic scale keeps squared
    /// distances proportional (|x − y|² = scale² |z − z′|²), so the bridge's transport cost and
    /// the entropic OT problem it solves ([`crate::bridge::sinkhorn`]) read the same in both
    /// coordinates.
    pub fn fit_pooled_isotropic(a: &[f32], b: &[f32], dim: usize) -> Result<Self> {
        let pooled: Vec<f32> = a.iter().chain(b).copied().collect();
        let per = Self::fit(&pooled, dim)?;
        let var = per.scale.iter().map(|s| s * s).sum::<f64>() / dim as f64;
        Ok(Self {
            mean: per.mean,
            scale: vec![var.sqrt(); dim],
        })
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Standardises rows of data coordinates.
    pub fn apply(&self, data: &[f32]) -> Vec<f32> {
        self.map(data, |v, m, s| (v - m) / s)
    }

    /// Maps standardised rows back to data coordinates.
    pub fn invert(&self, data: &[f32]) -> Vec<f32> {
        self.map(data, |v, m, s| v * s + m)
    }

    fn map(&self, data: &[f32], f: impl Fn(f64, f64, f64) -> f64) -> Vec<f32> {
        let d = self.dim();
        data.iter()
            .enumerate()
            .map(|(i, &v)| f(f64::from(v), self.mean[i % d], self.scale[i % d]) as f32)
            .collect()
    }

    /// Σ log scaleᵢ: log p_data(x) = log p_std((x − mean)/scale) − log_det.
    pub fn log_det(&self) -> f64 {
        self.scale.iter().map(|s| s.ln()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardises_and_inverts() {
        let data = [1.0f32, 10.0, 3.0, 30.0, 5.0, 20.0];
        let n = Normalisation::fit(&data, 2).unwrap();
        assert_eq!(n.mean, vec![3.0, 20.0]);
        assert!((n.scale[0] - 2.0).abs() < 1e-12 && (n.scale[1] - 10.0).abs() < 1e-12);
        let z = n.apply(&data);
        assert_eq!(z, vec![-1.0, -1.0, 0.0, 1.0, 1.0, 0.0]);
        assert_eq!(n.invert(&z), data.to_vec());
        assert!((n.log_det() - 20f64.ln()).abs() < 1e-12);
        let e = Normalisation::fit(&[1.0, 2.0, 1.0, 3.0], 2).unwrap_err();
        assert!(e.to_string().contains("coordinate 1"), "{e}");
        assert!(e.to_string().contains("constant"), "{e}");
        let e =
            Normalisation::fit(&[f32::INFINITY, 1.0, -3e38, 2.0, f32::MAX, 3.0], 2).unwrap_err();
        assert!(
            e.to_string()
                .contains("coordinate 1 of the data has values too large"),
            "{e}"
        );
    }
}

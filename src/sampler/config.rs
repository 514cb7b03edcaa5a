//! Settings of a sampler: the process and the network.

use crate::error::{DsbError, Result};
use crate::process::{ReferenceKind, Schedule};
use serde::{Deserialize, Serialize};

/// Settings of a sampler: the process and the network. Saved beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// Prior scale σ: the backward process starts at N(0, σ²I).
    pub sigma: f64,
    /// One prior scale per coordinate, overriding `sigma` when set: the prior is then
    /// N(0, diag(σᵢ²)) and the OU reference acts on each coordinate with its own scale.
    #[serde(default)]
    pub prior_scales: Option<Vec<f64>>,
    /// The reference process: OU (stationary at the prior; the default) or Brownian motion of
    /// variance σ² per unit time (for bridges on [0, T] between two given distributions).
    #[serde(default)]
    pub reference: ReferenceKind,
    /// Mean of a general Gaussian prior N(m, Σ) at the prior end (default: 0). With the OU
    /// reference iteration 0 is then biased (its stationary law is N(0, σ²I)); IPF removes that.
    #[serde(default)]
    pub prior_mean: Option<Vec<f64>>,
    /// Covariance Σ of a general Gaussian prior, row-major `dim × dim` (default: diag(σᵢ²)).
    #[serde(default)]
    pub prior_cov: Option<Vec<f64>>,
    /// Number of time steps N.
    pub steps: usize,
    /// Horizon T of the OU reference (in units of its relaxation time).
    pub horizon: f64,
    /// How the steps are spread over [0, T].
    pub schedule: Schedule,
    /// Hidden units per layer.
    pub width: usize,
    /// Hidden layers of the state network.
    pub depth: usize,
    /// Length scale ℓ of the target's finest structure (e.g. the width of its modes). The score
    /// term of the drift is weighted by κ(t) = 1/(1 + ν_t²/ℓ²), ν_t² = σ²(1 − e^{−2t}) being the
    /// forward noise variance at time t: the exact weight for a Gaussian bump of width ℓ.
    #[serde(default = "default_length_scale")]
    pub length_scale: f64,
    /// Elementwise clip of the score ∇log γ̃ fed to the network.
    pub score_clip: f64,
    /// Elementwise clip of the network output h.
    pub output_clip: f64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            sigma: 1.0,
            prior_scales: None,
            reference: ReferenceKind::Ou,
            prior_mean: None,
            prior_cov: None,
            steps: 64,
            horizon: 5.0,
            schedule: Schedule::Geometric,
            width: 64,
            depth: 2,
            length_scale: 1.0,
            score_clip: 1e2,
            output_clip: 1e4,
        }
    }
}

fn default_length_scale() -> f64 {
    1.0
}

impl SamplerConfig {
    /// The prior scale of each of `dim` coordinates.
    pub fn scales(&self, dim: usize) -> Vec<f64> {
        self.prior_scales
            .clone()
            .unwrap_or_else(|| vec![self.sigma; dim])
    }

    /// The prior's scales for a `dim`-dimensional target, checked: the settings are valid and
    /// `--sigma` gives one scale or `dim` of them.
    pub fn checked_scales(&self, dim: usize) -> Result<Vec<f64>> {
        self.validate()?;
        let scales = self.scales(dim);
        if scales.len() != dim {
            return Err(DsbError::InvalidInput(format!(
                "--sigma has {} per-coordinate scales but the target has dimension {dim}; give one value or {dim}",
                scales.len()
            )));
        }
        Ok(scales)
    }

    /// t_1 of the geometric schedule: the time at which the forward noise σ√(1 − e^{−2t}) of the
    /// widest coordinate reaches a tenth of the length scale ℓ (the first step's noise is ≤ 0.1ℓ).
    pub fn first_time(&self, dim: usize) -> f64 {
        let widest = self.scales(dim).into_iter().fold(0.0, f64::max);
        let r = (0.1 * self.length_scale / widest).min(0.99);
        match self.reference {
            ReferenceKind::Ou => -0.5 * (1.0 - r * r).ln(),
            ReferenceKind::Brownian => r * r,
        }
    }

    /// Checks that the settings can be used.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DsbError::InvalidInput(m));
        if !(self.sigma > 0.0 && self.sigma.is_finite()) {
            return bad(format!(
                "--sigma must be positive and finite, got {}",
                self.sigma
            ));
        }
        if let Some(v) = self
            .prior_scales
            .as_ref()
            .filter(|v| v.iter().any(|s| !(*s > 0.0 && s.is_finite())))
        {
            return bad(format!(
                "--sigma: every per-coordinate scale must be positive and finite, got {v:?}"
            ));
        }
        if let Some(m) = self
            .prior_mean
            .as_ref()
            .filter(|m| m.iter().any(|v| !v.is_finite()))
        {
            return bad(format!("the prior mean must be finite, got {m:?}"));
        }
        if let Some(c) = self
            .prior_cov
            .as_ref()
            .filter(|c| c.iter().any(|v| !v.is_finite()))
        {
            return bad(format!("the prior covariance must be finite, got {c:?}"));
        }
        if self.steps == 0 {
            return bad("--steps must be at least 1".into());
        }
        if !(self.horizon > 0.0 && self.horizon.is_finite()) {
            return bad(format!(
                "--horizon must be positive and finite, got {}",
                self.horizon
            ));
        }
        if !(self.length_scale > 0.0 && self.length_scale.is_finite()) {
            return bad(format!(
                "--length-scale must be positive, got {}",
                self.length_scale
            ));
        }
        if self.width == 0 || self.depth == 0 {
            return bad("--width and --depth must be at least 1".into());
        }
        if !(self.score_clip > 0.0 && self.output_clip > 0.0) {
            return bad("clips must be positive".into());
        }
        Ok(())
    }
}

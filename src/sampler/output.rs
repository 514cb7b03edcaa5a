//! What a sampler produces: simulated paths and weighted sample sets.

use crate::estimate::Estimates;
use candle_core::Tensor;
use rand::Rng;

/// Simulated backward paths with their log weights.
#[derive(Debug)]
pub struct Paths {
    /// `states[k]` = x_k, `[batch, dim]`, for k = 0..=N (only x_0 unless the path was kept).
    pub states: Vec<Tensor>,
    /// `scores[k]` = the clipped score at x_{k+1}, for k = 0..N−1 (empty unless kept).
    pub scores: Vec<Tensor>,
    /// Log importance weight of each path (−∞ where the target density was not finite).
    pub log_w: Vec<f64>,
    /// The part of log dP/dQ_θ that does not depend on the backward network (−∞ where the
    /// target density was not finite).
    pub loss_constant: Vec<f64>,
    /// Σ_k ½|ε_k(θ)|² of each path, ε_k(θ) the standardised residual of step k under Q_θ: the
    /// part of log dP/dQ_θ that does depend on the backward network.
    pub noise_energy: Vec<f64>,
}

impl Paths {
    /// Paths from a backward simulation that collected the states x_N..x_0 and the scores at
    /// x_N..x_1 in simulation order, with their weights (log w, loss constant, noise energy).
    pub(crate) fn from_backward(
        mut states: Vec<Tensor>,
        mut scores: Vec<Tensor>,
        (log_w, loss_constant, noise_energy): (Vec<f64>, Vec<f64>, Vec<f64>),
    ) -> Self {
        states.reverse();
        scores.reverse();
        Self {
            states,
            scores,
            log_w,
            loss_constant,
            noise_energy,
        }
    }

    /// The final states x_0.
    pub fn x0(&self) -> &Tensor {
        &self.states[0]
    }

    /// These paths followed by `other`'s, for one loss over both (kept states and scores are
    /// stacked per step). The log weights stay this set's: `other`'s are not draws of the
    /// sampler and enter no estimate.
    pub fn with_extra(self, other: Paths) -> candle_core::Result<Paths> {
        let cat = |a: Vec<Tensor>, b: Vec<Tensor>| -> candle_core::Result<Vec<Tensor>> {
            a.iter()
                .zip(&b)
                .map(|(x, y)| Tensor::cat(&[x, y], 0))
                .collect()
        };
        let mut loss_constant = self.loss_constant;
        loss_constant.extend(other.loss_constant);
        let mut noise_energy = self.noise_energy;
        noise_energy.extend(other.noise_energy);
        Ok(Paths {
            states: cat(self.states, other.states)?,
            scores: cat(self.scores, other.scores)?,
            log_w: self.log_w,
            loss_constant,
            noise_energy,
        })
    }
}

/// Samples drawn from a trained sampler, with their weights and estimates.
#[derive(Debug, Clone)]
pub struct SampleSet {
    /// Dimension.
    pub dim: usize,
    /// Samples, row-major `[n, dim]`.
    pub samples: Vec<f32>,
    /// Log importance weights, one per sample.
    pub log_w: Vec<f64>,
    /// log Ẑ, ELBO and ESS of these samples.
    pub estimates: Estimates,
}

impl SampleSet {
    /// The samples in the coordinates of the target the user started from
    /// ([`crate::target::Target::original_coordinates`]); unchanged for a target that is not a
    /// reparametrisation. Weights and estimates do not change (the map has a constant Jacobian).
    pub fn in_original_coordinates(mut self, target: &dyn crate::target::Target) -> Self {
        if let Some(x) = target.original_coordinates(&self.samples) {
            self.samples = x;
        }
        self
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.log_w.len()
    }
    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.log_w.is_empty()
    }
    /// Sample `i` as a slice.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.samples[i * self.dim..(i + 1) * self.dim]
    }
    /// `m` samples drawn by systematic resampling in proportion to the importance weights: an
    /// (approximately) unweighted sample of the target.
    pub fn resampled(&self, m: usize, rng: &mut impl Rng) -> SampleSet {
        let idx = crate::estimate::systematic_resample(&self.log_w, m, rng);
        let samples = idx
            .iter()
            .flat_map(|&i| self.row(i).iter().copied())
            .collect();
        let log_w = vec![self.estimates.log_z; m];
        SampleSet {
            dim: self.dim,
            samples,
            log_w,
            estimates: self.estimates,
        }
    }
}

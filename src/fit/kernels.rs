//! The Gaussian kernels of the data fit on a time grid, in standardised coordinates (σ = 1).
//!
//! Forward step k (x_k → x_{k+1}): N(a_k x_k + s_k f(x_k, t_k), s_k² I), with a_k and s_k = n_k
//! those of the reference ([`crate::process::Reference`]) and f the forward network (absent,
//! i.e. zero, at IPF iteration 0, so the forward process is the reference itself). The network's
//! correction is measured in units of the step's noise s_k: a learned forward process must
//! carry the data to the prior within T, a move of order 1/N per step, which is f of order
//! 1/(N s_k) ≈ 1/√(2NT) on a uniform grid. The reference's own drift factor c_k ≈ 2γ_k (the
//! sampler's choice) would need f of order 1/T instead, which at a short horizon (T = 0.05)
//! is too large an output for a zero-initialised network to reach in a few thousand steps;
//! measured on the swiss roll, refinement then made the samples worse.
//!
//! Backward step k (x_{k+1} → x_k): N(b_k x_{k+1} + λ_k g(x_{k+1}, t_{k+1}), s_k² I), the same
//! variance as the forward kernel of that step, with
//!
//! b_k = (1 − s_k²)/a_k,  λ_k = s_k² / (a_k ν_{k+1}),
//!
//! ν_j² being the reference's variance of x_j given x_0. This is Tweedie's formula
//! E[x_k | x_{k+1}] = (x_{k+1} + s_k² ∇log p_{k+1}(x_{k+1}))/a_k written with the score
//! estimate ŝ(x, t) = −x + g(x, t)/ν_t: an untrained network (g = 0) gives the reference's
//! reversal at the prior N(0, I) (b_k = a_k for the OU reference), and at IPF iteration 0 the
//! best g is ν_t(∇log p_t(x) + x), a function of (x, t) of order one that does not depend on the
//! step size. That last fact is what lets a DDPM-style model sample on a coarser grid
//! ([`Kernels::backward_steps`]).

use crate::error::{DsbError, Result};
use crate::process::{Reference, ReferenceKind, TimeGrid};

/// One backward step of the sampler from time index `from` to `to` (< `from`): the state at
/// t_from moves to N(b x + λ g(x, t_from/T), sd² I).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackwardStep {
    /// Index of the start time on the grid.
    pub from: usize,
    /// Index of the end time on the grid.
    pub to: usize,
    /// Coefficient of the state.
    pub b: f64,
    /// Coefficient of the network output.
    pub lambda: f64,
    /// Standard deviation of the kernel.
    pub sd: f64,
}

/// Per-step coefficients of the forward and backward kernels on a time grid.
#[derive(Debug, Clone)]
pub struct Kernels {
    grid: TimeGrid,
    reference: Reference,
    /// ā_j = ∏_{i<j} a_i, j = 0..=N.
    cum_decay: Vec<f64>,
    /// ν_j² = Var(x_j | x_0) under the reference, j = 0..=N.
    var: Vec<f64>,
}

impl Kernels {
    /// The kernels of the reference `kind` on `grid`.
    pub fn new(kind: ReferenceKind, grid: TimeGrid) -> Self {
        let reference = Reference::of_kind(kind, &grid);
        let n = grid.steps();
        let (mut cum_decay, mut var) = (vec![1.0; n + 1], vec![0.0; n + 1]);
        for k in 0..n {
            let a = reference.decay[k];
            cum_decay[k + 1] = cum_decay[k] * a;
            var[k + 1] = a * a * var[k] + reference.noise[k] * reference.noise[k];
        }
        Self {
            grid,
            reference,
            cum_decay,
            var,
        }
    }

    /// The time grid.
    pub fn grid(&self) -> &TimeGrid {
        &self.grid
    }

    /// Number of steps N.
    pub fn steps(&self) -> usize {
        self.grid.steps()
    }

    /// t_j / T, the time the networks see, for j = 0..=N.
    pub fn normalised_time(&self, j: usize) -> f64 {
        self.grid.times()[j] / self.grid.horizon()
    }

    /// a_k, the reference's decay over step k.
    pub fn decay(&self, k: usize) -> f64 {
        self.reference.decay[k]
    }

    /// s_k, the standard deviation of both kernels of step k.
    pub fn sd(&self, k: usize) -> f64 {
        self.reference.noise[k]
    }

    /// The coefficient of the forward network's output in the forward mean of step k: s_k.
    pub fn forward_gain(&self, k: usize) -> f64 {
        self.reference.noise[k]
    }

    /// ā_j and ν_j²: x_j | x_0 ~ N(ā_j x_0, ν_j² I) under the reference.
    pub fn marginal(&self, j: usize) -> (f64, f64) {
        (self.cum_decay[j], self.var[j])
    }

    /// The backward step k of the model's own grid (from k + 1 to k).
    pub fn backward_step(&self, k: usize) -> BackwardStep {
        self.merged_step(k + 1, k)
    }

    /// The backward kernel from t_from to t_to of the reference's composed forward kernel
    /// x_from | x_to ~ N(A x_to, S² I), A = ∏ a_k, S² = Σ_k s_k² ∏_{l>k} a_l² over the merged
    /// steps, with Tweedie's mean (module doc).
    fn merged_step(&self, from: usize, to: usize) -> BackwardStep {
        let (mut a, mut s2) = (1.0, 0.0);
        for k in to..from {
            let ak = self.reference.decay[k];
            a *= ak;
            s2 = ak * ak * s2 + self.reference.noise[k].powi(2);
        }
        BackwardStep {
            from,
            to,
            b: (1.0 - s2) / a,
            lambda: s2 / (a * self.var[from].sqrt()),
            sd: s2.sqrt(),
        }
    }

    /// The backward steps of a sampler with `steps` steps, from t_N to t_0: the model's own
    /// kernels when `steps` is N, otherwise the sub-grid j_i = round(i N / steps), whose kernel
    /// from j_{i+1} to j_i is Tweedie's mean for the reference's composed kernel over the merged
    /// steps, with the network's score estimate at t_{j_{i+1}} (a time it was trained at), and
    /// the composed variance. It is exact for the exact score, so it is valid only for a
    /// backward network fitted against the reference (IPF iteration 0); callers must check.
    pub fn backward_steps(&self, steps: usize) -> Result<Vec<BackwardStep>> {
        let n = self.steps();
        if steps == 0 || steps > n {
            return Err(DsbError::InvalidInput(format!(
                "--steps {steps}: a model trained on {n} steps samples with 1 to {n} steps"
            )));
        }
        let idx: Vec<usize> = (0..=steps)
            .map(|i| ((i * n) as f64 / steps as f64).round() as usize)
            .collect();
        Ok((0..steps)
            .rev()
            .map(|i| self.merged_step(idx[i + 1], idx[i]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Schedule;

    #[test]
    fn own_grid_steps_and_merged_steps_agree_with_the_reference() {
        let grid = TimeGrid::new(10, 2.0, Schedule::Cosine, 0.0);
        let k = Kernels::new(ReferenceKind::Ou, grid);
        // OU: b_k = a_k, the composed kernel of all steps is the marginal.
        for j in 0..10 {
            let s = k.backward_step(j);
            assert!((s.b - k.decay(j)).abs() < 1e-12);
            assert!((s.sd - k.sd(j)).abs() < 1e-12);
        }
        let (cum, var) = k.marginal(10);
        assert!((cum - (-2.0f64).exp()).abs() < 1e-12);
        assert!((var - (1.0 - (-4.0f64).exp())).abs() < 1e-12);
        let all = k.backward_steps(1).unwrap();
        assert_eq!((all[0].from, all[0].to), (10, 0));
        assert!((all[0].sd * all[0].sd - var).abs() < 1e-12);
        // The full grid reproduces the model's own steps, newest time first.
        let own = k.backward_steps(10).unwrap();
        assert_eq!(own[0], k.backward_step(9));
        assert_eq!(own[9], k.backward_step(0));
        let half = k.backward_steps(5).unwrap();
        assert_eq!(
            half.iter().map(|s| (s.from, s.to)).collect::<Vec<_>>(),
            vec![(10, 8), (8, 6), (6, 4), (4, 2), (2, 0)]
        );
        assert!(k.backward_steps(11).is_err() && k.backward_steps(0).is_err());
    }
}

//! The one kernel layer: the Gaussian forward and backward kernels of every learned process in
//! dsb, on a time grid and a reference process ([`Reference`]).
//!
//! Target sampling ([`crate::sampler`], its IPF refinement [`crate::ipf`]), data fitting
//! ([`crate::fit`]) and the bridges ([`crate::bridge`]) all simulate and score paths of
//! Gaussian kernels of the form
//!
//! x_to ~ N(state · x_from + net · output(x_from, t_from), sd² I),
//!
//! a [`StepKernel`]: the reference's own kernel plus a learned network's output scaled by a
//! per-step coefficient. The forward kernel of step k (x_k → x_{k+1}) and the backward kernel
//! (x_{k+1} → x_k) share the variance s_k² of the reference's step. What differs between uses is
//! only how the network's output enters the mean, the [`Parametrisation`]:
//!
//! - [`Parametrisation::Drift`] (target sampling): both means are a_k x + σ² c_k · output, with
//!   c_k = 2(1 − a_k) (OU, the exponential integrator of the time reversal) or γ_k (Brownian,
//!   Euler). The backward network estimates ∇log p_t(x) + x/σ², of order one near the target,
//!   which is where a sampler's network starts from the target's score (docs/design.md
//!   § Drift network).
//! - [`Parametrisation::Tweedie`] (data fitting, standardised coordinates, σ = 1): the forward
//!   mean is a_k x + s_k f(x, t_k) and the backward mean b_k x + λ_k g(x, t_{k+1}) with
//!
//!   b_k = (1 − s_k²)/a_k,  λ_k = s_k² / (a_k ν_{k+1}),
//!
//!   ν_j² being the reference's variance of x_j given x_0. This is Tweedie's formula
//!   E[x_k | x_{k+1}] = (x_{k+1} + s_k² ∇log p_{k+1}(x_{k+1}))/a_k written with the score
//!   estimate ŝ(x, t) = −x + g(x, t)/ν_t: an untrained network (g = 0) gives the reference's
//!   reversal at the prior N(0, I) (b_k = a_k for the OU reference), and at IPF iteration 0 the
//!   best g is ν_t(∇log p_t(x) + x), a function of (x, t) of order one that does not depend on
//!   the step size. That last fact is what lets a DDPM-style model sample on a coarser grid
//!   ([`Kernels::backward_steps`]). The forward network's correction is measured in units of
//!   the step's noise s_k: a learned forward process must carry the data to the prior within
//!   T, a move of order 1/N per step, which is f of order 1/(N s_k) ≈ 1/√(2NT) on a uniform
//!   grid. The drift factor c_k ≈ 2γ_k would need f of order 1/T instead, which at a short
//!   horizon (T = 0.05) is too large an output for a zero-initialised network to reach in a
//!   few thousand steps; measured on the swiss roll, refinement then made the samples worse.
//!
//! Both parametrisations give the reference's kernels for a zero output, so an untrained network
//! is the reference (forward) or its reversal at the prior (backward, OU). The per-coordinate
//! scale σᵢ of the sampler's reference multiplies `sd` by σᵢ and, for [`Parametrisation::Drift`],
//! `net` by σᵢ² ([`StepKernel::scaled`]). The mean-matching half-steps of IPF on either side
//! regress the forward output on (x_{k+1} − a_k x_k)/s_k through the gain
//! [`Kernels::forward`]`(k).net / sd` ([`StepKernel::gain`]).

use crate::error::{DsbError, Result};
use crate::process::{Reference, ReferenceKind, TimeGrid};
use serde::{Deserialize, Serialize};

/// How a network's output enters the kernel means (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Parametrisation {
    /// Target sampling: forward and backward means a_k x + σ² c_k · output.
    Drift,
    /// Data fitting (σ = 1): forward mean a_k x + s_k f, backward mean b_k x + λ_k g
    /// (Tweedie's formula).
    Tweedie,
}

/// One Gaussian kernel between two grid times, for a coordinate of scale 1: the state at
/// t_from moves to N(state · x + net · output(x, t_from / T), sd² I).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepKernel {
    /// Index of the start time on the grid.
    pub from: usize,
    /// Index of the end time on the grid.
    pub to: usize,
    /// Coefficient of the state.
    pub state: f64,
    /// Coefficient of the network output.
    pub net: f64,
    /// Standard deviation of the kernel.
    pub sd: f64,
}

impl StepKernel {
    /// The kernel of a coordinate of reference scale σ under `param`: `sd` times σ, and `net`
    /// times σ² for [`Parametrisation::Drift`] (the Tweedie form is defined for σ = 1 only, as
    /// the data fit standardises its data; its kernel is returned unchanged).
    pub fn scaled(&self, sigma: f64, param: Parametrisation) -> Self {
        let net = match param {
            Parametrisation::Drift => sigma * sigma * self.net,
            Parametrisation::Tweedie => self.net,
        };
        Self {
            net,
            sd: sigma * self.sd,
            ..*self
        }
    }

    /// net / sd: the factor of the output in the standardised residual (x_to − state · x)/sd,
    /// which the mean-matching half-steps regress.
    pub fn gain(&self) -> f64 {
        self.net / self.sd
    }
}

/// Sohl-Dickstein et al.'s (2015, § 2.4) bounds on the entropy of one step of the true reverse
/// process, H(X_k | X_{k+1}), in nats per dimension (the model's standardised coordinates).
/// They depend only on the forward process:
///
/// H(X_{k+1} | X_k) + H(X_k | X_0) − H(X_{k+1} | X_0) ≤ H(X_k | X_{k+1}) ≤ H(X_{k+1} | X_k).
///
/// The upper bound holds when the marginal entropy grows along the forward process (as for
/// data standardised to unit variance under the OU reference, and always under the Brownian
/// one); the lower bound because conditioning on X_0 lowers entropy. For Gaussian kernels they
/// are ½ log(2πe s_k²) and ½ log(2πe ν_k² s_k² / ν_{k+1}²), the latter the entropy of the
/// reference's posterior q(x_k | x_{k+1}, x_0).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StepEntropy {
    /// The step k (between x_k and x_{k+1}).
    pub step: usize,
    /// t_k.
    pub t: f64,
    /// t_{k+1}.
    pub t_next: f64,
    /// The lower bound (none at k = 0, where H(X_0 | X_0) = −∞).
    pub lower: Option<f64>,
    /// The upper bound.
    pub upper: f64,
    /// The entropy of the model's Gaussian backward kernel, ½ log(2πe sd_k²). dsb's backward
    /// kernels share the forward variance s_k², so this is the upper bound (DDPM's σ_t² = β_t;
    /// the lower bound is its other choice, the posterior variance β̃_t).
    pub model: f64,
}

/// The forward and backward kernels of one reference process on a time grid under one
/// parametrisation.
#[derive(Debug, Clone)]
pub struct Kernels {
    grid: TimeGrid,
    reference: Reference,
    param: Parametrisation,
    /// ā_j = ∏_{i<j} a_i, j = 0..=N.
    cum_decay: Vec<f64>,
    /// ν_j² = Var(x_j | x_0) under the reference (scale 1), j = 0..=N.
    var: Vec<f64>,
}

impl Kernels {
    /// The kernels of the reference `kind` on `grid` under `param`.
    pub fn new(kind: ReferenceKind, grid: TimeGrid, param: Parametrisation) -> Self {
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
            param,
            cum_decay,
            var,
        }
    }

    /// The time grid.
    pub fn grid(&self) -> &TimeGrid {
        &self.grid
    }

    /// The reference process.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The parametrisation.
    pub fn parametrisation(&self) -> Parametrisation {
        self.param
    }

    /// Number of steps N.
    pub fn steps(&self) -> usize {
        self.grid.steps()
    }

    /// The entropy bounds of every step ([`StepEntropy`]), in nats per dimension.
    pub fn entropy_bounds(&self) -> Vec<StepEntropy> {
        let h = |var: f64| 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * var).ln();
        let times = self.grid.times();
        (0..self.steps())
            .map(|k| {
                let s2 = self.sd(k).powi(2);
                StepEntropy {
                    step: k,
                    t: times[k],
                    t_next: times[k + 1],
                    lower: (k > 0).then(|| h(self.var[k] * s2 / self.var[k + 1])),
                    upper: h(s2),
                    model: h(self.backward(k).sd.powi(2)),
                }
            })
            .collect()
    }

    /// t_j / T, the time the networks see, for j = 0..=N.
    pub fn normalised_time(&self, j: usize) -> f64 {
        self.grid.times()[j] / self.grid.horizon()
    }

    /// a_k, the reference's decay over step k.
    pub fn decay(&self, k: usize) -> f64 {
        self.reference.decay[k]
    }

    /// s_k, the standard deviation of both kernels of step k (scale 1).
    pub fn sd(&self, k: usize) -> f64 {
        self.reference.noise[k]
    }

    /// ā_j and ν_j²: x_j | x_0 ~ N(ā_j x_0, ν_j² I) under the reference (scale 1).
    pub fn marginal(&self, j: usize) -> (f64, f64) {
        (self.cum_decay[j], self.var[j])
    }

    /// The forward kernel of step k (x_k → x_{k+1}, output at t_k): state a_k, and net σ²c_k
    /// (drift, per unit scale) or s_k (Tweedie).
    pub fn forward(&self, k: usize) -> StepKernel {
        let net = match self.param {
            Parametrisation::Drift => self.reference.drift[k],
            Parametrisation::Tweedie => self.reference.noise[k],
        };
        StepKernel {
            from: k,
            to: k + 1,
            state: self.reference.decay[k],
            net,
            sd: self.reference.noise[k],
        }
    }

    /// The backward kernel of step k (x_{k+1} → x_k, output at t_{k+1}).
    pub fn backward(&self, k: usize) -> StepKernel {
        match self.param {
            Parametrisation::Drift => StepKernel {
                from: k + 1,
                to: k,
                ..self.forward(k)
            },
            Parametrisation::Tweedie => self.merged_step(k + 1, k),
        }
    }

    /// The Tweedie backward kernel from t_from to t_to of the reference's composed forward
    /// kernel x_from | x_to ~ N(A x_to, S² I), A = ∏ a_k, S² = Σ_k s_k² ∏_{l>k} a_l² over the
    /// merged steps (module doc).
    fn merged_step(&self, from: usize, to: usize) -> StepKernel {
        let (mut a, mut s2) = (1.0, 0.0);
        for k in to..from {
            let ak = self.reference.decay[k];
            a *= ak;
            s2 = ak * ak * s2 + self.reference.noise[k].powi(2);
        }
        StepKernel {
            from,
            to,
            state: (1.0 - s2) / a,
            net: s2 / (a * self.var[from].sqrt()),
            sd: s2.sqrt(),
        }
    }

    /// The backward kernels of a sampler with `steps` steps, from t_N to t_0: the model's own
    /// kernels when `steps` is N, otherwise (Tweedie only) the sub-grid j_i = round(i N / steps),
    /// whose kernel from j_{i+1} to j_i is Tweedie's mean for the reference's composed kernel
    /// over the merged steps, with the network's score estimate at t_{j_{i+1}} (a time it was
    /// trained at), and the composed variance. It is exact for the exact score, so it is valid
    /// only for a backward network fitted against the reference (IPF iteration 0); callers must
    /// check.
    pub fn backward_steps(&self, steps: usize) -> Result<Vec<StepKernel>> {
        let n = self.steps();
        if steps == 0 || steps > n {
            return Err(DsbError::InvalidInput(format!(
                "--steps {steps}: a model trained on {n} steps samples with 1 to {n} steps"
            )));
        }
        if steps == n {
            return Ok((0..n).rev().map(|k| self.backward(k)).collect());
        }
        if self.param != Parametrisation::Tweedie {
            return Err(DsbError::InvalidInput(format!(
                "--steps {steps}: a drift-parametrised sampler samples on its own {n} steps only"
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

    /// The entropy bounds follow the schedule: lower < upper at every step; the backward
    /// kernels share the forward variance s_k², so their entropy is the upper bound; on a uniform OU grid the upper bound is ½ log(2πe(1 − e^{−2γ})); and cutting every
    /// step in two keeps the times.
    #[test]
    fn entropy_bounds_bracket_the_reverse_kernels() {
        let grid = TimeGrid::new(10, 2.0, Schedule::Uniform, 0.0);
        let k = Kernels::new(ReferenceKind::Ou, grid.clone(), Parametrisation::Tweedie);
        let b = k.entropy_bounds();
        assert_eq!(b.len(), 10);
        assert!(b[0].lower.is_none());
        let h = |v: f64| 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * v).ln();
        for s in &b[1..] {
            let lower = s.lower.unwrap();
            assert!(lower < s.upper, "{s:?}");
            assert!((s.model - s.upper).abs() < 1e-12, "{s:?}");
        }
        assert!((b[3].upper - h(k.sd(3).powi(2))).abs() < 1e-12);
        let fine = grid.subdivided(2);
        assert_eq!(fine.steps(), 20);
        assert_eq!(fine.times()[4], grid.times()[2]);
        assert!((fine.times()[5] - 0.5 * (grid.times()[2] + grid.times()[3])).abs() < 1e-12);
    }
    use crate::process::Schedule;

    #[test]
    fn own_grid_steps_and_merged_steps_agree_with_the_reference() {
        let grid = TimeGrid::new(10, 2.0, Schedule::Cosine, 0.0);
        let k = Kernels::new(ReferenceKind::Ou, grid, Parametrisation::Tweedie);
        // OU: b_k = a_k, the composed kernel of all steps is the marginal.
        for j in 0..10 {
            let s = k.backward(j);
            assert_eq!((s.from, s.to), (j + 1, j));
            assert!((s.state - k.decay(j)).abs() < 1e-12);
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
        assert_eq!(own[0], k.backward(9));
        assert_eq!(own[9], k.backward(0));
        let half = k.backward_steps(5).unwrap();
        assert_eq!(
            half.iter().map(|s| (s.from, s.to)).collect::<Vec<_>>(),
            vec![(10, 8), (8, 6), (6, 4), (4, 2), (2, 0)]
        );
        assert!(k.backward_steps(11).is_err() && k.backward_steps(0).is_err());
    }

    #[test]
    fn drift_kernels_share_the_reference_coefficients_and_scale() {
        let grid = TimeGrid::new(8, 1.5, Schedule::Geometric, 1e-3);
        for kind in [ReferenceKind::Ou, ReferenceKind::Brownian] {
            let k = Kernels::new(kind, grid.clone(), Parametrisation::Drift);
            let r = Reference::of_kind(kind, &grid);
            for j in 0..8 {
                let (f, b) = (k.forward(j), k.backward(j));
                assert_eq!((f.from, f.to, b.from, b.to), (j, j + 1, j + 1, j));
                assert_eq!((f.state, f.net, f.sd), (r.decay[j], r.drift[j], r.noise[j]));
                assert_eq!((b.state, b.net, b.sd), (f.state, f.net, f.sd));
                let s = b.scaled(2.0, Parametrisation::Drift);
                assert_eq!((s.state, s.net, s.sd), (b.state, 4.0 * b.net, 2.0 * b.sd));
                assert!((f.gain() - r.drift[j] / r.noise[j]).abs() < 1e-12);
            }
            assert_eq!(k.backward_steps(8).unwrap()[0], k.backward(7));
            assert!(
                k.backward_steps(4).is_err(),
                "drift kernels do not merge steps"
            );
        }
        // Tweedie's forward output is in units of the step's noise: gain 1.
        let t = Kernels::new(ReferenceKind::Ou, grid, Parametrisation::Tweedie);
        assert!((0..8).all(|j| (t.forward(j).gain() - 1.0).abs() < 1e-12));
    }
}

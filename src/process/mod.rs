//! Time grids and the reference processes (Ornstein–Uhlenbeck, Brownian) with their exact
//! Gaussian kernels.
//!
//! The reference runs target → prior: dX = −X dt + √2 σ dW (rate α = 1; the horizon T absorbs
//! any other rate). Its exact transition over a step γ is
//! X_{k+1} | X_k ~ N(a_k X_k, s_k² I) with a_k = e^{−γ_k} and s_k² = σ² (1 − a_k²), and its
//! stationary law is the prior N(0, σ² I).

mod kernels;

pub use kernels::{Kernels, Parametrisation, StepEntropy, StepKernel};

use serde::{Deserialize, Serialize};

/// How the N steps are spread over [0, T].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Equal steps γ = T/N.
    Uniform,
    /// t_k = T (1 − cos(πk / 2N)): small steps at the target end (t = 0), growing towards the
    /// prior.
    Cosine,
    /// t_0 = 0 and t_1 < … < t_N = T in geometric progression, t_1 being the grid's `first_time`:
    /// every step's noise is the same fraction of the forward marginal's noise, so the target end
    /// is resolved down to the first step. The default for sampling.
    Geometric,
    /// DSB's symmetric schedule (De Bortoli et al., 2021): the step γ_k increases linearly from
    /// γ_min (the grid's `first_time`, t_1) to γ_max over the first half of the steps and is
    /// mirrored over the second half, so both ends (data and prior) are resolved finely; γ_max
    /// is what makes the steps add up to T. With an odd N the middle step is γ_max.
    Symmetric,
}

/// The grid t_0 = 0 < t_1 < … < t_N = T.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeGrid {
    times: Vec<f64>,
}

impl TimeGrid {
    /// A grid of `steps` steps on [0, horizon]. `first_time` is t_1 for the geometric schedule
    /// (capped at horizon/steps; ignored by the others).
    pub fn new(steps: usize, horizon: f64, schedule: Schedule, first_time: f64) -> Self {
        assert!(steps >= 1 && horizon > 0.0);
        let n = steps as f64;
        let t1 = first_time.clamp(f64::MIN_POSITIVE, horizon / n);
        if schedule == Schedule::Symmetric {
            return Self::from_steps(&symmetric_steps(steps, horizon, t1), horizon);
        }
        let times = (0..=steps)
            .map(|k| {
                let u = k as f64 / n;
                match schedule {
                    Schedule::Uniform | Schedule::Symmetric => horizon * u,
                    Schedule::Cosine => horizon * (1.0 - (0.5 * std::f64::consts::PI * u).cos()),
                    Schedule::Geometric if k == 0 => 0.0,
                    Schedule::Geometric if steps == 1 => horizon,
                    Schedule::Geometric => {
                        t1 * (horizon / t1).powf((k - 1) as f64 / (steps - 1) as f64)
                    }
                }
            })
            .collect();
        Self { times }
    }

    /// The grid whose steps are `steps` (positive), rescaled to add up to `horizon` exactly.
    fn from_steps(steps: &[f64], horizon: f64) -> Self {
        let total: f64 = steps.iter().sum();
        let mut times = Vec::with_capacity(steps.len() + 1);
        let mut t = 0.0;
        times.push(0.0);
        for g in steps {
            t += g * horizon / total;
            times.push(t);
        }
        *times.last_mut().expect("at least one step") = horizon;
        Self { times }
    }

    /// The grid with each step cut into `parts` equal steps (N·parts steps, the same times
    /// among them): the same process, discretised more finely.
    pub fn subdivided(&self, parts: usize) -> Self {
        let parts = parts.max(1);
        let mut times = Vec::with_capacity(self.steps() * parts + 1);
        times.push(0.0);
        for w in self.times.windows(2) {
            for i in 1..=parts {
                times.push(if i == parts {
                    w[1]
                } else {
                    w[0] + (w[1] - w[0]) * i as f64 / parts as f64
                });
            }
        }
        Self { times }
    }

    /// Number of steps N.
    pub fn steps(&self) -> usize {
        self.times.len() - 1
    }

    /// The times t_0..t_N.
    pub fn times(&self) -> &[f64] {
        &self.times
    }

    /// The horizon T = t_N.
    pub fn horizon(&self) -> f64 {
        *self.times.last().expect("non-empty grid")
    }

    /// Step k's length γ_k = t_{k+1} − t_k.
    pub fn step(&self, k: usize) -> f64 {
        self.times[k + 1] - self.times[k]
    }
}

/// The steps of [`Schedule::Symmetric`]: γ_k = γ_min + (γ_max − γ_min) u_k with
/// u_k = min(k, N − 1 − k) / ⌊(N − 1)/2⌋ (0 at both ends, 1 in the middle), γ_max chosen so
/// that Σ γ_k = T. `gamma_min` must be at most T/N (then γ_max ≥ γ_min); with N ≤ 2 the steps
/// are equal.
pub fn symmetric_steps(steps: usize, horizon: f64, gamma_min: f64) -> Vec<f64> {
    let half = (steps.saturating_sub(1)) / 2;
    if half == 0 {
        return vec![horizon / steps as f64; steps];
    }
    let u: Vec<f64> = (0..steps)
        .map(|k| k.min(steps - 1 - k) as f64 / half as f64)
        .collect();
    let total_u: f64 = u.iter().sum();
    let gamma_max = gamma_min + (horizon - steps as f64 * gamma_min) / total_u;
    u.iter()
        .map(|&v| gamma_min + (gamma_max - gamma_min) * v)
        .collect()
}

/// The reference process that iteration 0 reverses (and that every IPF iteration starts from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceKind {
    /// Ornstein–Uhlenbeck dX = −X dt + √2 σ dW, stationary at the prior N(0, σ²I).
    #[default]
    Ou,
    /// Brownian motion dX = σ dW (no drift): the classical Schrödinger-bridge reference, used on
    /// [0, 1] for bridges between two given distributions.
    Brownian,
}

/// A reference process on a time grid, per unit of scale: a coordinate with scale σᵢ has kernel
/// noise σᵢ times [`Reference::noise`] and drift coefficient σᵢ² times [`Reference::drift`].
/// Every forward kernel is X_{k+1} | X_k ~ N(a_k X_k, σ² n_k² I); every backward kernel of the
/// samplers built on it is N(a_k x + σ² c_k h(x), σ² n_k² I) for a network output h.
#[derive(Debug, Clone)]
pub struct Reference {
    /// Which process.
    pub kind: ReferenceKind,
    /// a_k per step: e^{−γ_k} (OU) or 1 (Brownian).
    pub decay: Vec<f64>,
    /// n_k per step: √(1 − a_k²) (OU) or √γ_k (Brownian); the standard deviation of both the
    /// forward and the backward kernel of step k for a coordinate of scale 1.
    pub noise: Vec<f64>,
    /// c_k per step: 2(1 − a_k) (OU, the exponential integrator of the reversal) or γ_k
    /// (Brownian, Euler): the factor of the network output in the backward mean.
    pub drift: Vec<f64>,
}

impl Reference {
    /// The exact discretisation of the OU process on `grid`.
    pub fn new(grid: &TimeGrid) -> Self {
        Self::of_kind(ReferenceKind::Ou, grid)
    }

    /// The exact discretisation of the reference `kind` on `grid`.
    pub fn of_kind(kind: ReferenceKind, grid: &TimeGrid) -> Self {
        let gamma: Vec<f64> = (0..grid.steps()).map(|k| grid.step(k)).collect();
        let (decay, noise, drift) = match kind {
            ReferenceKind::Ou => {
                let decay: Vec<f64> = gamma.iter().map(|g| (-g).exp()).collect();
                let noise = decay.iter().map(|a| (1.0 - a * a).sqrt()).collect();
                let drift = decay.iter().map(|a| 2.0 * (1.0 - a)).collect();
                (decay, noise, drift)
            }
            ReferenceKind::Brownian => (
                vec![1.0; gamma.len()],
                gamma.iter().map(|g| g.sqrt()).collect(),
                gamma.clone(),
            ),
        };
        Self {
            kind,
            decay,
            noise,
            drift,
        }
    }

    /// Variance σ²(1 − e^{−2t}) of X_t given X_0 for a coordinate of prior scale σ (the OU
    /// forward marginal's noise at time t).
    pub fn marginal_noise_var(t: f64, sigma: f64) -> f64 {
        sigma * sigma * (1.0 - (-2.0 * t).exp())
    }

    /// Variance of X_t given X_0 under this reference: σ²(1 − e^{−2t}) (OU) or σ²t (Brownian).
    pub fn noise_var_at(&self, t: f64, sigma: f64) -> f64 {
        match self.kind {
            ReferenceKind::Ou => Self::marginal_noise_var(t, sigma),
            ReferenceKind::Brownian => sigma * sigma * t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_start_at_zero_end_at_horizon_and_increase() {
        for s in [
            Schedule::Uniform,
            Schedule::Cosine,
            Schedule::Geometric,
            Schedule::Symmetric,
        ] {
            let g = TimeGrid::new(16, 3.0, s, 1e-4);
            assert_eq!(g.times()[0], 0.0);
            assert!((g.horizon() - 3.0).abs() < 1e-12);
            assert!((0..16).all(|k| g.step(k) > 0.0));
        }
        let c = TimeGrid::new(16, 3.0, Schedule::Cosine, 0.0);
        assert!(
            c.step(0) < c.step(15) / 10.0,
            "cosine steps grow towards the prior"
        );
        let g = TimeGrid::new(16, 3.0, Schedule::Geometric, 1e-4);
        assert!((g.times()[1] - 1e-4).abs() < 1e-15);
        let r = g.times()[3] / g.times()[2];
        assert!(
            (g.times()[9] / g.times()[8] - r).abs() < 1e-9,
            "constant ratio"
        );
    }

    #[test]
    fn symmetric_steps_rise_linearly_and_mirror() {
        for n in [10usize, 11, 20] {
            let g = TimeGrid::new(n, 2.0, Schedule::Symmetric, 0.01);
            assert!((g.horizon() - 2.0).abs() < 1e-12, "sums to T");
            let steps: Vec<f64> = (0..n).map(|k| g.step(k)).collect();
            assert!((steps[0] - 0.01).abs() < 1e-12, "starts at gamma_min");
            for k in 0..n {
                assert!(
                    (steps[k] - steps[n - 1 - k]).abs() < 1e-12,
                    "mirrored at {k}"
                );
            }
            // Linear over the first half: constant differences, increasing.
            let half = (n - 1) / 2;
            let d = steps[1] - steps[0];
            assert!(d > 0.0);
            for k in 1..=half {
                assert!((steps[k] - steps[k - 1] - d).abs() < 1e-12, "linear at {k}");
            }
            let max = steps.iter().cloned().fold(0.0, f64::max);
            assert!((max - steps[half]).abs() < 1e-12, "peak in the middle");
        }
        // gamma_min at its cap T/N gives equal steps; N = 1, 2 are equal steps.
        let g = TimeGrid::new(8, 2.0, Schedule::Symmetric, 10.0);
        assert!((0..8).all(|k| (g.step(k) - 0.25).abs() < 1e-12));
        assert_eq!(symmetric_steps(2, 1.0, 0.1), vec![0.5, 0.5]);
        assert_eq!(symmetric_steps(1, 1.0, 0.1), vec![1.0]);
    }

    #[test]
    fn brownian_kernels_compose_to_the_marginal() {
        let g = TimeGrid::new(7, 1.0, Schedule::Cosine, 0.0);
        let r = Reference::of_kind(ReferenceKind::Brownian, &g);
        let v: f64 = r.noise.iter().map(|n| (0.8 * n).powi(2)).sum();
        assert!((v - r.noise_var_at(1.0, 0.8)).abs() < 1e-12);
        assert!(r.decay.iter().all(|&a| a == 1.0));
    }

    #[test]
    fn kernels_compose_to_the_marginal() {
        // Composing the per-step kernels must give the one-shot marginal: ∏ a_k = e^{−T} and the
        // accumulated variance equals σ²(1 − e^{−2T}).
        let g = TimeGrid::new(10, 2.0, Schedule::Cosine, 0.0);
        let r = Reference::new(&g);
        let sigma = 1.5;
        let (mut a, mut v) = (1.0, 0.0);
        for k in 0..10 {
            a *= r.decay[k];
            v = r.decay[k] * r.decay[k] * v + (sigma * r.noise[k]).powi(2);
        }
        assert!((a - (-2.0f64).exp()).abs() < 1e-12);
        assert!((v - Reference::marginal_noise_var(2.0, sigma)).abs() < 1e-12);
    }
}

//! Time grids and the Ornstein–Uhlenbeck reference process with its exact Gaussian kernels.
//!
//! The reference runs target → prior: dX = −X dt + √2 σ dW (rate α = 1; the horizon T absorbs
//! any other rate). Its exact transition over a step γ is
//! X_{k+1} | X_k ~ N(a_k X_k, s_k² I) with a_k = e^{−γ_k} and s_k² = σ² (1 − a_k²), and its
//! stationary law is the prior N(0, σ² I).

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
        let times = (0..=steps)
            .map(|k| {
                let u = k as f64 / n;
                match schedule {
                    Schedule::Uniform => horizon * u,
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

/// The OU reference on a time grid, per unit of prior scale: a coordinate with prior scale σᵢ has
/// kernel noise σᵢ times [`OuReference::noise`]. (The prior may have one scale per coordinate:
/// the OU process acts on each coordinate independently.)
#[derive(Debug, Clone)]
pub struct OuReference {
    /// a_k = e^{−γ_k}, per step.
    pub decay: Vec<f64>,
    /// √(1 − a_k²), per step: the standard deviation of both the forward and the backward kernel of
    /// step k for a coordinate of prior scale 1.
    pub noise: Vec<f64>,
}

impl OuReference {
    /// The exact discretisation of the OU process on `grid`.
    pub fn new(grid: &TimeGrid) -> Self {
        let decay: Vec<f64> = (0..grid.steps()).map(|k| (-grid.step(k)).exp()).collect();
        let noise = decay.iter().map(|a| (1.0 - a * a).sqrt()).collect();
        Self { decay, noise }
    }

    /// Variance σ²(1 − e^{−2t}) of X_t given X_0 for a coordinate of prior scale σ (the forward
    /// marginal's noise at time t).
    pub fn marginal_noise_var(t: f64, sigma: f64) -> f64 {
        sigma * sigma * (1.0 - (-2.0 * t).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_start_at_zero_end_at_horizon_and_increase() {
        for s in [Schedule::Uniform, Schedule::Cosine, Schedule::Geometric] {
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
    fn kernels_compose_to_the_marginal() {
        // Composing the per-step kernels must give the one-shot marginal: ∏ a_k = e^{−T} and the
        // accumulated variance equals σ²(1 − e^{−2T}).
        let g = TimeGrid::new(10, 2.0, Schedule::Cosine, 0.0);
        let r = OuReference::new(&g);
        let sigma = 1.5;
        let (mut a, mut v) = (1.0, 0.0);
        for k in 0..10 {
            a *= r.decay[k];
            v = r.decay[k] * r.decay[k] * v + (sigma * r.noise[k]).powi(2);
        }
        assert!((a - (-2.0f64).exp()).abs() < 1e-12);
        assert!((v - OuReference::marginal_noise_var(2.0, sigma)).abs() < 1e-12);
    }
}

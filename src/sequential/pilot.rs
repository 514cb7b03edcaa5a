//! The pilot that scales and starts the sequential sampler from the target itself: a small
//! SMC run gives the posterior's mean and covariance (the start and the whitening), a second
//! one from that start gives the temperatures and the Langevin steps.

use super::{SequentialConfig, SequentialSampler, geometric_betas, interpolate_betas};
use crate::baseline::{DiagGaussian, MoveKernel, SmcConfig, run_smc_in_target_coordinates};
use crate::error::{DsbError, Result};
use crate::target::{AffineMap, Target, Whitened};
use candle_core::Device;
use nalgebra::DMatrix;

/// The start and, up to `max_full` dimensions, the whitening x = m + Lz with
/// LLᵀ = inflate² Σ̂ (the start is then N(0, I) in z; without a whitening it is N(m, diag(s²))),
/// where (m, Σ̂) are the weighted mean and covariance of the pilot's particles `x` (`[n, d]`)
/// with weights `w` (summing to 1) and s = inflate · sd. Σ̂ is shrunk towards its diagonal by
/// d / (d + ESS) (a pilot of a few hundred particles estimates a d × d covariance poorly); a
/// coordinate with a non-finite or zero spread keeps `guess`. A pilot with a coordinate of
/// kurtosis below 2 (multimodal) keeps the diagonal start.
fn pilot_start(
    x: &[f32],
    d: usize,
    w: &[f64],
    inflate: f64,
    max_full: usize,
    guess: &DiagGaussian,
) -> (DiagGaussian, Option<AffineMap>) {
    let (mean, var) = crate::estimate::weighted_mean_var(x, d, w);
    let ok = |v: f64| v.is_finite() && v > 0.0;
    let mean: Vec<f64> = mean
        .iter()
        .zip(&guess.mean)
        .map(|(m, g)| if m.is_finite() { *m } else { *g })
        .collect();
    let scale: Vec<f64> = var
        .iter()
        .zip(&guess.scale)
        .map(|(v, g)| if ok(*v) { v.sqrt() * inflate } else { *g })
        .collect();
    let diagonal = DiagGaussian {
        mean: mean.clone(),
        scale: scale.clone(),
    };
    if d < 2 || d > max_full || !var.iter().all(|v| ok(*v)) {
        return (diagonal, None);
    }
    // A coordinate with kurtosis below 2 (a Gaussian has 3, a uniform 1.8, two separated
    // modes about 1) marks a multimodal target: its pilot holds few of the mode combinations,
    // and the correlations between them are artefacts of which ones. Such targets keep their
    // axes.
    let multimodal = (0..d).any(|j| {
        let m4: f64 = x
            .chunks(d)
            .zip(w)
            .map(|(row, wi)| wi * (row[j] as f64 - mean[j]).powi(4))
            .sum();
        m4 / (var[j] * var[j]) < 2.0
    });
    if multimodal {
        return (diagonal, None);
    }
    let ess = 1.0 / w.iter().map(|v| v * v).sum::<f64>();
    let lambda = (d as f64 / (d as f64 + ess)).clamp(0.0, 1.0);
    let mut cov = DMatrix::<f64>::zeros(d, d);
    for (row, wi) in x.chunks(d).zip(w) {
        for i in 0..d {
            let di = row[i] as f64 - mean[i];
            for j in 0..=i {
                cov[(i, j)] += wi * di * (row[j] as f64 - mean[j]);
            }
        }
    }
    for i in 0..d {
        for j in 0..i {
            let c = (1.0 - lambda) * cov[(i, j)] * inflate * inflate;
            cov[(i, j)] = c;
            cov[(j, i)] = c;
        }
        cov[(i, i)] *= inflate * inflate;
    }
    let Some(chol) = cov.cholesky() else {
        return (diagonal, None);
    };
    match AffineMap::new(mean, chol.l()) {
        Ok(map) => (
            DiagGaussian {
                mean: vec![0.0; d],
                scale: vec![1.0; d],
            },
            Some(map),
        ),
        Err(_) => (diagonal, None),
    }
}

impl SequentialSampler {
    /// A sampler for `target` whose start and temperatures come from two pilot SMC runs of
    /// `config.pilot_particles` particles: the first from `guess` gives the posterior mean and
    /// covariance: the start is N(mean, inflate² Σ̂), Σ̂ the pilot's covariance shrunk towards
    /// its diagonal (only its diagonal above `full_covariance_max_dim` dimensions), and the
    /// sampler works in the coordinates that make the start N(0, I). The second, from that start,
    /// gives the temperatures by adaptive tempering at `schedule_cess`, interpolated onto
    /// `config.steps` steps. Without a pilot (`pilot_particles` 0) the start is `guess` and the
    /// temperatures are geometric from 10⁻⁴. The pilots' gradient evaluations are counted.
    pub fn with_pilot(
        target: &dyn Target,
        guess: &DiagGaussian,
        config: SequentialConfig,
        seed: u64,
        rng: &mut impl rand::Rng,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        if target.dim() != guess.dim() {
            return Err(DsbError::InvalidInput(format!(
                "the start is {}-D but the target '{}' is {}-D",
                guess.dim(),
                target.name(),
                target.dim()
            )));
        }
        let k = config.steps;
        if config.pilot_particles == 0 {
            let betas = geometric_betas(k);
            return Self::new(guess.clone(), betas, config, seed, device);
        }
        let pilot_cfg = SmcConfig {
            particles: config.pilot_particles,
            kernel: MoveKernel::Hmc,
            moves: 2,
            leapfrog_steps: 5,
            cess_target: 0.5,
            ..SmcConfig::default()
        };
        let first = run_smc_in_target_coordinates(target, guess, &pilot_cfg, rng, |_| {})
            .map_err(|e| DsbError::InvalidInput(format!("pilot SMC run: {e}")))?;
        let s = &first.samples;
        let (start, whitening) = pilot_start(
            &s.samples,
            s.dim,
            &crate::estimate::normalised_weights(&s.log_w),
            config.pilot_inflate,
            config.full_covariance_max_dim,
            guess,
        );
        let schedule_cfg = SmcConfig {
            cess_target: config.schedule_cess,
            moves: 1,
            ..pilot_cfg
        };
        let whitened = whitening
            .as_ref()
            .map(|map| Whitened::new(target, map))
            .transpose()?;
        let pilot_target: &dyn Target = match &whitened {
            Some(w) => w,
            None => target,
        };
        let second =
            run_smc_in_target_coordinates(pilot_target, &start, &schedule_cfg, rng, |_| {})
                .map_err(|e| DsbError::InvalidInput(format!("schedule pilot SMC run: {e}")))?;
        let grads = first.gradient_evaluations + second.gradient_evaluations;
        let temps: Vec<f64> = std::iter::once(0.0)
            .chain(second.steps.iter().map(|s| s.beta))
            .collect();
        let betas = interpolate_betas(&temps, k);
        // The Langevin steps start at δ = ε²/2 of the pilot's adapted HMC step ε at the
        // nearest temperature (MALA's drift for step ε), converted from the pilot's
        // preconditioner (the particle sd, about 1/inflate in the start's whitened units) and
        // halved, since an unadjusted step has no rejection to save it.
        let eps: Vec<f64> = second.steps.iter().map(|s| s.step_size).collect();
        let deltas: Vec<f64> = (0..k)
            .map(|i| {
                let b = betas[i + 1];
                let j = second
                    .steps
                    .iter()
                    .position(|s| s.beta >= b)
                    .unwrap_or(eps.len() - 1);
                0.25 * eps[j] * eps[j] / (config.pilot_inflate * config.pilot_inflate)
            })
            .collect();
        let mut s = Self::new(start, betas, config, seed, device)?;
        s.set_langevin_steps(&deltas)?;
        s.whitening = whitening;
        s.grad_evals = grads;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equally weighted draws: x₁ = a, x₂ = 0.5 a + 0.5 b (a, b standard normal), or x₁ = ±2 + a
    /// when `bimodal`.
    fn draws(n: usize, bimodal: bool) -> Vec<f32> {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(7);
        (0..n)
            .flat_map(|i| {
                let a: f64 = rng.sample(rand_distr::StandardNormal);
                let b: f64 = rng.sample(rand_distr::StandardNormal);
                let shift = if bimodal && i % 2 == 0 {
                    2.0
                } else if bimodal {
                    -2.0
                } else {
                    0.0
                };
                [(shift + a) as f32, (0.5 * a + 0.5 * b) as f32]
            })
            .collect()
    }

    /// The whitening of a correlated sample recovers its covariance (times inflate²), shrunk
    /// towards the diagonal by d / (d + ESS); a multimodal one and, above the full-covariance
    /// dimension, any one keep their axes.
    #[test]
    fn pilot_whitening_recovers_the_covariance() {
        let n = 400;
        let x = draws(n, false);
        let w = vec![1.0 / n as f64; n];
        let guess = DiagGaussian {
            mean: vec![0.0; 2],
            scale: vec![1.0; 2],
        };
        let mean =
            |j: usize| x.iter().skip(j).step_by(2).map(|&v| v as f64).sum::<f64>() / n as f64;
        let (m0, m1) = (mean(0), mean(1));
        let cov = |f: &dyn Fn(&[f32]) -> f64| x.chunks(2).map(f).sum::<f64>() / n as f64;
        let c00 = cov(&|r| (r[0] as f64 - m0).powi(2));
        let c11 = cov(&|r| (r[1] as f64 - m1).powi(2));
        let c01 = cov(&|r| (r[0] as f64 - m0) * (r[1] as f64 - m1));
        let (start, map) = pilot_start(&x, 2, &w, 2.0, 10, &guess);
        let map = map.expect("full whitening");
        assert_eq!((start.mean, start.scale), (vec![0.0; 2], vec![1.0; 2]));
        assert!((map.shift()[0] - m0).abs() < 1e-9 && (map.shift()[1] - m1).abs() < 1e-9);
        let l = map.factor();
        let got = l * l.transpose();
        let (lambda, inflate2) = (2.0 / (2.0 + n as f64), 4.0);
        assert!((got[(0, 0)] - inflate2 * c00).abs() < 1e-6);
        assert!((got[(1, 1)] - inflate2 * c11).abs() < 1e-6);
        assert!((got[(0, 1)] - (1.0 - lambda) * inflate2 * c01).abs() < 1e-6);
        // Above the full-covariance dimension: diagonal only, scale = inflate · sd.
        let (diag, none) = pilot_start(&x, 2, &w, 2.0, 1, &guess);
        assert!(none.is_none());
        assert!((diag.mean[0] - m0).abs() < 1e-9);
        assert!((diag.scale[0] - 2.0 * c00.sqrt()).abs() < 1e-6);
        // Two modes in the first coordinate: the axes are kept.
        let (_, none) = pilot_start(&draws(n, true), 2, &w, 2.0, 10, &guess);
        assert!(none.is_none());
    }
}

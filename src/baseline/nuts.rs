//! The No-U-Turn sampler from the `nuts-rs` crate (the sampler behind PyMC's nutpie), run on
//! any [`Target`]: the reference for posterior moments. It gives no estimate of log Z.
//!
//! Each chain starts from a draw of N(0, diag(s²)) (the same start as SMC), adapts its step
//! size and diagonal mass matrix during `tune` draws (nuts-rs' Stan-like schedule), and keeps
//! the next `draws`. nuts-rs draws its randomness from rand 0.10, seeded here from the run's
//! seed and the chain number, so a seed gives the same chains on the same machine.

use crate::error::{DsbError, ensure_valid, invalid};
use crate::estimate::Estimates;
use crate::mcmc::DiagGaussian;
use crate::sampler::SampleSet;
use crate::target::{Target, Want, evaluate};
use nuts_rs::rand::SeedableRng as _;
use nuts_rs::{Chain, CpuLogpFunc, CpuMath, CpuMathError, DiagNutsSettings, LogpError, Settings};
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Settings of [`run_nuts`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NutsConfig {
    /// Independent chains (run one after another).
    pub chains: usize,
    /// Warm-up draws per chain (step size and mass matrix adaptation), discarded.
    pub tune: u64,
    /// Draws kept per chain.
    pub draws: u64,
    /// Maximum tree depth (at most 2^depth leapfrog steps per draw).
    pub max_depth: u64,
}

impl Default for NutsConfig {
    fn default() -> Self {
        Self {
            chains: 4,
            tune: 1000,
            draws: 1000,
            max_depth: 10,
        }
    }
}

impl NutsConfig {
    /// Checks the settings, naming the flag at fault.
    pub fn validate(&self) -> crate::error::Result<()> {
        ensure_valid!(self.chains >= 1, "--chains must be at least 1");
        ensure_valid!(self.draws >= 1, "--draws must be at least 1");
        ensure_valid!(
            (1..=20).contains(&self.max_depth),
            "--max-depth {}: use a value in 1..=20",
            self.max_depth
        );
        Ok(())
    }
}

/// The outcome of [`run_nuts`].
#[derive(Debug, Clone)]
pub struct NutsResult {
    /// All kept draws, chains one after another, with equal weights (log Ẑ, ELBO and the
    /// standard error are NaN: NUTS does not estimate Z).
    pub samples: SampleSet,
    /// Divergent transitions among the kept draws.
    pub divergences: u64,
    /// Target gradient evaluations, warm-up included.
    pub gradient_evaluations: u64,
    /// Mean leapfrog steps per kept draw.
    pub mean_leapfrog_steps: f64,
    /// Largest split-R̂ over the coordinates (NaN with one chain); above ≈ 1.01 the chains
    /// disagree and the moments are not to be trusted.
    pub max_rhat: f64,
}

/// A log density that failed at a point: recoverable (NUTS treats it as a divergence) when the
/// density or gradient was merely not finite.
#[derive(Debug, thiserror::Error)]
enum TargetLogpError {
    #[error("the log density or its gradient is not finite here")]
    NonFinite,
    #[error("the target failed: {0}")]
    Failed(String),
}

impl LogpError for TargetLogpError {
    fn is_recoverable(&self) -> bool {
        matches!(self, Self::NonFinite)
    }
}

/// A [`Target`] seen through nuts-rs' one-point interface.
struct TargetLogp<'a> {
    target: &'a dyn Target,
}

impl nuts_rs::HasDims for TargetLogp<'_> {
    fn dim_sizes(&self) -> HashMap<String, u64> {
        let d = self.target.dim() as u64;
        HashMap::from([
            ("unconstrained_parameter".to_string(), d),
            ("dim".to_string(), d),
        ])
    }
}

impl CpuLogpFunc for TargetLogp<'_> {
    type LogpError = TargetLogpError;
    type FlowParameters = ();
    type ExpandedVector = Vec<f64>;

    fn dim(&self) -> usize {
        self.target.dim()
    }

    fn logp(&mut self, position: &[f64], grad: &mut [f64]) -> Result<f64, TargetLogpError> {
        let (lp, g) = evaluate(self.target, position, position.len(), Want::Both)
            .map_err(|e| TargetLogpError::Failed(e.to_string()))?;
        if !lp[0].is_finite() {
            return Err(TargetLogpError::NonFinite);
        }
        grad.copy_from_slice(&g);
        Ok(lp[0])
    }

    fn expand_vector<R: nuts_rs::rand::Rng + ?Sized>(
        &mut self,
        _rng: &mut R,
        array: &[f64],
    ) -> Result<Vec<f64>, CpuMathError> {
        Ok(array.to_vec())
    }
}

/// Runs `cfg.chains` NUTS chains on `target`, each started from a draw of `start`.
/// `progress(chain, draw)` sees every draw (warm-up included).
///
/// ```
/// use dsb::baseline::{DiagGaussian, NutsConfig, run_nuts};
/// use dsb::target::CorrelatedGaussian;
/// use rand::SeedableRng;
///
/// let target = CorrelatedGaussian::builtin(2).unwrap();
/// let start = DiagGaussian { mean: vec![0.0; 2], scale: vec![1.0; 2] };
/// let cfg = NutsConfig { chains: 2, tune: 300, draws: 300, ..Default::default() };
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let out = run_nuts(&target, &start, &cfg, &mut rng, |_, _| {}).unwrap();
/// assert_eq!(out.samples.len(), 600);
/// ```
pub fn run_nuts(
    target: &dyn Target,
    start: &DiagGaussian,
    cfg: &NutsConfig,
    rng: &mut impl Rng,
    mut progress: impl FnMut(usize, u64),
) -> crate::error::Result<NutsResult> {
    cfg.validate()?;
    let d = target.dim();
    ensure_valid!(
        start.dim() == d,
        "the NUTS start distribution is {}-D but the target is {d}-D",
        start.dim()
    );
    let settings = DiagNutsSettings {
        num_tune: cfg.tune,
        num_draws: cfg.draws,
        maxdepth: cfg.max_depth,
        ..Default::default()
    };
    let mut samples = Vec::with_capacity(cfg.chains * cfg.draws as usize * d);
    let (mut divergences, mut gradients, mut leapfrogs) = (0u64, 0u64, 0u64);
    for chain in 0..cfg.chains {
        let mut chain_rng = nuts_rs::rand::rngs::ChaCha8Rng::seed_from_u64(rng.random());
        let math = CpuMath::new(TargetLogp { target });
        let mut sampler = settings
            .new_chain(chain as u64, math, &mut chain_rng)
            .map_err(|e| DsbError::foreign(&*e))?;
        let init = start_point(target, start, rng)?;
        sampler
            .set_position(&init)
            .map_err(|e| DsbError::foreign(&*e))?;
        for i in 0..cfg.tune + cfg.draws {
            let (draw, info) = sampler.draw().map_err(|e| DsbError::foreign(&*e))?;
            gradients += info.num_gradients;
            if !info.tuning {
                samples.extend(draw.iter().map(|&v| v as f32));
                divergences += info.diverging as u64;
                leapfrogs += info.num_steps;
            }
            progress(chain, i);
        }
    }
    let n = samples.len() / d;
    let max_rhat = split_rhat(&samples, d, cfg.chains);
    Ok(NutsResult {
        samples: SampleSet {
            dim: d,
            samples,
            log_w: vec![0.0; n],
            estimates: Estimates {
                n,
                n_nonfinite: 0,
                log_z: f64::NAN,
                log_z_stderr: f64::NAN,
                elbo: f64::NAN,
                log_w_median: f64::NAN,
                elbo_outliers: false,
                ess: 1.0,
            },
        }
        .in_original_coordinates(target),
        divergences,
        gradient_evaluations: gradients,
        mean_leapfrog_steps: leapfrogs as f64 / n as f64,
        max_rhat,
    })
}

/// A start point drawn from `start` where the target's density is finite (up to 100 tries).
fn start_point(
    target: &dyn Target,
    start: &DiagGaussian,
    rng: &mut impl Rng,
) -> crate::error::Result<Vec<f64>> {
    for _ in 0..100 {
        let x: Vec<f64> = start
            .mean
            .iter()
            .zip(&start.scale)
            .map(|(m, s)| m + s * rng.sample::<f64, _>(StandardNormal))
            .collect();
        if evaluate(target, &x, x.len(), Want::Both)?.0[0].is_finite() {
            return Ok(x);
        }
    }
    Err(invalid!(
        "NUTS: 100 start points drawn from N(0, σ²) all had a non-finite log density under '{}'; \
         check the target or pass a --sigma that lands where it is finite",
        target.name()
    ))
}

/// The largest split-R̂ (Gelman et al., BDA3 §11.4) over coordinates: each chain is cut in two
/// halves and the between-half variance compared with the within-half variance.
fn split_rhat(samples: &[f32], d: usize, chains: usize) -> f64 {
    let per_chain = samples.len() / d / chains.max(1);
    let half = per_chain / 2;
    if chains < 2 || half < 2 {
        return f64::NAN;
    }
    let mut worst = 0.0f64;
    for j in 0..d {
        let mut means = Vec::new();
        let mut vars = Vec::new();
        for c in 0..chains {
            for h in 0..2 {
                let rows = (c * per_chain + h * half)..(c * per_chain + (h + 1) * half);
                let v: Vec<f64> = rows.map(|r| samples[r * d + j] as f64).collect();
                let m = v.iter().sum::<f64>() / half as f64;
                let s2 = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (half - 1) as f64;
                means.push(m);
                vars.push(s2);
            }
        }
        let k = means.len() as f64;
        let grand = means.iter().sum::<f64>() / k;
        let b = half as f64 * means.iter().map(|m| (m - grand).powi(2)).sum::<f64>() / (k - 1.0);
        let w = vars.iter().sum::<f64>() / k;
        let var_plus = (half as f64 - 1.0) / half as f64 * w + b / half as f64;
        if w > 0.0 {
            worst = worst.max((var_plus / w).sqrt());
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_rhat_flags_chains_that_disagree() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        use rand::SeedableRng;
        let draw = |shift: f64, rng: &mut rand::rngs::StdRng| -> Vec<f32> {
            (0..500)
                .map(|_| (shift + rng.sample::<f64, _>(StandardNormal)) as f32)
                .collect()
        };
        let mut same = draw(0.0, &mut rng);
        same.extend(draw(0.0, &mut rng));
        assert!(split_rhat(&same, 1, 2) < 1.01);
        let mut apart = draw(0.0, &mut rng);
        apart.extend(draw(2.0, &mut rng));
        assert!(split_rhat(&apart, 1, 2) > 1.2);
    }
}

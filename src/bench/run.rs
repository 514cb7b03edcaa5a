//! One benchmark run: a method on a target with a seed, under a budget.

use crate::baseline::{DiagGaussian, Method, NutsConfig, SmcConfig, SmcResult, run_nuts, run_smc};
use crate::error::Result;
use crate::metrics::sample_moment_errors;
use crate::recommend::recommended_settings;
use crate::sampler::{DiffusionSampler, SampleSet};
use crate::sequential::{SequentialConfig, SequentialSampler};
use crate::target::{Preconditioned, Target};
use crate::train::train;
use candle_core::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// How much work each method gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Budget {
    /// Seconds per run: a check that everything runs (CI).
    Smoke,
    /// About a tenth of the recommended diffusion training, SMC with 1024 particles, NUTS with
    /// 2 chains of 500 + 500: minutes for the whole table on 2 cores.
    Quick,
    /// The recommended settings of `dsb sample` for each target, SMC and NUTS at their
    /// defaults (2048 particles; 4 chains of 1000 + 1000).
    Full,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Target name.
    pub target: String,
    /// Target dimension.
    pub dim: usize,
    /// Method.
    pub method: Method,
    /// Whether the method ran on the Laplace-whitened target.
    pub laplace: bool,
    /// Seed.
    pub seed: u64,
    /// log Ẑ (none for NUTS).
    pub log_z: Option<f64>,
    /// Reference log Z, where known.
    pub reference_log_z: Option<f64>,
    /// |log Ẑ − log Z|.
    pub abs_error: Option<f64>,
    /// Normalised ESS of the returned samples (1 for NUTS draws, which are unweighted).
    pub ess: f64,
    /// Largest |mean error| over coordinates, in reference posterior sds.
    pub mean_error_sd: Option<f64>,
    /// Largest relative error of a posterior sd.
    pub sd_error: Option<f64>,
    /// Seconds.
    pub wall_seconds: f64,
    /// Target gradient evaluations (per point).
    pub gradient_evaluations: u64,
    /// Samples returned.
    pub samples: usize,
}

/// Runs `method` on `original` with `seed` under `budget`. The diffusion sampler uses the
/// target's recommended settings (scaled by the budget); SMC and NUTS start from the diffusion
/// sampler's prior N(0, diag(σᵢ²)). With `laplace`, every method runs on the target whitened by
/// its Laplace approximation ([`Preconditioned`], started at N(0, I)); the mode search counts
/// in the wall time, and moments are compared in the original coordinates.
pub fn run_one(
    original: Arc<dyn Target>,
    method: Method,
    budget: Budget,
    seed: u64,
    laplace: bool,
) -> Result<RunRecord> {
    let start = Instant::now();
    let pre = if laplace {
        Some(Preconditioned::laplace(
            original.clone(),
            &vec![0.0; original.dim()],
            1.0,
        )?)
    } else {
        None
    };
    let target: &dyn Target = match &pre {
        Some(p) => p,
        None => original.as_ref(),
    };
    let (mut scfg, mut tcfg) = recommended_settings(target);
    let dim = target.dim();
    let mut rng = StdRng::seed_from_u64(seed);
    let init = DiagGaussian::sampler_prior(&scfg, dim);
    let (set, log_z, grads): (SampleSet, Option<f64>, u64) = match method {
        Method::Dsb => {
            let n_out = match budget {
                Budget::Smoke => 256,
                Budget::Quick => 2000,
                Budget::Full => 10_000,
            };
            match budget {
                Budget::Smoke => {
                    tcfg.iterations = 10;
                    tcfg.batch = 64;
                    scfg.steps = scfg.steps.min(16);
                }
                Budget::Quick => {
                    tcfg.iterations = (tcfg.iterations / 10).max(100);
                    scfg.steps = scfg.steps.min(32);
                }
                Budget::Full => {}
            }
            let mut s = DiffusionSampler::new(dim, scfg, seed, &Device::Cpu)?;
            train(&mut s, target, &tcfg, &mut rng, |_| {})?;
            let set = s.sample(target, n_out, 2048, &mut rng)?;
            let z = set.estimates.log_z;
            (set, Some(z), s.gradient_evaluations())
        }
        Method::Smc => {
            let cfg = SmcConfig {
                particles: match budget {
                    Budget::Smoke => 128,
                    Budget::Quick => 1024,
                    Budget::Full => 2048,
                },
                moves: if budget == Budget::Smoke { 2 } else { 10 },
                ..SmcConfig::default()
            };
            let out: SmcResult = run_smc(target, &init, &cfg, &mut rng, |_| {})?;
            let z = out.samples.estimates.log_z;
            (out.samples, Some(z), out.gradient_evaluations)
        }
        Method::Sequential => {
            let cfg = match budget {
                Budget::Smoke => SequentialConfig {
                    steps: 8,
                    particles: 128,
                    iterations: 4,
                    batch: 32,
                    pilot_particles: 64,
                    ..SequentialConfig::default()
                },
                Budget::Quick => SequentialConfig {
                    particles: 4096,
                    ..SequentialConfig::default()
                },
                Budget::Full => SequentialConfig {
                    particles: 8192,
                    steps: 128,
                    iterations: 100,
                    ..SequentialConfig::default()
                },
            };
            let mut s =
                SequentialSampler::with_pilot(target, &init, cfg, seed, &mut rng, &Device::Cpu)?;
            s.train(target, &mut rng, |_| {})?;
            let out = s.sample(target, &mut rng)?;
            (out.samples, Some(out.log_z), s.gradient_evaluations())
        }
        Method::Nuts => {
            let cfg = match budget {
                Budget::Smoke => NutsConfig {
                    chains: 1,
                    tune: 50,
                    draws: 50,
                    max_depth: 6,
                },
                Budget::Quick => NutsConfig {
                    chains: 2,
                    tune: 500,
                    draws: 500,
                    ..NutsConfig::default()
                },
                Budget::Full => NutsConfig::default(),
            };
            let out = run_nuts(target, &init, &cfg, &mut rng, |_, _| {})?;
            (out.samples, None, out.gradient_evaluations)
        }
    };
    let moments = sample_moment_errors(&set, original.as_ref());
    let reference = target.log_z();
    Ok(RunRecord {
        target: original.name().to_string(),
        dim,
        method,
        laplace,
        seed,
        log_z,
        reference_log_z: reference,
        abs_error: log_z.zip(reference).map(|(a, b)| (a - b).abs()),
        ess: set.estimates.ess,
        mean_error_sd: moments.map(|m| m.mean_max),
        sd_error: moments.map(|m| m.sd_max),
        wall_seconds: start.elapsed().as_secs_f64(),
        gradient_evaluations: grads,
        samples: set.len(),
    })
}

//! Schrödinger-bridge refinement by iterative proportional fitting (IPF).
//!
//! Iteration 0 is the diffusion sampler of [`crate::train`]: the backward process Q⁰ is fitted
//! to the reversal of the reference P⁰ started at the target. With a short horizon or few steps
//! P⁰ does not reach the prior, and Q⁰ (which must start at the prior) is biased. Iteration
//! n ≥ 1 alternates the two half-steps of docs/design.md § IPF refinement:
//!
//! 1. forward: the forward drift is fitted by mean matching to the time reversal of Qⁿ⁻¹
//!    simulated from the prior ([`fit_forward`]), so Pⁿ (started at the target) ends nearer
//!    the prior;
//! 2. backward: the backward drift is trained by the path-space reverse KL or log-variance
//!    objective against Pⁿ ([`crate::train::train`], which uses the sampler's learned forward
//!    kernels in every path density).
//!
//! Both networks are warm-started from their previous iterate, and each ends a half-step holding
//! an exponential moving average of its weights. After each iteration the bridge's importance
//! weights give log Ẑ, ELBO and ESS (an [`IpfRow`]), so a user sees whether refinement helps.

mod cache;
pub mod driver;
mod forward_fit;
mod resumable;

pub use cache::PathCache;
pub use driver::{Half, Phase, Position};
pub use forward_fit::{ForwardFitConfig, fit_forward};
pub use resumable::{Checkpoints, CurvePoint, RunEvent, RunProgress, RunSpec, SampleRun, SavedRun};

use crate::error::Result;
use crate::estimate::Estimates;
use crate::sampler::DiffusionSampler;
use crate::target::Target;
use crate::train::{IterStats, TrainConfig};
use serde::{Deserialize, Serialize};

/// Settings of the refinement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IpfConfig {
    /// Number of refinements K (IPF iterations after iteration 0).
    pub refinements: usize,
    /// Backward gradient steps per refinement (iteration 0 uses the training settings' own).
    pub backward_iterations: usize,
    /// The forward half-step.
    pub forward: ForwardFitConfig,
    /// Paths drawn to estimate log Ẑ, ELBO and ESS after every iteration.
    pub eval_samples: usize,
}

impl IpfConfig {
    /// Checks the settings, so that a bad value fails before any training.
    pub fn validate(&self) -> Result<()> {
        self.forward.validate()?;
        if self.eval_samples < 2 {
            return Err(crate::error::DsbError::InvalidInput(format!(
                "--ipf-eval must be at least 2 (paths per IPF row), got {}",
                self.eval_samples
            )));
        }
        Ok(())
    }
}

impl Default for IpfConfig {
    fn default() -> Self {
        Self {
            refinements: 3,
            backward_iterations: 500,
            forward: ForwardFitConfig::default(),
            eval_samples: 4096,
        }
    }
}

/// One IPF iteration's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IpfRow {
    /// IPF iteration (0 = the diffusion sampler).
    pub iteration: usize,
    /// log Ẑ, ELBO and ESS of `eval_samples` fresh paths of the bridge after this iteration.
    pub estimates: Estimates,
    /// Final mean-matching loss of the forward half-step (none at iteration 0). Its floor is
    /// about d/2, the noise of the regression targets.
    pub forward_loss: Option<f64>,
    /// Loss of the last backward training step.
    pub backward_loss: Option<f64>,
    /// Wall time of this iteration's training, in seconds.
    pub seconds: f64,
    /// Target gradient evaluations so far (cumulative).
    pub gradient_evaluations: u64,
}

/// Progress of an IPF run, for progress bars and logs.
#[derive(Debug)]
pub enum IpfProgress<'a> {
    /// A forward (mean-matching) step of refinement `ipf`.
    Forward {
        /// IPF iteration.
        ipf: usize,
        /// Step within the half-step.
        step: usize,
        /// Its loss.
        loss: f64,
    },
    /// A backward training step of IPF iteration `ipf`.
    Backward {
        /// IPF iteration.
        ipf: usize,
        /// The step's statistics.
        stats: &'a IterStats,
    },
    /// An iteration finished.
    Row(&'a IpfRow),
}

/// The estimates (log Ẑ, ELBO, ESS) of `n` fresh paths of the sampler: what each IPF row
/// reports.
pub fn fresh_estimates(
    sampler: &DiffusionSampler,
    target: &dyn Target,
    n: usize,
    rng: &mut impl rand::Rng,
) -> Result<Estimates> {
    Ok(sampler.sample(target, n, 1024, rng)?.estimates)
}

/// Runs IPF iterations `first..first + cfg.refinements` on an already trained sampler
/// (iteration 0, or a loaded bridge), in memory: the loop of [`SampleRun`] without checkpoints
/// and without the opening evaluation. `train_cfg` gives the backward objective and optimiser;
/// its iteration count is replaced by `cfg.backward_iterations`.
#[allow(clippy::too_many_arguments)]
pub fn refine(
    sampler: &mut DiffusionSampler,
    target: &dyn Target,
    train_cfg: &TrainConfig,
    cfg: &IpfConfig,
    first: usize,
    seed: u64,
    rng: &mut impl rand::Rng,
    mut on_progress: impl FnMut(IpfProgress<'_>),
) -> Result<Vec<IpfRow>> {
    cfg.validate()?;
    if cfg.refinements == 0 {
        return Ok(Vec::new());
    }
    let spec = in_memory_spec(sampler, target, None, train_cfg, cfg, first, seed);
    SampleRun::new(spec, sampler)?.run_in_memory(sampler, target, rng, false, |e| {
        if let RunEvent::Ipf(p) = e {
            on_progress(p)
        }
    })
}

/// The spec of a run that [`run`] or [`refine`] drives in memory.
fn in_memory_spec(
    sampler: &DiffusionSampler,
    target: &dyn Target,
    train: Option<&TrainConfig>,
    refine: &TrainConfig,
    ipf: &IpfConfig,
    first_ipf: usize,
    seed: u64,
) -> RunSpec {
    RunSpec {
        target: target.name().into(),
        dim: sampler.dim(),
        sampler: sampler.config().clone(),
        train: train.cloned(),
        refine: refine.clone(),
        ipf: ipf.clone(),
        first_ipf,
        seed,
    }
}

/// Trains iteration 0 (the diffusion sampler) and then runs `cfg.refinements` IPF refinements:
/// the library's one-call Schrödinger-bridge sampler. Returns one row per iteration, 0..=K.
///
/// ```
/// use dsb::prelude::*;
/// use dsb::ipf::{IpfConfig, ForwardFitConfig, run};
/// use rand::SeedableRng;
///
/// let target = CorrelatedGaussian::builtin(2).unwrap();
/// let config = SamplerConfig { steps: 8, horizon: 0.5, width: 16, depth: 1, ..Default::default() };
/// let mut sampler = DiffusionSampler::new(2, config, 0, &candle_core::Device::Cpu).unwrap();
/// let train_cfg = TrainConfig { iterations: 20, batch: 64, ..Default::default() };
/// let ipf = IpfConfig {
///     refinements: 1,
///     backward_iterations: 20,
///     forward: ForwardFitConfig { iterations: 20, cache: 128, ..Default::default() },
///     eval_samples: 256,
/// };
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let rows = run(&mut sampler, &target, &train_cfg, &ipf, 0, &mut rng, |_| {}).unwrap();
/// assert_eq!(rows.len(), 2);
/// println!("log Z-hat after refinement: {}", rows[1].estimates.log_z);
/// ```
pub fn run(
    sampler: &mut DiffusionSampler,
    target: &dyn Target,
    train_cfg: &TrainConfig,
    cfg: &IpfConfig,
    seed: u64,
    rng: &mut impl rand::Rng,
    mut on_progress: impl FnMut(IpfProgress<'_>),
) -> Result<Vec<IpfRow>> {
    cfg.validate()?;
    let spec = in_memory_spec(sampler, target, Some(train_cfg), train_cfg, cfg, 1, seed);
    SampleRun::new(spec, sampler)?.run_in_memory(sampler, target, rng, true, |e| match e {
        RunEvent::Train(stats) => on_progress(IpfProgress::Backward { ipf: 0, stats }),
        RunEvent::Ipf(p) => on_progress(p),
        RunEvent::TrainDone | RunEvent::Checkpoint => {}
    })
}

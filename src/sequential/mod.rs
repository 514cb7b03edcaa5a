//! The sequential diffusion sampler: a learned, controlled Langevin diffusion along a geometric
//! annealing path, run inside a particle system with resampling and MCMC moves (Sequential
//! Controlled Langevin Diffusions, Chen et al., ICLR 2025; Controlled Monte Carlo Diffusions,
//! Vargas et al., ICLR 2024).
//!
//! **Path.** π_k ∝ π₀^{1−β_k} γ̃^{β_k}, k = 0..K, with 0 = β₀ < … < β_K = 1 and π₀ = N(m, diag(s²))
//! a normalised Gaussian. A pilot (a small adaptive-tempering SMC run, [`crate::baseline::run_smc`])
//! places the start at the target's posterior mean and scale (s = pilot sd × `pilot_inflate`),
//! and a second pilot from that start gives the temperatures, interpolated onto K steps.
//!
//! **Transitions.** In whitened coordinates z = (x − m)/s, with g_k(z) = ∇_z log π_k:
//!
//! - forward F_k: z′ = z + clip(δ_k (g_k(z) + u_θ(z, k))) + √(2δ_k) ξ,
//! - backward B_k: z = z′ + clip(δ_k (g_{k+1}(z′) − u_θ(z′, k+1))) + √(2δ_k) ξ′,
//!
//! the Euler–Maruyama discretisation of the controlled Langevin pair of CMCD. The incremental
//! weight of a transition is log π_{k+1}(x′) − log π_k(x) + log B_k(z | z′) − log F_k(z′ | z),
//! an exact importance weight for any control u_θ and step δ_k (the clip, ±`drift_clip` per
//! coordinate, is part of both kernels' means). With u_θ = 0 this is annealed importance
//! sampling with unadjusted Langevin moves; with resampling and HMC moves (which leave π_k
//! invariant, shared with the SMC baseline) it is SMC on the same path. log Ẑ is the sum of the
//! logs of the mean incremental weights, in f64; it is unbiased (Ẑ) for any control: the
//! network only lowers the variance.
//!
//! **Training.** The log-variance loss on the sub-trajectories between resampling events
//! ([`loss`]): for each segment, the variance over particles of the segment's summed
//! incremental log weights, with the states held fixed (off-policy), summed over segments.
//! Simulations of the particle system are kept in a replay buffer and each is reused for
//! several gradient steps. The control u_θ is the PIS-grad network of the diffusion sampler
//! ([`crate::nn::DriftNet`]) fed the tempered score; the per-step Langevin steps log δ_k are
//! learned with it.
//!
//! **Standard error.** The Lee–Whiteley estimator from the particles' Eve indices
//! ([`crate::estimate::eve_log_z_stderr`]).

mod config;
mod loss;
mod loss_fast;
mod pilot;
mod system;

pub use config::{Resampling, SequentialConfig};
pub use system::SequentialRun;

use crate::baseline::DiagGaussian;
use crate::error::{DsbError, Result};
use crate::nn::{DriftNet, ParamStore, TimeFeatures};
use crate::target::{AffineMap, Target};
use crate::train::Optimiser;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

/// A sequential diffusion sampler for one target dimension: the start π₀, the temperatures,
/// and the learned control with its per-step Langevin steps.
#[derive(Debug)]
pub struct SequentialSampler {
    dim: usize,
    config: SequentialConfig,
    start: DiagGaussian,
    betas: Vec<f64>,
    params: ParamStore,
    net: DriftNet,
    log_delta: Tensor,
    device: Device,
    /// The pilot's whitening x = m + Lz: the sampler then works on z (its start, states and
    /// moves), and maps the samples back.
    whitening: Option<AffineMap>,
    grad_evals: u64,
    trained: usize,
    /// Whether the control runs on the CPU fast path ([`crate::nn::FastDrift`]) when on the CPU.
    fast_path: bool,
}

/// One training iteration's report.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SequentialIter {
    /// Iteration index, from 0.
    pub iteration: usize,
    /// The loss (sum over segments of the log-weight variances).
    pub loss: f64,
    /// log Ẑ of the newest training simulation.
    pub log_z: f64,
    /// Resamplings in the newest training simulation.
    pub resamplings: usize,
}

impl SequentialSampler {
    /// A sampler from the start `start` through the temperatures `betas` (K + 1 values from 0 to
    /// 1, increasing), with an untrained control (u = 0) drawn from a generator seeded by
    /// `seed`.
    pub fn new(
        start: DiagGaussian,
        betas: Vec<f64>,
        config: SequentialConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let dim = start.dim();
        if dim == 0 {
            return Err(DsbError::InvalidInput("the target has dimension 0".into()));
        }
        if !start.scale.iter().all(|s| *s > 0.0 && s.is_finite())
            || !start.mean.iter().all(|m| m.is_finite())
        {
            return Err(DsbError::InvalidInput(
                "the start of the sequential sampler needs a finite mean and positive, finite \
                 scales (--sigma)"
                    .into(),
            ));
        }
        let k = betas.len().saturating_sub(1);
        if k == 0
            || betas[0] != 0.0
            || betas[k] != 1.0
            || betas.windows(2).any(|w| w[1] <= w[0] || w[1].is_nan())
        {
            return Err(DsbError::InvalidInput(
                "the temperatures must increase strictly from 0 to 1".into(),
            ));
        }
        let (mut params, net) = DriftNet::new_in_own_store(
            "control",
            true,
            dim,
            (config.width, config.depth),
            1e4,
            seed ^ 0x5e9_0e11,
            device,
        )?;
        let log_delta = params.vector(
            "log_delta",
            vec![config.langevin_step.ln() as f32; k],
            device,
        )?;
        Ok(Self {
            dim,
            config: SequentialConfig { steps: k, ..config },
            start,
            betas,
            params,
            net,
            log_delta,
            device: device.clone(),
            whitening: None,
            grad_evals: 0,
            trained: 0,
            fast_path: true,
        })
    }

    /// The settings.
    pub fn config(&self) -> &SequentialConfig {
        &self.config
    }
    /// The start π₀, in the sampler's coordinates (z of [`SequentialSampler::whitening`] where
    /// there is one).
    pub fn start(&self) -> &DiagGaussian {
        &self.start
    }
    /// The pilot's full-covariance whitening x = m + Lz, where the sampler works on z.
    pub fn whitening(&self) -> Option<&AffineMap> {
        self.whitening.as_ref()
    }
    /// The temperatures β₀ = 0 < … < β_K = 1.
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }
    /// The current Langevin steps δ_k.
    pub fn langevin_steps(&self) -> Result<Vec<f64>> {
        Ok(self
            .log_delta
            .exp()?
            .to_vec1::<f32>()?
            .iter()
            .map(|&v| v as f64)
            .collect())
    }
    /// Sets the Langevin steps δ_k (one per step, positive).
    pub fn set_langevin_steps(&mut self, deltas: &[f64]) -> Result<()> {
        let k = self.betas.len() - 1;
        if deltas.len() != k || !deltas.iter().all(|d| *d > 0.0 && d.is_finite()) {
            return Err(DsbError::InvalidInput(format!(
                "{k} positive Langevin steps are needed, got {deltas:?}"
            )));
        }
        let v: Vec<f32> = deltas.iter().map(|d| d.ln() as f32).collect();
        let var = self
            .params
            .named()
            .iter()
            .find(|(n, _)| n == "log_delta")
            .map(|(_, v)| v.clone())
            .expect("registered");
        var.set(&Tensor::from_vec(v, k, &self.device)?)?;
        Ok(())
    }

    /// Overwrites every weight of the control network with draws uniform on ±`scale` from a
    /// generator seeded by `seed`: a deliberately wrong control, for checking that the
    /// estimates stay exact whatever the network does.
    pub fn perturb_control(&mut self, scale: f64, seed: u64) -> Result<()> {
        let mut rng = StdRng::seed_from_u64(seed);
        for (name, var) in self.params.named() {
            if name == "log_delta" {
                continue;
            }
            let v: Vec<f32> = (0..var.elem_count())
                .map(|_| rand::Rng::random_range(&mut rng, -scale..scale) as f32)
                .collect();
            var.set(&Tensor::from_vec(v, var.dims(), &self.device)?)?;
        }
        Ok(())
    }

    /// Target gradient evaluations so far (pilots, training simulations and their moves).
    pub fn gradient_evaluations(&self) -> u64 {
        self.grad_evals
    }
    /// Gradient steps trained so far.
    pub fn trained_iterations(&self) -> usize {
        self.trained
    }
    /// Switches the CPU fast path of the control network on or off (on by default; off runs
    /// candle's operations, the reference the fast path is tested against).
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_path = on;
    }

    /// Whether the control network runs on the CPU fast path: on the CPU, unless switched off.
    fn uses_fast_path(&self) -> bool {
        self.fast_path && self.device.is_cpu()
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The control network's time features at the K + 1 grid times (normalised k/K).
    fn time_features(&self) -> Result<TimeFeatures> {
        let k = self.betas.len() - 1;
        let u: Vec<f64> = (0..=k).map(|i| i as f64 / k as f64).collect();
        let kappa = vec![1.0; (k + 1) * self.dim];
        self.net.time_features(&u, &kappa, &self.device)
    }

    /// Trains the control (and the Langevin steps) for `config.iterations` gradient steps on
    /// simulations of `config.batch` particles. `on_iter` sees every iteration. A loss that
    /// stays non-finite for 20 iterations is an error ([`DsbError::Diverged`]).
    pub fn train(
        &mut self,
        target: &dyn Target,
        rng: &mut impl rand::Rng,
        mut on_iter: impl FnMut(&SequentialIter),
    ) -> Result<()> {
        let cfg = self.config.clone();
        if cfg.iterations == 0 {
            return Ok(());
        }
        let mut opt = Optimiser::new(&self.params, cfg.lr, cfg.grad_clip, cfg.iterations, 0.0)?;
        let mut buffer: Vec<system::Transitions> = Vec::new();
        let (mut bad, mut newest) = (0usize, (f64::NAN, 0usize));
        // The loss on the CPU fast path, its networks' buffers kept across iterations.
        let mut fast = self.fast_segments()?;
        for it in 0..cfg.iterations {
            if it % cfg.refresh == 0 {
                let run = self.run(target, cfg.batch, rng, true)?;
                newest = (run.log_z, run.resamplings);
                let rec = run.transitions.expect("recorded");
                if buffer.len() == cfg.buffer {
                    buffer.remove(0);
                }
                buffer.push(rec);
            }
            let pick = if it % cfg.refresh == 0 {
                buffer.len() - 1
            } else {
                rand::Rng::random_range(rng, 0..buffer.len())
            };
            let mut ok = false;
            let value = if let Some(nets) = fast.as_mut() {
                match self.segment_loss_fast(&buffer[pick], nets)? {
                    Some((value, grads)) if value.is_finite() => {
                        ok = opt
                            .step_with_gradients(it, grads, &self.params)?
                            .is_finite();
                        value
                    }
                    Some((value, _)) => value,
                    None => f64::NAN,
                }
            } else {
                let loss = self.segment_loss(&buffer[pick])?;
                let value = match &loss {
                    Some(l) => l.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?,
                    None => f64::NAN,
                };
                if value.is_finite() {
                    let norm = opt.step(it, loss.as_ref().expect("finite"), &self.params)?;
                    ok = norm.is_finite();
                }
                value
            };
            bad = if ok { 0 } else { bad + 1 };
            if bad >= 20 {
                return Err(DsbError::Diverged {
                    iteration: it,
                    loss: value,
                    why: format!("loss {value} or its gradient not finite {bad} times in a row"),
                    advice: crate::error::SAMPLE_DIVERGENCE_ADVICE,
                });
            }
            self.trained += 1;
            on_iter(&SequentialIter {
                iteration: it,
                loss: value,
                log_z: newest.0,
                resamplings: newest.1,
            });
        }
        opt.finish(&self.params)?;
        Ok(())
    }

    /// Runs the particle system with `config.particles` particles: the weighted samples, log Ẑ
    /// with its standard error, and the counts of resamplings and moves.
    pub fn sample(
        &mut self,
        target: &dyn Target,
        rng: &mut impl rand::Rng,
    ) -> Result<SequentialRun> {
        let n = self.config.particles;
        let mut run = self.run(target, n, rng, false)?;
        run.samples = run.samples.in_original_coordinates(target);
        Ok(run)
    }
}

/// K + 1 temperatures in geometric progression from 10⁻⁴ (after β₀ = 0) to 1.
pub fn geometric_betas(k: usize) -> Vec<f64> {
    let mut b: Vec<f64> = (0..=k)
        .map(|i| {
            if i == 0 {
                0.0
            } else if k == 1 {
                1.0
            } else {
                1e-4f64.powf(1.0 - (i - 1) as f64 / (k - 1) as f64)
            }
        })
        .collect();
    b[k] = 1.0;
    b
}

/// Temperatures `temps` (0 = t₀ < … < t_L = 1, from an adaptive run) interpolated onto K steps:
/// β_k = the piecewise-linear interpolant of (i/L, t_i) at k/K, so the K steps follow the
/// adaptive run's spacing.
pub fn interpolate_betas(temps: &[f64], k: usize) -> Vec<f64> {
    let l = temps.len() - 1;
    if l == 0 {
        return geometric_betas(k);
    }
    let mut b: Vec<f64> = (0..=k)
        .map(|i| {
            let pos = i as f64 / k as f64 * l as f64;
            let j = (pos.floor() as usize).min(l - 1);
            let f = pos - j as f64;
            temps[j] + f * (temps[j + 1] - temps[j])
        })
        .collect();
    b[0] = 0.0;
    b[k] = 1.0;
    // Keep strictly increasing even where the adaptive run took tiny steps.
    for i in 1..=k {
        if b[i] <= b[i - 1] {
            b[i] = (b[i - 1] + 1e-12).min(1.0);
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_increase_from_zero_to_one() {
        for k in [1, 2, 7, 32] {
            let g = geometric_betas(k);
            assert_eq!((g[0], g[k]), (0.0, 1.0));
            assert!(g.windows(2).all(|w| w[1] > w[0]));
        }
        let b = interpolate_betas(&[0.0, 0.01, 0.1, 1.0], 6);
        assert_eq!(b.len(), 7);
        assert!((b[2] - 0.01).abs() < 1e-12 && (b[4] - 0.1).abs() < 1e-12);
        assert!(b.windows(2).all(|w| w[1] > w[0]));
        let short = interpolate_betas(&[0.0, 1.0], 4);
        assert!((short[2] - 0.5).abs() < 1e-12);
    }
}

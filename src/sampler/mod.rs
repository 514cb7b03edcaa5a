//! The diffusion sampler: a learned backward process from the prior to the target, and (after
//! IPF refinement) a learned forward process from the target to the prior.
//!
//! With a reference whose step-k kernel is N(a_k x, σ² n_k² I) ([`crate::process::Reference`]),
//! the backward step from x_{k+1} to x_k is
//!
//! x_k = a_k x_{k+1} + σ² c_k h_θ(t_{k+1}, x_{k+1}) + s_k ε_k,  ε_k ~ N(0, I),  s_k = σ n_k,
//!
//! for the OU reference (c_k = 2(1 − a_k)) the exponential integrator of the time reversal
//! dY = [−Y + 2σ² h] ds + √2σ dB, where h is the network's estimate of ∇log p_t(x) + x/σ² (zero
//! when the target is the prior itself, in which case the backward and forward kernels are exact
//! reversals of each other). The forward kernel is the reference's, N(a_k x_k, s_k² I), until
//! [`DiffusionSampler::enable_forward`] adds a learned forward drift f_φ:
//! N(a_k x_k + σ² c_k f_φ(t_k, x_k), s_k² I) (zero-initialised, so it starts as the reference).
//! The forward network does not see the target score: its kernel enters the reverse-KL
//! objective through states that depend on θ, and a stop-gradient score input there biases the
//! pathwise gradient (measured on the Gaussian bridge: the bridge's middle covariance drifted by
//! ~0.05 per IPF iteration with it, not without).
//! Every kernel is Gaussian, so each simulated path carries the log importance weight
//!
//! log w = log γ̃(x_0) + Σ_k log p(x_{k+1} | x_k) − log p(x_N) − Σ_k log q(x_k | x_{k+1}),
//!
//! accumulated in f64 ([`crate::estimate`]). It is an unbiased estimate of Z for any pair of
//! processes, learned or not. Noise ε is not clipped: clipping would make the path densities above
//! wrong.

mod checkpoint;
mod config;
mod output;
mod prior;
mod simulate;
mod simulate_fast;
mod simulate_forward;
mod simulate_parallel;

pub use checkpoint::{SavedSettings, settings_path};
pub use config::SamplerConfig;
pub use output::{Paths, SampleSet};
pub use prior::GaussianPrior;
pub(crate) use simulate_fast::half_sq_rows;
pub(crate) use simulate_parallel::StepData;

use crate::error::{DsbError, Result};
use crate::nn::{DriftNet, ParamStore, TimeFeatures};
use crate::process::{Kernels, Parametrisation, TimeGrid};
use crate::target::Target;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::StandardNormal;
use std::sync::atomic::{AtomicU64, Ordering};

/// A learned forward drift: its parameters and network.
#[derive(Debug)]
pub(crate) struct ForwardDrift {
    pub(crate) params: ParamStore,
    pub(crate) net: DriftNet,
}

/// A diffusion sampler for a target of a given dimension.
#[derive(Debug)]
pub struct DiffusionSampler {
    dim: usize,
    config: SamplerConfig,
    /// The forward and backward kernels (drift parametrisation, scale 1).
    kernels: Kernels,
    /// Reference scale per coordinate.
    scales: Vec<f64>,
    prior: GaussianPrior,
    /// Per step k (rows) and coordinate: σᵢ² c_k, `[N, dim]`.
    drift_coef: Tensor,
    /// Per step k (rows) and coordinate: s_k,i = σᵢ n_k, `[N, dim]`.
    noise_sd: Tensor,
    pub(crate) params: ParamStore,
    net: DriftNet,
    pub(crate) forward: Option<ForwardDrift>,
    /// IPF refinements this sampler has been through (saved with it).
    pub(crate) refinements: usize,
    device: Device,
    grad_evals: AtomicU64,
    /// Whether simulation may take the CPU fast path.
    fast_path: bool,
}

/// The generator of one draw of normals: a xoshiro256++ seeded from one word of `rng` (the
/// run's generator). Why not `rng` itself: the run's ChaCha12 costs about as much per normal
/// as the ziggurat that turns its words into normals, which made drawing the noise about a
/// tenth of a CPU training iteration (issue 13); xoshiro256++ is a standard generator for
/// simulation at a fraction of that cost. The run's generator advances by exactly one word per
/// draw, so `--seed` and a checkpoint's generator position still determine every draw (the
/// numbers differ from builds before this generator, checkpoints of those builds included).
pub(crate) fn normal_stream(rng: &mut impl rand::Rng) -> rand_xoshiro::Xoshiro256PlusPlus {
    rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(rng.next_u64())
}

/// Draws `rows × cols` standard normals as a tensor (seeded; candle's CPU generator is not),
/// from [`normal_stream`] in row-major order.
pub(crate) fn normal_tensor(
    rng: &mut impl rand::Rng,
    rows: usize,
    cols: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut stream = normal_stream(rng);
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| rand::Rng::sample::<f32, _>(&mut stream, StandardNormal))
        .collect();
    Ok(Tensor::from_vec(v, (rows, cols), device)?)
}

/// Replaces non-finite entries by zero and clips to ±`clip`.
pub(crate) fn clean_and_clip(t: &Tensor, clip: f64) -> Result<Tensor> {
    let finite = t.abs()?.lt(f64::INFINITY)?;
    let cleaned = finite.where_cond(t, &t.zeros_like()?)?;
    Ok(cleaned.clamp(-clip, clip)?)
}

impl DiffusionSampler {
    /// A new, untrained sampler (its network output starts at zero, so it first samples the
    /// prior), with weights drawn from a generator seeded by `seed`.
    pub fn new(dim: usize, config: SamplerConfig, seed: u64, device: &Device) -> Result<Self> {
        if dim == 0 {
            return Err(DsbError::InvalidInput("the target has dimension 0".into()));
        }
        let scales = config.checked_scales(dim)?;
        let prior = GaussianPrior::new(
            dim,
            &scales,
            config.prior_mean.as_deref(),
            config.prior_cov.as_deref(),
            device,
        )?;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_1417);
        let mut params = ParamStore::new();
        let net = DriftNet::new(
            "backward",
            true,
            dim,
            config.width,
            config.depth,
            config.output_clip,
            &scales,
            config.length_scale,
            &mut params,
            &mut rng,
            device,
        )?;
        let grid = TimeGrid::new(
            config.steps,
            config.horizon,
            config.schedule,
            config.first_time(dim),
        );
        let kernels = Kernels::new(config.reference, grid, Parametrisation::Drift);
        let table = |f: &dyn Fn(usize, f64) -> f64| -> Result<Tensor> {
            let v: Vec<f32> = (0..kernels.steps())
                .flat_map(|k| scales.iter().map(move |&s| (k, s)))
                .map(|(k, s)| f(k, s) as f32)
                .collect();
            Ok(Tensor::from_vec(v, (kernels.steps(), dim), device)?)
        };
        let drift_coef = table(&|k, s| kernels.backward(k).scaled(s, Parametrisation::Drift).net)?;
        let noise_sd = table(&|k, s| kernels.backward(k).scaled(s, Parametrisation::Drift).sd)?;
        Ok(Self {
            dim,
            config,
            kernels,
            scales,
            prior,
            drift_coef,
            noise_sd,
            params,
            net,
            forward: None,
            refinements: 0,
            device: device.clone(),
            grad_evals: AtomicU64::new(0),
            fast_path: true,
        })
    }

    /// Adds a learned forward drift (if there is none yet), zero-initialised so that the forward
    /// process is still the reference, with weights drawn from a generator seeded by `seed`.
    pub fn enable_forward(&mut self, seed: u64) -> Result<()> {
        if self.forward.is_some() {
            return Ok(());
        }
        let mut rng = StdRng::seed_from_u64(seed ^ 0xf0e_7a3d);
        let mut params = ParamStore::new();
        let net = DriftNet::new(
            "forward",
            false,
            self.dim,
            self.config.width,
            self.config.depth,
            self.config.output_clip,
            &self.scales,
            self.config.length_scale,
            &mut params,
            &mut rng,
            &self.device,
        )?;
        self.forward = Some(ForwardDrift { params, net });
        Ok(())
    }

    /// Whether the forward process is learned (the sampler has been refined by IPF).
    pub fn has_learned_forward(&self) -> bool {
        self.forward.is_some()
    }

    /// IPF refinements this sampler has been through (0 for the plain diffusion sampler).
    pub fn refinements(&self) -> usize {
        self.refinements
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }
    /// Dimension of the sample space.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// The device the network lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// The time grid.
    pub fn grid(&self) -> &TimeGrid {
        self.kernels.grid()
    }
    /// The prior at the start of the backward process.
    pub fn prior(&self) -> &GaussianPrior {
        &self.prior
    }
    /// Number of trainable parameters (both networks).
    pub fn parameter_count(&self) -> usize {
        self.params.count() + self.forward.as_ref().map_or(0, |f| f.params.count())
    }
    /// Target gradient evaluations (one per particle and step) made so far.
    pub fn gradient_evaluations(&self) -> u64 {
        self.grad_evals.load(Ordering::Relaxed)
    }

    /// Sets the count of [`Self::gradient_evaluations`] (a resumed run continues its count).
    pub(crate) fn set_gradient_evaluations(&self, n: u64) {
        self.grad_evals.store(n, Ordering::Relaxed);
    }

    fn check_target(&self, target: &dyn Target) -> Result<()> {
        crate::target::check_dimension(target, self.dim)
    }

    /// Adds `n` target gradient evaluations made on the sampler's behalf outside
    /// [`Self::score`] (the replay chains of training) to [`Self::gradient_evaluations`].
    pub(crate) fn count_gradient_evaluations(&self, n: u64) {
        self.grad_evals.fetch_add(n, Ordering::Relaxed);
    }

    /// The clipped, cleaned score at `x` (a stop-gradient input).
    pub(crate) fn score(&self, target: &dyn Target, x: &Tensor) -> Result<Tensor> {
        let g = target.grad_log_density(&x.detach())?;
        if g.dims() != x.dims() {
            return Err(DsbError::InvalidInput(format!(
                "target '{}': grad_log_density returned shape {:?} for input {:?}",
                target.name(),
                g.dims(),
                x.dims()
            )));
        }
        self.grad_evals
            .fetch_add(x.dim(0)? as u64, Ordering::Relaxed);
        clean_and_clip(&g, self.config.score_clip)
    }

    /// [`Self::score`] at the rows `x` (row-major) into `out`: by the target's host gradient
    /// ([`Target::grad_log_density_rows`]) with the same cleaning and clip on the host when it
    /// has one ([`Target::has_host_gradient`]), else by [`Self::score`] itself.
    pub(crate) fn score_rows(&self, target: &dyn Target, x: &[f32], out: &mut [f32]) -> Result<()> {
        if !target.has_host_gradient() {
            let t = Tensor::from_slice(x, (x.len() / self.dim, self.dim), &self.device)?;
            out.copy_from_slice(&self.score(target, &t)?.flatten_all()?.to_vec1::<f32>()?);
            return Ok(());
        }
        target.grad_log_density_rows(x, out)?;
        self.grad_evals
            .fetch_add((x.len() / self.dim) as u64, Ordering::Relaxed);
        let clip = self.config.score_clip as f32;
        for g in out.iter_mut() {
            *g = if g.is_finite() {
                g.clamp(-clip, clip)
            } else {
                0.0
            };
        }
        Ok(())
    }

    /// Log density of the target at `x` as a tensor `[batch]`, checked for shape.
    pub(crate) fn target_log_density(&self, target: &dyn Target, x: &Tensor) -> Result<Tensor> {
        let lp = target.log_density(x)?;
        if lp.dims() != [x.dim(0)?] {
            return Err(DsbError::InvalidInput(format!(
                "target '{}': log_density returned shape {:?} for input {:?}; it must return one value per row",
                target.name(),
                lp.dims(),
                x.dims()
            )));
        }
        Ok(lp)
    }

    /// Time features of a network at the times `times` (normalised by T), with the score
    /// envelope κ(t) = 1/(1 + ν_t²/ℓ²) per coordinate.
    fn time_features_at(&self, net: &DriftNet, times: &[f64]) -> Result<TimeFeatures> {
        let horizon = self.kernels.grid().horizon();
        let u: Vec<f64> = times.iter().map(|t| t / horizon).collect();
        let l2 = self.config.length_scale * self.config.length_scale;
        let kappa: Vec<f64> = times
            .iter()
            .flat_map(|&t| self.scales.iter().map(move |&s| (t, s)))
            .map(|(t, s)| 1.0 / (1.0 + self.kernels.reference().noise_var_at(t, s) / l2))
            .collect();
        net.time_features(&u, &kappa, &self.device)
    }

    /// Time features of the backward network at t_{k+1}, k = 0..N−1.
    pub(crate) fn step_time_features(&self) -> Result<TimeFeatures> {
        self.time_features_at(&self.net, &self.kernels.grid().times()[1..])
    }

    /// Time features of the forward network at t_k, k = 0..N−1 (`None` without one).
    pub(crate) fn forward_time_features(&self) -> Result<Option<TimeFeatures>> {
        let n = self.kernels.steps();
        self.forward
            .as_ref()
            .map(|f| self.time_features_at(&f.net, &self.kernels.grid().times()[..n]))
            .transpose()
    }

    /// Coefficients of step k: a_k, and per coordinate σ²c_k and s_k,i, each `[1, dim]`.
    pub(crate) fn step_coefficients(&self, k: usize) -> Result<(f64, Tensor, Tensor)> {
        Ok((
            self.kernels.backward(k).state,
            self.drift_coef.narrow(0, k, 1)?,
            self.noise_sd.narrow(0, k, 1)?,
        ))
    }

    /// All steps' coefficients at once: a `[N, 1, 1]`, σ²c and s `[N, 1, dim]`.
    pub(crate) fn all_step_coefficients(&self) -> Result<(Tensor, Tensor, Tensor)> {
        let n = self.kernels.steps();
        let a: Vec<f32> = self.decays();
        Ok((
            Tensor::from_vec(a, (n, 1, 1), &self.device)?,
            self.drift_coef.unsqueeze(1)?,
            self.noise_sd.unsqueeze(1)?,
        ))
    }

    /// The backward drift network.
    pub(crate) fn backward_net(&self) -> &DriftNet {
        &self.net
    }

    /// a_k per step, as f32.
    fn decays(&self) -> Vec<f32> {
        (0..self.kernels.steps())
            .map(|k| self.kernels.backward(k).state as f32)
            .collect()
    }

    /// Host copies of the step coefficients: a_k `[N]`, σ²c_k and s_k `[N·dim]` row-major.
    pub(crate) fn host_step_coefficients(&self) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        Ok((
            self.decays(),
            self.drift_coef.flatten_all()?.to_vec1::<f32>()?,
            self.noise_sd.flatten_all()?.to_vec1::<f32>()?,
        ))
    }

    /// The backward network output h at states `x` sharing the time features `tf`.
    pub(crate) fn drift_output(
        &self,
        x: &Tensor,
        score: &Tensor,
        tf: &TimeFeatures,
    ) -> Result<Tensor> {
        self.net.forward(x, score, tf)
    }

    /// The forward network output f at states `x` (zero without a learned forward). The forward
    /// network does not see the score.
    pub(crate) fn forward_output(&self, x: &Tensor, tf: &TimeFeatures) -> Result<Tensor> {
        match &self.forward {
            // The score argument is unused by a network built without score input.
            Some(f) => f.net.forward(x, x, tf),
            None => Ok(x.zeros_like()?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::Estimates;
    use crate::target::CorrelatedGaussian;
    use nalgebra::DMatrix;

    /// The untrained sampler's weights are exact importance weights, on-policy and exploring:
    /// on N(0, I) left unnormalised (log Z = log 2π), log Ẑ must match within 4 standard errors.
    #[test]
    fn weights_are_unbiased_on_policy_and_exploring() {
        let target = CorrelatedGaussian::new(vec![0.0, 0.0], DMatrix::identity(2, 2)).unwrap();
        let cfg = SamplerConfig {
            sigma: 1.3,
            steps: 8,
            width: 8,
            depth: 1,
            ..Default::default()
        };
        let sampler = DiffusionSampler::new(2, cfg, 0, &Device::Cpu).unwrap();
        let mut rng = StdRng::seed_from_u64(9);
        assert_log_z_unbiased(&sampler, &target, &mut rng, &[1.0, 1.5]);
    }

    /// log Ẑ from 40 000 paths per exploration factor is within 4 standard errors (+10⁻³) of
    /// log 2π, the log Z of an unnormalised unit-covariance 2-D Gaussian.
    fn assert_log_z_unbiased(
        sampler: &DiffusionSampler,
        target: &CorrelatedGaussian,
        rng: &mut impl rand::Rng,
        explores: &[f64],
    ) {
        for &explore in explores {
            let paths = sampler
                .simulate_exploring(target, 40_000, rng, false, explore)
                .unwrap();
            let e = Estimates::from_log_weights(&paths.log_w);
            let truth = (2.0 * std::f64::consts::PI).ln();
            assert!(
                (e.log_z - truth).abs() < 4.0 * e.log_z_stderr + 1e-3,
                "explore {explore}: log Z-hat {} ± {} vs {truth}",
                e.log_z,
                e.log_z_stderr
            );
        }
    }

    /// With a learned forward drift (here random weights, so far from the reference) the weights
    /// stay exact importance weights: log Ẑ within 4 standard errors of the truth, on-policy,
    /// exploring and with a general Gaussian prior. A forward kernel whose density were
    /// mis-normalised or evaluated off its own mean would shift log Ẑ by many standard errors.
    #[test]
    fn weights_are_unbiased_with_a_learned_forward() {
        use rand::Rng;
        let target = CorrelatedGaussian::new(vec![0.5, -0.5], DMatrix::identity(2, 2)).unwrap();
        let full = Some(vec![1.5, 0.3, 0.3, 0.8]);
        for (prior_mean, prior_cov) in [
            (None, None),
            (Some(vec![0.2, 0.1]), None),
            (Some(vec![0.2, 0.1]), full),
        ] {
            let cfg = SamplerConfig {
                sigma: 1.2,
                steps: 6,
                width: 8,
                depth: 1,
                prior_mean,
                prior_cov,
                ..Default::default()
            };
            let mut sampler = DiffusionSampler::new(2, cfg, 0, &Device::Cpu).unwrap();
            sampler.enable_forward(1).unwrap();
            let mut rng = StdRng::seed_from_u64(4);
            for (_, v) in sampler.forward.as_ref().unwrap().params.named() {
                let n = v.elem_count();
                let vals: Vec<f32> = (0..n).map(|_| rng.random_range(-0.3..0.3)).collect();
                v.set(&Tensor::from_vec(vals, v.dims(), &Device::Cpu).unwrap())
                    .unwrap();
            }
            assert_log_z_unbiased(&sampler, &target, &mut rng, &[1.0, 1.3]);
        }
    }
}

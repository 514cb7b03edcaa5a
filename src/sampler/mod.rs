//! The diffusion sampler: a learned backward process from the prior N(0, σ²I) to the target.
//!
//! With the OU reference of [`crate::process`], the backward step from x_{k+1} to x_k is
//!
//! x_k = a_k x_{k+1} + 2σ²(1 − a_k) h_θ(t_{k+1}, x_{k+1}) + s_k ε_k,  ε_k ~ N(0, I),
//!
//! the exponential integrator of the time reversal dY = [−Y + 2σ² h] ds + √2σ dB, where h is the
//! network's estimate of ∇log p_t(x) + x/σ² (zero when the target is the prior itself, in which case
//! the backward and forward kernels are exact reversals of each other). Every kernel is Gaussian, so
//! each simulated path carries the log importance weight
//!
//! log w = log γ̃(x_0) + Σ_k log p(x_{k+1} | x_k) − log p(x_N) − Σ_k log q(x_k | x_{k+1}),
//!
//! accumulated in f64 ([`crate::estimate`]). Noise ε is not clipped: clipping would make the path
//! densities above wrong.

mod checkpoint;
mod config;
mod output;

pub use checkpoint::{SavedSettings, settings_path};
pub use config::SamplerConfig;
pub use output::{Paths, SampleSet};

use crate::error::{DsbError, Result};
use crate::estimate::Estimates;
use crate::nn::{DriftNet, ParamStore, TimeFeatures};
use crate::process::{OuReference, TimeGrid};
use crate::target::Target;
use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use std::sync::atomic::{AtomicU64, Ordering};

/// A diffusion sampler for a target of a given dimension.
#[derive(Debug)]
pub struct DiffusionSampler {
    dim: usize,
    config: SamplerConfig,
    grid: TimeGrid,
    reference: OuReference,
    /// Prior scale per coordinate.
    scales: Vec<f64>,
    /// Per step k (rows) and coordinate: 2σᵢ²(1 − a_k), `[N, dim]`.
    drift_coef: Tensor,
    /// Per step k (rows) and coordinate: s_k,i = σᵢ√(1 − a_k²), `[N, dim]`.
    noise_sd: Tensor,
    pub(crate) params: ParamStore,
    net: DriftNet,
    device: Device,
    grad_evals: AtomicU64,
}

/// Draws `rows × cols` standard normals as a tensor (seeded; candle's CPU generator is not).
pub(crate) fn normal_tensor(
    rng: &mut StdRng,
    rows: usize,
    cols: usize,
    device: &Device,
) -> Result<Tensor> {
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
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
        config.validate()?;
        if dim == 0 {
            return Err(DsbError::InvalidInput("the target has dimension 0".into()));
        }
        let scales = config.scales(dim);
        if scales.len() != dim {
            return Err(DsbError::InvalidInput(format!(
                "--sigma has {} per-coordinate scales but the target has dimension {dim}; give one value or {dim}",
                scales.len()
            )));
        }
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_1417);
        let mut params = ParamStore::new();
        let net = DriftNet::new(
            "backward",
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
        let reference = OuReference::new(&grid);
        let table = |f: &dyn Fn(usize, f64) -> f64| -> Result<Tensor> {
            let v: Vec<f32> = (0..grid.steps())
                .flat_map(|k| scales.iter().map(move |&s| (k, s)))
                .map(|(k, s)| f(k, s) as f32)
                .collect();
            Ok(Tensor::from_vec(v, (grid.steps(), dim), device)?)
        };
        let drift_coef = table(&|k, s| 2.0 * s * s * (1.0 - reference.decay[k]))?;
        let noise_sd = table(&|k, s| s * reference.noise[k])?;
        Ok(Self {
            dim,
            config,
            grid,
            reference,
            scales,
            drift_coef,
            noise_sd,
            params,
            net,
            device: device.clone(),
            grad_evals: AtomicU64::new(0),
        })
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
        &self.grid
    }
    /// Number of trainable parameters.
    pub fn parameter_count(&self) -> usize {
        self.params.count()
    }
    /// Target gradient evaluations (one per particle and step) made so far.
    pub fn gradient_evaluations(&self) -> u64 {
        self.grad_evals.load(Ordering::Relaxed)
    }

    fn check_target(&self, target: &dyn Target) -> Result<()> {
        if target.dim() != self.dim {
            return Err(DsbError::InvalidInput(format!(
                "target '{}' has dimension {} but the sampler was built for dimension {}",
                target.name(),
                target.dim(),
                self.dim
            )));
        }
        Ok(())
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

    /// Time features of the network at t_{k+1}, k = 0..N−1.
    pub(crate) fn step_time_features(&self) -> Result<TimeFeatures> {
        let t = self.grid.times();
        let u: Vec<f64> = (0..self.grid.steps())
            .map(|k| t[k + 1] / self.grid.horizon())
            .collect();
        let l2 = self.config.length_scale * self.config.length_scale;
        let kappa: Vec<f64> = (0..self.grid.steps())
            .flat_map(|k| self.scales.iter().map(move |&s| (k, s)))
            .map(|(k, s)| 1.0 / (1.0 + OuReference::marginal_noise_var(t[k + 1], s) / l2))
            .collect();
        self.net.time_features(&u, &kappa, &self.device)
    }

    /// Coefficients of step k: a_k, and per coordinate 2σᵢ²(1 − a_k) and s_k,i, each `[1, dim]`.
    pub(crate) fn step_coefficients(&self, k: usize) -> Result<(f64, Tensor, Tensor)> {
        Ok((
            self.reference.decay[k],
            self.drift_coef.narrow(0, k, 1)?,
            self.noise_sd.narrow(0, k, 1)?,
        ))
    }

    /// Backward step k from x = x_{k+1} with network output `h` and standardised noise `noise`:
    /// returns x_k = a_k x + 2σ²(1 − a_k) h + s_k ⊙ noise and the forward kernel's standardised
    /// residual (x_{k+1} − a_k x_k)/s_k, whose half squared norm is −log p(x_{k+1} | x_k) up to
    /// its constant.
    fn backward_step(
        &self,
        k: usize,
        x: &Tensor,
        h: &Tensor,
        noise: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (a, c, s) = self.step_coefficients(k)?;
        let x_new = (((x * a)? + h.broadcast_mul(&c)?)? + noise.broadcast_mul(&s)?)?;
        let fwd = (x - (&x_new * a)?)?.broadcast_div(&s)?;
        Ok((x_new, fwd))
    }

    /// All steps' coefficients at once: a `[N, 1, 1]`, 2σ²(1 − a) and s `[N, 1, dim]`.
    pub(crate) fn all_step_coefficients(&self) -> Result<(Tensor, Tensor, Tensor)> {
        let n = self.grid.steps();
        let a: Vec<f32> = self.reference.decay.iter().map(|&v| v as f32).collect();
        Ok((
            Tensor::from_vec(a, (n, 1, 1), &self.device)?,
            self.drift_coef.unsqueeze(1)?,
            self.noise_sd.unsqueeze(1)?,
        ))
    }

    /// `batch` draws from the prior N(0, diag(σᵢ²)).
    fn prior_draw(&self, rng: &mut StdRng, batch: usize) -> Result<Tensor> {
        let sig = Tensor::from_vec(
            self.scales.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            (1, self.dim),
            &self.device,
        )?;
        Ok(normal_tensor(rng, batch, self.dim, &self.device)?.broadcast_mul(&sig)?)
    }

    /// The network output h at states `x` sharing the time features `tf`.
    pub(crate) fn drift_output(
        &self,
        x: &Tensor,
        score: &Tensor,
        tf: &TimeFeatures,
    ) -> Result<Tensor> {
        self.net.forward(x, score, tf)
    }

    /// −log p(x_N) for the prior N(0, diag(σᵢ²)) split as (c, qᵢ): the normalising constant
    /// c = Σ ½ log(2πσᵢ²) and, per row, the quadratic part qᵢ = Σ x²/(2σᵢ²), in f64. The prior
    /// widened by λ then has −log p_λ(x) = c + q/λ² + d log λ.
    fn neg_log_prior_parts(&self, x: &Tensor) -> Result<(f64, Vec<f64>)> {
        let c: f64 = self
            .scales
            .iter()
            .map(|s| 0.5 * (2.0 * std::f64::consts::PI * s * s).ln())
            .sum();
        let x = x.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let q = x
            .iter()
            .map(|r| {
                r.iter()
                    .zip(&self.scales)
                    .map(|(v, s)| v * v / (2.0 * s * s))
                    .sum::<f64>()
            })
            .collect();
        Ok((c, q))
    }

    /// Simulates `batch` backward paths from the prior, detached from any gradient graph.
    /// With `keep_path` every state and score is kept (for the log-variance loss).
    pub fn simulate(
        &self,
        target: &dyn Target,
        batch: usize,
        rng: &mut StdRng,
        keep_path: bool,
    ) -> Result<Paths> {
        self.simulate_exploring(target, batch, rng, keep_path, 1.0)
    }

    /// Like [`DiffusionSampler::simulate`], but the prior draw and every step's noise are scaled by
    /// `explore` ≥ 1: the paths come from a wider proposal Q_λ than the sampler Q_θ. The returned
    /// `log_w` are the correct importance weights dP/dQ_λ of those paths (so the estimates stay
    /// valid), and `loss_constant`/`noise_energy` describe log dP/dQ_θ, which the log-variance loss
    /// needs (its minimum, zero variance at Q_θ = P, holds under any path measure).
    pub fn simulate_exploring(
        &self,
        target: &dyn Target,
        batch: usize,
        rng: &mut StdRng,
        keep_path: bool,
        explore: f64,
    ) -> Result<Paths> {
        self.check_target(target)?;
        if !(explore >= 1.0 && explore.is_finite()) {
            return Err(DsbError::InvalidInput(format!(
                "--explore must be at least 1, got {explore}"
            )));
        }
        let n = self.grid.steps();
        let d = self.dim as f64;
        let tf_all = self.step_time_features()?;
        let tf_all = TimeFeatures {
            embedding: tf_all.embedding.detach(),
            coefficient: tf_all.coefficient.detach(),
        };
        let x_start = (self.prior_draw(rng, batch)? * explore)?;
        // log dP/dQ_θ starts with −log p(x_N); log dP/dQ_λ with −log p_λ(x_N), p_λ = N(0, λ²σ²).
        let (prior_c, prior_q) = self.neg_log_prior_parts(&x_start)?;
        let log_lambda = explore.ln();
        let mut x = x_start;
        let mut fwd_sum = Tensor::zeros(batch, DType::F64, &self.device)?;
        let mut eps_sum = Tensor::zeros(batch, DType::F64, &self.device)?;
        let mut states = Vec::with_capacity(if keep_path { n + 1 } else { 1 });
        let mut scores = Vec::with_capacity(if keep_path { n } else { 0 });
        for k in (0..n).rev() {
            let g = self.score(target, &x)?;
            let h = self.drift_output(&x, &g, &tf_all.row(k)?)?.detach();
            let eps = normal_tensor(rng, batch, self.dim, &self.device)?;
            let noise = if explore == 1.0 {
                eps.clone()
            } else {
                (&eps * explore)?
            };
            let (x_new, fwd) = self.backward_step(k, &x, &h, &noise)?;
            fwd_sum = (fwd_sum + (fwd.sqr()?.sum(1)? * 0.5)?.to_dtype(DType::F64)?)?;
            eps_sum = (eps_sum + (eps.sqr()?.sum(1)? * 0.5)?.to_dtype(DType::F64)?)?;
            if keep_path {
                states.push(x.clone());
                scores.push(g);
            }
            x = x_new;
        }
        let lp = self
            .target_log_density(target, &x)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let (fwd_sum, eps_sum) = (fwd_sum.to_vec1::<f64>()?, eps_sum.to_vec1::<f64>()?);
        let finite_or_neg_inf = |v: f64| if v.is_finite() { v } else { f64::NEG_INFINITY };
        let mut log_w = Vec::with_capacity(batch);
        let mut loss_constant = Vec::with_capacity(batch);
        let mut noise_energy = Vec::with_capacity(batch);
        for i in 0..batch {
            // Under Q_θ the standardised residual is λε; under Q_λ it is ε, and each of Q_λ's N
            // step kernels carries a factor λ^{−d} (the prior's factor is in `explore_prior`).
            let energy_nominal = explore * explore * eps_sum[i];
            let common = lp[i] - fwd_sum[i];
            let explore_prior = prior_c + prior_q[i] / (explore * explore) + d * log_lambda;
            log_w.push(finite_or_neg_inf(
                common + explore_prior + eps_sum[i] + n as f64 * d * log_lambda,
            ));
            loss_constant.push(finite_or_neg_inf(common + prior_c + prior_q[i]));
            noise_energy.push(energy_nominal);
        }
        states.push(x);
        states.reverse();
        scores.reverse();
        Ok(Paths {
            states,
            scores,
            log_w,
            loss_constant,
            noise_energy,
        })
    }

    /// Simulates `batch` paths keeping the gradient graph through every state (for the reverse-KL
    /// loss). Returns the per-path log weights as a differentiable f64 tensor and, for rows whose
    /// target density was non-finite, a mask of zeros.
    pub(crate) fn simulate_differentiable(
        &self,
        target: &dyn Target,
        batch: usize,
        rng: &mut StdRng,
    ) -> Result<(Tensor, Tensor)> {
        self.check_target(target)?;
        let n = self.grid.steps();
        let tf_all = self.step_time_features()?;
        let mut x = self.prior_draw(rng, batch)?;
        let (prior_c, prior_q) = self.neg_log_prior_parts(&x)?;
        let prior: Vec<f64> = prior_q.iter().map(|q| prior_c + q).collect();
        let prior = Tensor::from_vec(prior, batch, &self.device)?;
        let mut acc = Tensor::zeros(batch, DType::F32, &self.device)?;
        for k in (0..n).rev() {
            let g = self.score(target, &x)?;
            let h = self.drift_output(&x, &g, &tf_all.row(k)?)?;
            let eps = normal_tensor(rng, batch, self.dim, &self.device)?;
            let (x_new, fwd) = self.backward_step(k, &x, &h, &eps)?;
            let term = ((eps.sqr()?.sum(1)? - fwd.sqr()?.sum(1)?)? * 0.5)?;
            acc = (acc + term)?;
            x = x_new;
        }
        let lp = self.target_log_density(target, &x)?;
        let mask = lp.abs()?.lt(f64::INFINITY)?;
        let lp = mask.where_cond(&lp, &lp.zeros_like()?)?;
        let log_w = ((lp + acc)?.to_dtype(DType::F64)? + prior)?;
        Ok((log_w, mask.to_dtype(DType::F64)?))
    }

    /// Draws `n` samples in batches of at most `chunk`, with their importance weights and the
    /// estimates log Ẑ, ELBO and ESS over all of them.
    pub fn sample(
        &self,
        target: &dyn Target,
        n: usize,
        chunk: usize,
        rng: &mut StdRng,
    ) -> Result<SampleSet> {
        self.sample_with_progress(target, n, chunk, rng, |_| {})
    }

    /// [`DiffusionSampler::sample`], calling `progress` with the number of samples drawn so far
    /// after each chunk.
    pub fn sample_with_progress(
        &self,
        target: &dyn Target,
        n: usize,
        chunk: usize,
        rng: &mut StdRng,
        mut progress: impl FnMut(usize),
    ) -> Result<SampleSet> {
        let chunk = chunk.max(1);
        let mut samples = Vec::with_capacity(n * self.dim);
        let mut log_w = Vec::with_capacity(n);
        let mut done = 0;
        while done < n {
            let b = chunk.min(n - done);
            let paths = self.simulate(target, b, rng, false)?;
            samples.extend(paths.x0().flatten_all()?.to_vec1::<f32>()?);
            log_w.extend(paths.log_w);
            done += b;
            progress(done);
        }
        let estimates = Estimates::from_log_weights(&log_w);
        Ok(SampleSet {
            dim: self.dim,
            samples,
            log_w,
            estimates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        for explore in [1.0, 1.5] {
            let paths = sampler
                .simulate_exploring(&target, 40_000, &mut rng, false, explore)
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
}

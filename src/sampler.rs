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

use crate::error::{DsbError, Result};
use crate::estimate::Estimates;
use crate::nn::{DriftNet, ParamStore, TimeFeatures};
use crate::process::{OuReference, Schedule, TimeGrid};
use crate::target::Target;
use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Settings of a sampler: the process and the network. Saved beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// Prior scale σ: the backward process starts at N(0, σ²I).
    pub sigma: f64,
    /// One prior scale per coordinate, overriding `sigma` when set: the prior is then
    /// N(0, diag(σᵢ²)) and the OU reference acts on each coordinate with its own scale.
    #[serde(default)]
    pub prior_scales: Option<Vec<f64>>,
    /// Number of time steps N.
    pub steps: usize,
    /// Horizon T of the OU reference (in units of its relaxation time).
    pub horizon: f64,
    /// How the steps are spread over [0, T].
    pub schedule: Schedule,
    /// Hidden units per layer.
    pub width: usize,
    /// Hidden layers of the state network.
    pub depth: usize,
    /// Length scale ℓ of the target's finest structure (e.g. the width of its modes). The score
    /// term of the drift is weighted by κ(t) = 1/(1 + ν_t²/ℓ²), ν_t² = σ²(1 − e^{−2t}) being the
    /// forward noise variance at time t: the exact weight for a Gaussian bump of width ℓ.
    #[serde(default = "default_length_scale")]
    pub length_scale: f64,
    /// Elementwise clip of the score ∇log γ̃ fed to the network.
    pub score_clip: f64,
    /// Elementwise clip of the network output h.
    pub output_clip: f64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            sigma: 1.0,
            prior_scales: None,
            steps: 64,
            horizon: 5.0,
            schedule: Schedule::Geometric,
            width: 64,
            depth: 2,
            length_scale: 1.0,
            score_clip: 1e2,
            output_clip: 1e4,
        }
    }
}

fn default_length_scale() -> f64 {
    1.0
}

impl SamplerConfig {
    /// The prior scale of each of `dim` coordinates.
    pub fn scales(&self, dim: usize) -> Vec<f64> {
        self.prior_scales
            .clone()
            .unwrap_or_else(|| vec![self.sigma; dim])
    }

    /// t_1 of the geometric schedule: the time at which the forward noise σ√(1 − e^{−2t}) of the
    /// widest coordinate reaches a tenth of the length scale ℓ (the first step's noise is ≤ 0.1ℓ).
    pub fn first_time(&self, dim: usize) -> f64 {
        let widest = self.scales(dim).into_iter().fold(0.0, f64::max);
        let r = (0.1 * self.length_scale / widest).min(0.99);
        -0.5 * (1.0 - r * r).ln()
    }

    /// Checks that the settings can be used.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DsbError::InvalidInput(m));
        if !(self.sigma > 0.0 && self.sigma.is_finite()) {
            return bad(format!(
                "--sigma must be positive and finite, got {}",
                self.sigma
            ));
        }
        if let Some(v) = self
            .prior_scales
            .as_ref()
            .filter(|v| v.iter().any(|s| !(*s > 0.0 && s.is_finite())))
        {
            return bad(format!(
                "--sigma: every per-coordinate scale must be positive and finite, got {v:?}"
            ));
        }
        if self.steps == 0 {
            return bad("--steps must be at least 1".into());
        }
        if !(self.horizon > 0.0 && self.horizon.is_finite()) {
            return bad(format!(
                "--horizon must be positive and finite, got {}",
                self.horizon
            ));
        }
        if !(self.length_scale > 0.0 && self.length_scale.is_finite()) {
            return bad(format!(
                "--length-scale must be positive, got {}",
                self.length_scale
            ));
        }
        if self.width == 0 || self.depth == 0 {
            return bad("--width and --depth must be at least 1".into());
        }
        if !(self.score_clip > 0.0 && self.output_clip > 0.0) {
            return bad("clips must be positive".into());
        }
        Ok(())
    }
}

/// What is saved next to the weights: enough to rebuild the sampler and check it fits the target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSettings {
    /// File format version.
    pub format: u32,
    /// Name of the target it was trained on.
    pub target: String,
    /// Dimension of that target.
    pub dim: usize,
    /// The sampler's settings.
    pub config: SamplerConfig,
}

/// Simulated backward paths with their log weights.
#[derive(Debug)]
pub struct Paths {
    /// `states[k]` = x_k, `[batch, dim]`, for k = 0..=N (only x_0 unless the path was kept).
    pub states: Vec<Tensor>,
    /// `scores[k]` = the clipped score at x_{k+1}, for k = 0..N−1 (empty unless kept).
    pub scores: Vec<Tensor>,
    /// Log importance weight of each path (−∞ where the target density was not finite).
    pub log_w: Vec<f64>,
    /// The part of log dP/dQ_θ that does not depend on the backward network (−∞ where the
    /// target density was not finite).
    pub loss_constant: Vec<f64>,
    /// Σ_k ½|ε_k(θ)|² of each path, ε_k(θ) the standardised residual of step k under Q_θ: the
    /// part of log dP/dQ_θ that does depend on the backward network.
    pub noise_energy: Vec<f64>,
}

impl Paths {
    /// The final states x_0.
    pub fn x0(&self) -> &Tensor {
        &self.states[0]
    }
}

/// Samples drawn from a trained sampler, with their weights and estimates.
#[derive(Debug, Clone)]
pub struct SampleSet {
    /// Dimension.
    pub dim: usize,
    /// Samples, row-major `[n, dim]`.
    pub samples: Vec<f32>,
    /// Log importance weights, one per sample.
    pub log_w: Vec<f64>,
    /// log Ẑ, ELBO and ESS of these samples.
    pub estimates: Estimates,
}

impl SampleSet {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.log_w.len()
    }
    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.log_w.is_empty()
    }
    /// Sample `i` as a slice.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.samples[i * self.dim..(i + 1) * self.dim]
    }
    /// `m` samples drawn by systematic resampling in proportion to the importance weights: an
    /// (approximately) unweighted sample of the target.
    pub fn resampled(&self, m: usize, rng: &mut impl Rng) -> SampleSet {
        let idx = crate::estimate::systematic_resample(&self.log_w, m, rng);
        let samples = idx
            .iter()
            .flat_map(|&i| self.row(i).iter().copied())
            .collect();
        let log_w = vec![self.estimates.log_z; m];
        SampleSet {
            dim: self.dim,
            samples,
            log_w,
            estimates: self.estimates,
        }
    }
}

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

    /// −log p(x_N) for the prior N(0, diag(σᵢ²)), per row, in f64.
    fn neg_log_prior(&self, x: &Tensor) -> Result<Vec<f64>> {
        let c: f64 = self
            .scales
            .iter()
            .map(|s| 0.5 * (2.0 * std::f64::consts::PI * s * s).ln())
            .sum();
        let x = x.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        Ok(x.iter()
            .map(|r| {
                c + r
                    .iter()
                    .zip(&self.scales)
                    .map(|(v, s)| v * v / (2.0 * s * s))
                    .sum::<f64>()
            })
            .collect())
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
        let nominal_prior = self.neg_log_prior(&x_start)?;
        let explore_prior = self.neg_log_prior(&(&x_start / explore)?)?;
        let log_lambda = explore.ln();
        let mut x = x_start;
        let mut fwd_sum = Tensor::zeros(batch, DType::F64, &self.device)?;
        let mut eps_sum = Tensor::zeros(batch, DType::F64, &self.device)?;
        let mut states = Vec::with_capacity(if keep_path { n + 1 } else { 1 });
        let mut scores = Vec::with_capacity(if keep_path { n } else { 0 });
        for k in (0..n).rev() {
            let g = self.score(target, &x)?;
            let h = self.drift_output(&x, &g, &tf_all.row(k)?)?.detach();
            let (a, c, s) = self.step_coefficients(k)?;
            let eps = normal_tensor(rng, batch, self.dim, &self.device)?;
            let x_new =
                (((&x * a)? + h.broadcast_mul(&c)?)? + (eps.broadcast_mul(&s)? * explore)?)?;
            let fwd = (&x - (&x_new * a)?)?.broadcast_div(&s)?;
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
            // Under Q_θ the standardised residual is λε; under Q_λ it is ε, with a Jacobian λ^d
            // per step.
            let energy_nominal = explore * explore * eps_sum[i];
            let common = lp[i] - fwd_sum[i];
            log_w.push(finite_or_neg_inf(
                common + explore_prior[i] + eps_sum[i] + n as f64 * d * log_lambda,
            ));
            loss_constant.push(finite_or_neg_inf(common + nominal_prior[i]));
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
        let prior = Tensor::from_vec(self.neg_log_prior(&x)?, batch, &self.device)?;
        let mut acc = Tensor::zeros(batch, DType::F32, &self.device)?;
        for k in (0..n).rev() {
            let g = self.score(target, &x)?;
            let h = self.drift_output(&x, &g, &tf_all.row(k)?)?;
            let (a, c, s) = self.step_coefficients(k)?;
            let eps = normal_tensor(rng, batch, self.dim, &self.device)?;
            let x_new = (((&x * a)? + h.broadcast_mul(&c)?)? + eps.broadcast_mul(&s)?)?;
            let fwd = (&x - (&x_new * a)?)?.broadcast_div(&s)?;
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
        }
        let estimates = Estimates::from_log_weights(&log_w);
        Ok(SampleSet {
            dim: self.dim,
            samples,
            log_w,
            estimates,
        })
    }

    /// Saves the weights to `path` (safetensors) and the settings to `path` with extension
    /// `.json`, both written atomically.
    pub fn save(&self, path: &Path, target_name: &str) -> Result<()> {
        let settings = SavedSettings {
            format: 1,
            target: target_name.into(),
            dim: self.dim,
            config: self.config.clone(),
        };
        let json = serde_json::to_string_pretty(&settings).expect("settings serialise");
        self.params.save(path)?;
        crate::io::atomic_write(&settings_path(path), json.as_bytes())
    }

    /// Loads a sampler saved by [`DiffusionSampler::save`]. Returns it with the settings file's
    /// contents (so the caller can check the target name).
    pub fn load(path: &Path, device: &Device) -> Result<(Self, SavedSettings)> {
        let sp = settings_path(path);
        let text = std::fs::read_to_string(&sp).map_err(|e| {
            DsbError::bad_file(&sp, format!("cannot read the settings saved beside the weights ({e}); `--save FILE` writes FILE and FILE's .json"))
        })?;
        let settings: SavedSettings = serde_json::from_str(&text).map_err(|e| {
            DsbError::bad_file(&sp, format!("not a dsb sampler settings file ({e})"))
        })?;
        if settings.format != 1 {
            return Err(DsbError::bad_file(
                &sp,
                format!("unsupported format version {}", settings.format),
            ));
        }
        let sampler = Self::new(settings.dim, settings.config.clone(), 0, device)?;
        sampler.params.load(path)?;
        Ok((sampler, settings))
    }
}

/// The settings file that belongs to a weights file: same path, extension `.json`.
pub fn settings_path(weights: &Path) -> std::path::PathBuf {
    weights.with_extension("json")
}

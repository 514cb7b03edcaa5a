//! Simulating backward paths with their importance weights, detached or differentiable.

use super::{DiffusionSampler, Paths, SampleSet};
use crate::error::{DsbError, Result};
use crate::estimate::Estimates;
use crate::nn::TimeFeatures;
use crate::target::Target;
use candle_core::{DType, Tensor};

/// ½|r|² per row, in f64.
fn half_sq_norm(r: &Tensor) -> Result<Tensor> {
    Ok((r.sqr()?.sum(1)? * 0.5)?.to_dtype(DType::F64)?)
}

pub(super) fn detach(tf: &TimeFeatures) -> TimeFeatures {
    TimeFeatures {
        embedding: tf.embedding.detach(),
        coefficient: tf.coefficient.detach(),
    }
}

/// An error unless the exploration factor λ is at least 1 (and finite).
pub(super) fn check_explore(explore: f64) -> Result<()> {
    if !(explore >= 1.0 && explore.is_finite()) {
        return Err(DsbError::InvalidInput(format!(
            "--explore must be at least 1, got {explore}"
        )));
    }
    Ok(())
}

/// The log weights log dP/dQ_λ of paths from an exploring proposal, and the two parts of
/// log dP/dQ_θ the log-variance loss needs (`loss_constant`, `noise_energy`), from each path's
/// target log density `lp`, Σ of the forward kernels' ½|residual|² `fwd_sum`, Σ ½|ε|² `eps_sum`
/// and the prior's −log density parts.
pub(super) fn path_weights(
    lp: &[f64],
    fwd_sum: &[f64],
    eps_sum: &[f64],
    (prior_c, prior_q): (f64, &[f64]),
    explore: f64,
    n: usize,
    d: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let batch = lp.len();
    let log_lambda = explore.ln();
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
    (log_w, loss_constant, noise_energy)
}

impl DiffusionSampler {
    /// Backward step k from x = x_{k+1} with network output `h` and standardised noise `noise`:
    /// x_k = a_k x + σ²c_k h + s_k ⊙ noise.
    fn backward_step(&self, k: usize, x: &Tensor, h: &Tensor, noise: &Tensor) -> Result<Tensor> {
        let (a, c, s) = self.step_coefficients(k)?;
        Ok((((x * a)? + h.broadcast_mul(&c)?)? + noise.broadcast_mul(&s)?)?)
    }

    /// The forward kernel's standardised residual of step k, (x_{k+1} − F(k, x_k))/s_k, whose half
    /// squared norm is −log p(x_{k+1} | x_k) up to its constant. `tf_fwd` (forward time features)
    /// is given with a learned forward drift.
    fn forward_residual(
        &self,
        k: usize,
        x_k: &Tensor,
        x_next: &Tensor,
        tf_fwd: Option<&TimeFeatures>,
    ) -> Result<Tensor> {
        let (_, _, s) = self.step_coefficients(k)?;
        let mean = self.forward_mean(k, x_k, tf_fwd)?;
        Ok((x_next - mean)?.broadcast_div(&s)?)
    }

    /// The forward kernel's mean of step k at x_k: a_k x_k, plus σ²c_k f(x_k, t_k) when a learned
    /// forward drift is given by its time features `tf_fwd`.
    fn forward_mean(
        &self,
        k: usize,
        x_k: &Tensor,
        tf_fwd: Option<&TimeFeatures>,
    ) -> Result<Tensor> {
        let (a, c, _) = self.step_coefficients(k)?;
        let mut mean = (x_k * a)?;
        if let Some(tf) = tf_fwd {
            let f = self.forward_output(x_k, &tf.row(k)?)?;
            mean = (mean + f.broadcast_mul(&c)?)?;
        }
        Ok(mean)
    }

    /// Simulates `batch` backward paths from the prior, detached from any gradient graph.
    /// With `keep_path` every state and score is kept (for the log-variance loss and IPF).
    pub fn simulate(
        &self,
        target: &dyn Target,
        batch: usize,
        rng: &mut impl rand::Rng,
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
        rng: &mut impl rand::Rng,
        keep_path: bool,
        explore: f64,
    ) -> Result<Paths> {
        self.check_target(target)?;
        check_explore(explore)?;
        if self.uses_fast_path() {
            return self.simulate_fast(target, batch, rng, keep_path, explore);
        }
        let n = self.grid().steps();
        let d = self.dim as f64;
        let tf_all = detach(&self.step_time_features()?);
        let tf_fwd = self.forward_time_features()?.map(|t| detach(&t));
        let x_start = self.prior.draw(rng, batch, explore)?;
        // log dP/dQ_θ starts with −log p(x_N); log dP/dQ_λ with −log p_λ(x_N), p_λ = N(m, λ²Σ).
        let (prior_c, prior_q) = self.prior.neg_log_parts(&x_start)?;
        let mut x = x_start;
        let mut prev: Option<Tensor> = None;
        let mut fwd_sum = Tensor::zeros(batch, DType::F64, &self.device)?;
        let mut eps_sum = Tensor::zeros(batch, DType::F64, &self.device)?;
        let mut states = Vec::with_capacity(if keep_path { n + 1 } else { 1 });
        let mut scores = Vec::with_capacity(if keep_path { n } else { 0 });
        for k in (0..n).rev() {
            let g = self.score(target, &x)?;
            if let (Some(tf), Some(x_next)) = (&tf_fwd, &prev) {
                // The learned forward kernel of step k + 1 (x_{k+1} → x_{k+2}).
                let r = self.forward_residual(k + 1, &x, x_next, Some(tf))?;
                fwd_sum = (fwd_sum + half_sq_norm(&r)?)?;
            }
            let h = self.drift_output(&x, &g, &tf_all.row(k)?)?.detach();
            let eps = super::normal_tensor(rng, batch, self.dim, &self.device)?;
            let noise = if explore == 1.0 {
                eps.clone()
            } else {
                (&eps * explore)?
            };
            let x_new = self.backward_step(k, &x, &h, &noise)?;
            if tf_fwd.is_none() {
                let r = self.forward_residual(k, &x_new, &x, None)?;
                fwd_sum = (fwd_sum + half_sq_norm(&r)?)?;
            }
            eps_sum = (eps_sum + half_sq_norm(&eps)?)?;
            if keep_path {
                states.push(x.clone());
                scores.push(g);
            }
            prev = Some(x);
            x = x_new;
        }
        if let Some(tf) = &tf_fwd {
            let x1 = prev.as_ref().expect("at least one step");
            let r = self.forward_residual(0, &x, x1, Some(tf))?;
            fwd_sum = (fwd_sum + half_sq_norm(&r)?)?;
        }
        let lp = self
            .target_log_density(target, &x)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let (fwd_sum, eps_sum) = (fwd_sum.to_vec1::<f64>()?, eps_sum.to_vec1::<f64>()?);
        let weights = path_weights(&lp, &fwd_sum, &eps_sum, (prior_c, &prior_q), explore, n, d);
        states.push(x);
        Ok(Paths::from_backward(states, scores, weights))
    }

    /// Noising paths started at the given states `x0` `[m, dim]`: each runs the forward process
    /// (the reference, or the learned forward drift after IPF) from x_0 to x_N, keeping every
    /// state and the clipped score at x_1..x_N, so that the log-variance loss can evaluate
    /// log dP/dQ_θ on them. Started at (approximate) target draws they are paths of P itself:
    /// the loss then weighs the paths where Q_θ puts too little mass, which on-policy paths
    /// rarely visit. `log_w` is left empty (these paths are not draws of Q_θ and give no
    /// estimate) and `noise_energy` is not computed.
    pub(crate) fn simulate_noising(
        &self,
        target: &dyn Target,
        x0: &Tensor,
        rng: &mut impl rand::Rng,
    ) -> Result<Paths> {
        self.check_target(target)?;
        let n = self.grid().steps();
        let m = x0.dim(0)?;
        let tf_fwd = self.forward_time_features()?.map(|t| detach(&t));
        let mut x = x0.detach();
        let lp = self
            .target_log_density(target, &x)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let mut fwd_sum = Tensor::zeros(m, DType::F64, &self.device)?;
        let mut states = Vec::with_capacity(n + 1);
        let mut scores = Vec::with_capacity(n);
        states.push(x.clone());
        for k in 0..n {
            let (_, _, s) = self.step_coefficients(k)?;
            let mean = self.forward_mean(k, &x, tf_fwd.as_ref())?.detach();
            let z = super::normal_tensor(rng, m, self.dim, &self.device)?;
            fwd_sum = (fwd_sum + half_sq_norm(&z)?)?;
            x = (mean + z.broadcast_mul(&s)?)?;
            scores.push(self.score(target, &x)?);
            states.push(x.clone());
        }
        let (prior_c, prior_q) = self.prior.neg_log_parts(&x)?;
        let fwd_sum = fwd_sum.to_vec1::<f64>()?;
        let loss_constant = (0..m)
            .map(|i| {
                let v = lp[i] - fwd_sum[i] + prior_c + prior_q[i];
                if v.is_finite() { v } else { f64::NEG_INFINITY }
            })
            .collect();
        Ok(Paths {
            states,
            scores,
            log_w: Vec::new(),
            loss_constant,
            noise_energy: vec![f64::NAN; m],
        })
    }

    /// Simulates `batch` paths keeping the gradient graph through every state (for the reverse-KL
    /// loss). Returns the per-path log weights as a differentiable f64 tensor and, for rows whose
    /// target density was non-finite, a mask of zeros. A learned forward drift is evaluated in
    /// the graph (its own parameters are not trained here, but the states it sees are).
    pub(crate) fn simulate_differentiable(
        &self,
        target: &dyn Target,
        batch: usize,
        rng: &mut impl rand::Rng,
    ) -> Result<(Tensor, Tensor)> {
        self.check_target(target)?;
        let n = self.grid().steps();
        let tf_all = self.step_time_features()?;
        let tf_fwd = self.forward_time_features()?.map(|t| detach(&t));
        let mut x = self.prior.draw(rng, batch, 1.0)?;
        let (prior_c, prior_q) = self.prior.neg_log_parts(&x)?;
        let prior: Vec<f64> = prior_q.iter().map(|q| prior_c + q).collect();
        let prior = Tensor::from_vec(prior, batch, &self.device)?;
        let mut acc = Tensor::zeros(batch, DType::F32, &self.device)?;
        let mut prev: Option<Tensor> = None;
        let half_sq = |r: &Tensor| -> Result<Tensor> { Ok((r.sqr()?.sum(1)? * 0.5)?) };
        for k in (0..n).rev() {
            let g = self.score(target, &x)?;
            if let (Some(tf), Some(x_next)) = (&tf_fwd, &prev) {
                let r = self.forward_residual(k + 1, &x, x_next, Some(tf))?;
                acc = (acc - half_sq(&r)?)?;
            }
            let h = self.drift_output(&x, &g, &tf_all.row(k)?)?;
            let eps = super::normal_tensor(rng, batch, self.dim, &self.device)?;
            let x_new = self.backward_step(k, &x, &h, &eps)?;
            if tf_fwd.is_none() {
                let r = self.forward_residual(k, &x_new, &x, None)?;
                acc = (acc - half_sq(&r)?)?;
            }
            acc = (acc + half_sq(&eps)?)?;
            prev = Some(x);
            x = x_new;
        }
        if let Some(tf) = &tf_fwd {
            let x1 = prev.as_ref().expect("at least one step");
            let r = self.forward_residual(0, &x, x1, Some(tf))?;
            acc = (acc - half_sq(&r)?)?;
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
        rng: &mut impl rand::Rng,
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
        rng: &mut impl rand::Rng,
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
        }
        .in_original_coordinates(target))
    }
}

//! The CPU fast path of path simulation: the drift network through [`FastDrift`] and the step
//! updates and path densities in plain loops over host buffers; only the target (its score and
//! final log density) is called through candle, once per step for the whole batch. Used by
//! [`DiffusionSampler::simulate_exploring`] on the CPU for a sampler without a learned forward
//! drift; it draws the same random numbers in the same order as the candle path and gives its
//! results to f32 rounding (tested).

use super::simulate::{detach, path_weights};
use super::simulate_parallel::StepData;
use super::{DiffusionSampler, Paths};
use crate::error::Result;
use crate::nn::FastDrift;
use crate::target::Target;
use candle_core::{DType, Tensor};
use rand_distr::StandardNormal;

/// ½|v|² of each row of `v` (rows of length `d`), summed in f32 per row as candle does.
pub(crate) fn half_sq_rows(v: &[f32], d: usize) -> impl Iterator<Item = f32> + '_ {
    v.chunks_exact(d)
        .map(|row| row.iter().map(|x| x * x).sum::<f32>() * 0.5)
}

/// The step coefficients of one step on the host: a_k, and σ²c_k and s_k per coordinate.
pub(crate) type HostStep<'a> = (f32, &'a [f32], &'a [f32]);

/// Backward step k on host buffers (rows of length `ck.len()`): draws the standard normals
/// into `eps` (in the order of `normal_tensor`), writes x_new = a_k x + σ²c_k h + s_k λε and the
/// reference forward kernel's standardised residual (x − a_k x_new)/s_k into `resid`. The
/// candle path's operations in the same order, so the same numbers.
pub(crate) fn host_backward_step(
    rng: &mut impl rand::Rng,
    step: HostStep<'_>,
    x: &[f32],
    h: &[f32],
    explore: f32,
    (eps, x_new, resid): (&mut [f32], &mut [f32], &mut [f32]),
) {
    draw_normals(rng, eps);
    step_update(step, (x, h, eps), explore, (x_new, resid));
}

/// Standard normals into `v`, in order: the numbers of [`super::normal_tensor`].
pub(crate) fn draw_normals(rng: &mut impl rand::Rng, v: &mut [f32]) {
    let mut stream = super::normal_stream(rng);
    for e in v.iter_mut() {
        *e = rand::Rng::sample::<f32, _>(&mut stream, StandardNormal);
    }
}

/// The arithmetic of [`host_backward_step`] on normals drawn beforehand.
pub(crate) fn step_update(
    (ak, ck, sk): HostStep<'_>,
    (x, h, eps): (&[f32], &[f32], &[f32]),
    explore: f32,
    (x_new, resid): (&mut [f32], &mut [f32]),
) {
    // Whole rows at a time, against the coefficients repeated over 16 rows (they vectorise).
    let (ct, st) = (crate::nn::tiled(ck), crate::nn::tiled(sk));
    let len = ct.len();
    let rows = x.chunks(len).zip(h.chunks(len)).zip(eps.chunks(len));
    let outs = x_new.chunks_mut(len).zip(resid.chunks_mut(len));
    for (((xr, hr), er), (nr, rr)) in rows.zip(outs) {
        let values = xr
            .iter()
            .zip(hr)
            .zip(er)
            .zip(nr.iter_mut().zip(rr.iter_mut()));
        for ((((&xv, &hv), &ev), (n, r)), (&c, &s)) in values.zip(ct.iter().zip(&st)) {
            let noise = if explore == 1.0 { ev } else { ev * explore };
            let xn = (xv * ak + hv * c) + noise * s;
            *n = xn;
            *r = (xv - xn * ak) / s;
        }
    }
}

impl DiffusionSampler {
    /// Whether simulation takes the CPU fast path: on the CPU, unless switched off
    /// ([`DiffusionSampler::set_fast_path`]). A learned forward drift (after IPF) runs on it too
    /// ([`super::simulate_forward::HostForward`]).
    pub(crate) fn uses_fast_path(&self) -> bool {
        self.fast_path && self.device.is_cpu()
    }

    /// Switches the CPU fast path of simulation on or off (on by default; off runs candle's
    /// operations, the reference the fast path is tested against).
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_path = on;
    }

    /// Whether the CPU fast path is switched on (it is taken only on the CPU).
    pub fn fast_path(&self) -> bool {
        self.fast_path
    }

    /// Simulates `batch` paths keeping every state and score, on the CPU fast path, with the
    /// network evaluated by `fast` (whose weights must be the sampler's current ones): `fast`
    /// then holds the activations of every step's rows in the order of the log-variance loss
    /// (step k's batch at rows k·batch..), so the loss need not evaluate the network again
    /// ([`crate::train::log_variance_loss_fast`] with `forward_done`).
    pub(crate) fn simulate_for_training(
        &self,
        target: &dyn Target,
        batch: usize,
        rng: &mut impl rand::Rng,
        explore: f64,
        fast: &mut FastDrift,
    ) -> Result<Paths> {
        self.check_target(target)?;
        super::simulate::check_explore(explore)?;
        let n = self.grid().steps();
        let d = self.dim;
        let bd = batch * d;
        let (emb, coef) = self.host_time_features()?;
        let (a, c, s) = self.host_step_coefficients()?;
        let data = StepData {
            embedding: &emb,
            coefficient: &coef,
            steps: (&a, &c, &s),
            explore,
        };
        let mut host = self.simulate_host(target, batch, rng, fast, data)?;
        if let Some(mut fw) = self.host_forward(batch)? {
            for k in 0..n {
                let (x_k, rest) = host.xs[k * bd..].split_at(bd);
                let step = data.step(k, d);
                let r = &mut host.rs[k * bd..(k + 1) * bd];
                fw.residual(k, step, (x_k, &rest[..bd]), r);
            }
        }
        // The path sums in the order of the sequential loop (k = N − 1 down to 0).
        let (mut fwd_sum, mut eps_sum) = (vec![0.0f64; batch], vec![0.0f64; batch]);
        for k in (0..n).rev() {
            let block = k * bd..(k + 1) * bd;
            for (acc, v) in fwd_sum
                .iter_mut()
                .zip(half_sq_rows(&host.rs[block.clone()], d))
            {
                *acc += f64::from(v);
            }
            for (acc, v) in eps_sum.iter_mut().zip(half_sq_rows(&host.eps[block], d)) {
                *acc += f64::from(v);
            }
        }
        // One tensor each for the states and the scores, and a view of it per step (one
        // allocation and copy, not one per step); last step first, as `Paths::from_backward`
        // takes them.
        let xs = Tensor::from_slice(&host.xs, ((n + 1) * batch, d), &self.device)?;
        let gs = Tensor::from_slice(&host.scores, (n * batch, d), &self.device)?;
        let states = (0..=n)
            .rev()
            .map(|k| xs.narrow(0, k * batch, batch))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let scores = (0..n)
            .rev()
            .map(|k| gs.narrow(0, k * batch, batch))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let x0 = states.last().expect("N + 1 states");
        let prior = (host.prior.0, &host.prior.1[..]);
        let weights = self.fast_path_weights(target, x0, (&fwd_sum, &eps_sum), prior, explore)?;
        host.give_back(fast);
        Ok(Paths::from_backward(states, scores, weights))
    }

    /// The detached time features of every step on the host: embedding `[N, width]` and
    /// coefficient `[N, dim]`, flattened.
    fn host_time_features(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        detach(&self.step_time_features()?).to_host()
    }

    /// [`path_weights`] of fast-path paths ending at `x0`, from their per-row sums of ½|r|² and
    /// ½|ε|² and the prior's parts at their starts.
    fn fast_path_weights(
        &self,
        target: &dyn Target,
        x0: &Tensor,
        (fwd_sum, eps_sum): (&[f64], &[f64]),
        prior: (f64, &[f64]),
        explore: f64,
    ) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        let lp = self
            .target_log_density(target, x0)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let (n, d) = (self.grid().steps(), self.dim as f64);
        Ok(path_weights(&lp, fwd_sum, eps_sum, prior, explore, n, d))
    }

    /// [`DiffusionSampler::simulate_exploring`] on the CPU fast path, one step's batch at a
    /// time on one thread (no activations kept).
    pub(super) fn simulate_fast(
        &self,
        target: &dyn Target,
        batch: usize,
        rng: &mut impl rand::Rng,
        keep_path: bool,
        explore: f64,
    ) -> Result<Paths> {
        let n = self.grid().steps();
        let d = self.dim;
        let (emb, coef) = self.host_time_features()?;
        let mut fast = FastDrift::new(&self.net)?;
        fast.prepare(batch, 1);
        let mut forward = self.host_forward(batch)?;
        let (a, c, s) = self.host_step_coefficients()?;
        let x_start = self.prior.draw(rng, batch, explore)?;
        let (prior_c, prior_q) = self.prior.neg_log_parts(&x_start)?;
        let mut x = x_start.flatten_all()?.to_vec1::<f32>()?;
        let mut x_new = vec![0.0f32; batch * d];
        let mut eps = vec![0.0f32; batch * d];
        let mut resid = vec![0.0f32; batch * d];
        let (mut fwd_sum, mut eps_sum) = (vec![0.0f64; batch], vec![0.0f64; batch]);
        let mut states = Vec::with_capacity(if keep_path { n + 1 } else { 1 });
        let mut scores = Vec::with_capacity(if keep_path { n } else { 0 });
        let explore32 = explore as f32;
        let mut gh = vec![0.0f32; batch * d];
        for k in (0..n).rev() {
            self.score_rows(target, &x, &mut gh)?;
            let h = fast.forward_at(k, &x, &gh, (&emb, &coef));
            let step = (a[k], &c[k * d..(k + 1) * d], &s[k * d..(k + 1) * d]);
            let out = (&mut eps[..], &mut x_new[..], &mut resid[..]);
            host_backward_step(rng, step, &x, h, explore32, out);
            if let Some(fw) = forward.as_mut() {
                fw.residual(k, step, (&x_new, &x), &mut resid);
            }
            for (acc, v) in fwd_sum.iter_mut().zip(half_sq_rows(&resid, d)) {
                *acc += f64::from(v);
            }
            for (acc, v) in eps_sum.iter_mut().zip(half_sq_rows(&eps, d)) {
                *acc += f64::from(v);
            }
            if keep_path {
                states.push(Tensor::from_slice(&x, (batch, d), &self.device)?);
                scores.push(Tensor::from_slice(&gh, (batch, d), &self.device)?);
            }
            std::mem::swap(&mut x, &mut x_new);
        }
        let x0 = Tensor::from_slice(&x, (batch, d), &self.device)?;
        let prior = (prior_c, &prior_q[..]);
        let weights = self.fast_path_weights(target, &x0, (&fwd_sum, &eps_sum), prior, explore)?;
        states.push(x0);
        Ok(Paths::from_backward(states, scores, weights))
    }
}

#[cfg(test)]
#[path = "simulate_fast_tests.rs"]
mod tests;

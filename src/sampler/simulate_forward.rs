//! A learned forward drift f_φ (after IPF) on the CPU fast path: the forward kernels'
//! residuals of simulated paths, step by step (`HostForward::residual`, in the simulations of
//! `simulate_fast.rs`) or over a whole path at once with the input gradients the reverse KL's
//! adjoint needs (`residuals_of_path`, `input_gradients`, in `train/kl_fast.rs`).

use super::DiffusionSampler;
use super::simulate::detach;
use super::simulate_fast::HostStep;
use super::simulate_parallel::StepData;
use crate::error::Result;
use crate::nn::FastDrift;

/// A learned forward drift f_φ (IPF) on the fast path: its per-row layers, prepared for one
/// step's batch, and the host time features of its steps (times t_0..t_{N−1}).
pub(crate) struct HostForward {
    fast: FastDrift,
    embedding: Vec<f32>,
    coefficient: Vec<f32>,
}

impl HostForward {
    /// Overwrites `resid` with the learned forward kernel's standardised residual of step k,
    /// (x_{k+1} − (a_k x_k + σ²c_k f_φ(t_k, x_k)))/s_k, at the batch's states `x_k` and `x_next`
    /// (candle's operations in the same order).
    pub(crate) fn residual(
        &mut self,
        k: usize,
        step: HostStep<'_>,
        (x_k, x_next): (&[f32], &[f32]),
        resid: &mut [f32],
    ) {
        let times = (&self.embedding[..], &self.coefficient[..]);
        let f = self.fast.forward_at(k, x_k, &[], times);
        forward_residual(step, (x_k, x_next), f, resid);
    }

    /// The residuals of every step of paths `xs` (blocks x_0..x_N of `batch` rows) into `rs`
    /// (blocks r_0..r_{N−1}), from one pass of f_φ over all N·batch rows, whose activations are
    /// kept for [`HostForward::input_gradients`].
    pub(crate) fn residuals_of_path(
        &mut self,
        steps: &StepData<'_>,
        xs: &[f32],
        rs: &mut [f32],
        n: usize,
    ) {
        let bd = rs.len() / n;
        let d = steps.steps.1.len() / n;
        let (e, c) = (&self.embedding, &self.coefficient);
        let f = self.fast.forward(&xs[..n * bd], &[], e, c, n);
        for k in 0..n {
            let block = k * bd..(k + 1) * bd;
            let (x_k, x_next) = (&xs[block.clone()], &xs[(k + 1) * bd..(k + 2) * bd]);
            let r = &mut rs[block.clone()];
            forward_residual(steps.step(k, d), (x_k, x_next), &f[block], r);
        }
    }

    /// J_f(x)ᵀ v for every row of the last [`HostForward::residuals_of_path`] pass (the gradient
    /// of Σ v ⊙ f_φ with respect to the states), into `dx`.
    pub(crate) fn input_gradients(&mut self, v: &[f32], dx: &mut [f32]) {
        self.fast.begin_backward();
        self.fast.backward_block(0, v, Some(dx));
    }
}

/// (x_{k+1} − (a_k x_k + σ²c_k f))/s_k into `resid`, for one step's rows.
fn forward_residual(
    (ak, ck, sk): HostStep<'_>,
    (x_k, x_next): (&[f32], &[f32]),
    f: &[f32],
    resid: &mut [f32],
) {
    let d = ck.len();
    let rows = x_k.chunks_exact(d).zip(x_next.chunks_exact(d));
    for (((xr, nr), fr), rr) in rows.zip(f.chunks_exact(d)).zip(resid.chunks_exact_mut(d)) {
        for j in 0..d {
            let mean = xr[j] * ak + fr[j] * ck[j];
            rr[j] = (nr[j] - mean) / sk[j];
        }
    }
}

impl DiffusionSampler {
    /// The learned forward drift on the fast path (`None` without one).
    pub(crate) fn host_forward(&self, batch: usize) -> Result<Option<HostForward>> {
        let (Some(fw), Some(tf)) = (&self.forward, self.forward_time_features()?) else {
            return Ok(None);
        };
        let mut fast = FastDrift::new(&fw.net)?;
        fast.prepare(batch, 1);
        let (embedding, coefficient) = detach(&tf).to_host()?;
        Ok(Some(HostForward {
            fast,
            embedding,
            coefficient,
        }))
    }
}

//! The reverse-KL loss on the CPU fast path: the paths are simulated with the drift network in
//! a [`FastDrift`] that keeps every step's activations, and the gradient is carried back
//! through the path by hand (the adjoint of the simulation), one step's block of rows at a time.
//! The same loss and gradients as [`super::reverse_kl_loss`] through candle's autograd, to f32
//! rounding (tested).
//!
//! With x_k = a_k x_{k+1} + σ²c_k h(x_{k+1}) + s_k ε_k, the forward residual
//! r_k = (x_{k+1} − a_k x_k)/s_k and log w = log γ̃(x_0) − Σ_k ½|r_k|² + Σ_k ½|ε_k|² + const,
//! the loss L = −mean log w has, with w = −1/count per usable path,
//! ∂L/∂x_0 = w ∇log γ̃(x_0) + w a_0 r_0/s_0, and going up the path, with λ_k = ∂L/∂x_k complete:
//! ∂L/∂h_k = σ²c_k λ_k, and
//! λ_{k+1} = a_k λ_k + J_h(x_{k+1})ᵀ ∂L/∂h_k − w r_k/s_k + w a_{k+1} r_{k+1}/s_{k+1}
//! (the last term only for k + 1 < N; the score input of h is a stop-gradient).
//!
//! With a learned forward drift f (IPF), r_k = (x_{k+1} − a_k x_k − σ²c_k f(x_k))/s_k, and
//! ∂L/∂x_k gains G_k = J_f(x_k)ᵀ (w σ²c_k r_k/s_k), which does not depend on λ: one backward pass
//! of f over all rows gives every G_k, added to λ_0 and to λ_{k+1} in the recursion.

use super::loss::FastLoss;
use crate::error::Result;
use crate::nn::{FastDrift, StepAdjoint, split_point};
use crate::sampler::DiffusionSampler;
use crate::sampler::{StepData, half_sq_rows};
use crate::target::Target;
use candle_core::{DType, Tensor};

/// Reverse-KL loss E_Q[−log w] on `batch` fresh paths and the gradients of every parameter,
/// on the CPU fast path (see the module). Returns `None` for the loss when no path's target
/// density was finite, and the reported log weights (−∞ for those paths).
pub fn reverse_kl_loss_fast(
    sampler: &DiffusionSampler,
    target: &dyn Target,
    batch: usize,
    rng: &mut impl rand::Rng,
    fast: &mut FastDrift,
) -> Result<FastLoss> {
    crate::target::check_dimension(target, sampler.dim())?;
    let n = sampler.grid().steps();
    let d = sampler.dim();
    let bd = batch * d;
    let dev = sampler.device().clone();
    let tf = sampler.step_time_features()?;
    let (emb, coef) = tf.to_host()?;
    let net = sampler.backward_net();
    fast.refresh(net)?;
    let (a, c, s) = sampler.host_step_coefficients()?;
    let data = StepData {
        embedding: &emb,
        coefficient: &coef,
        steps: (&a, &c, &s),
        explore: 1.0,
    };
    // xs holds x_0..x_N (block k = x_k), rs the residuals r_0..r_{N−1}, eps the normals.
    let mut paths = sampler.simulate_host(target, batch, rng, fast, data)?;
    // With a learned forward drift, its kernels' residuals (one pass over all rows, kept for
    // the gradient below).
    let mut forward = sampler.host_forward(batch)?;
    if let Some(fw) = forward.as_mut() {
        fw.residuals_of_path(&data, &paths.xs, &mut paths.rs, n);
    }
    let (xs, eps, rs) = (&paths.xs, &paths.eps, &paths.rs);
    let (prior_c, prior_q) = (paths.prior.0, &paths.prior.1);
    let mut acc = vec![0.0f32; batch];
    for k in (0..n).rev() {
        let block = k * bd..(k + 1) * bd;
        let terms = half_sq_rows(&rs[block.clone()], d).zip(half_sq_rows(&eps[block], d));
        for (v, (hr, he)) in acc.iter_mut().zip(terms) {
            *v = (*v - hr) + he;
        }
    }
    let x0 = Tensor::from_slice(&xs[..bd], (batch, d), &dev)?;
    let lp = sampler
        .target_log_density(target, &x0)?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    let mask: Vec<bool> = lp.iter().map(|v| v.is_finite()).collect();
    let count = mask.iter().filter(|&&m| m).count();
    let reported: Vec<f64> = (0..batch)
        .map(|i| {
            if mask[i] {
                f64::from(lp[i] + acc[i]) + prior_c + prior_q[i]
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect();
    if count == 0 {
        paths.give_back(fast);
        return Ok((None, reported));
    }
    let loss = -reported
        .iter()
        .zip(&mask)
        .filter(|(_, m)| **m)
        .map(|(v, _)| v)
        .sum::<f64>()
        / count as f64;
    let w: Vec<f32> = mask
        .iter()
        .map(|&m| if m { -1.0 / count as f32 } else { 0.0 })
        .collect();
    // λ_0 = w ∇log γ̃(x_0) + w a_0 r_0 / s_0.
    let grad_lp = target
        .grad_log_density(&x0)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut lambda = fast.take_buffer(bd); // λ_k of the current block
    let rows = lambda.chunks_exact_mut(d).zip(grad_lp.chunks_exact(d));
    for (((lr, gr), rr), (&m, &wr)) in rows.zip(rs.chunks_exact(d)).zip(mask.iter().zip(&w)) {
        for j in 0..d {
            let glp = if m { gr[j] } else { 0.0 };
            lr[j] = wr * glp + wr * a[0] * rr[j] / s[j];
        }
    }
    // Through a learned forward drift: G_k = J_f(x_k)ᵀ (w σ²c_k r_k/s_k), f's part of ∂L/∂x_k
    // (it does not depend on λ, so one backward pass of f over all rows gives every step's).
    let through_forward = match forward.as_mut() {
        Some(fw) => {
            let mut v = fast.take_buffer(n * bd);
            for (k, vk) in v.chunks_exact_mut(bd).enumerate() {
                let (ck, sk) = (&c[k * d..(k + 1) * d], &s[k * d..(k + 1) * d]);
                let rows = vk.chunks_exact_mut(d).zip(rs[k * bd..].chunks_exact(d));
                for ((vr, rr), &wr) in rows.zip(&w) {
                    for j in 0..d {
                        vr[j] = wr * ck[j] * rr[j] / sk[j];
                    }
                }
            }
            let mut g = fast.take_buffer(n * bd);
            fw.input_gradients(&v, &mut g);
            fast.give_buffer(v);
            for (l, gv) in lambda.iter_mut().zip(&g[..bd]) {
                *l += gv;
            }
            Some(g)
        }
        None => None,
    };
    fast.begin_backward();
    let split = split_point(batch);
    let (l0, l1) = lambda.split_at_mut(split * d);
    let adjoint = |lambda, rows| Adjoint {
        lambda,
        rows,
        batch,
        n,
        d,
        rs,
        through_forward: through_forward.as_deref(),
        w: &w,
        coefficients: (&a, &c, &s),
    };
    let halves = (adjoint(l0, 0..split), adjoint(l1, split..batch));
    fast.backward_steps(batch, halves, true);
    let grads = fast.finish_backward();
    paths.give_back(fast);
    fast.give_buffer(lambda);
    if let Some(g) = through_forward {
        fast.give_buffer(g);
    }
    let store = FastDrift::all_gradients(net, &tf, &grads)?;
    Ok((Some((loss, store)), reported))
}

/// The adjoint recursion of the module doc for one half of the batch's rows (`rows`): λ of
/// those rows (`lambda`, from step 0 on), the residuals of all rows, the path weights w, and
/// the step coefficients (a, σ²c, s).
struct Adjoint<'a> {
    lambda: &'a mut [f32],
    rows: std::ops::Range<usize>,
    batch: usize,
    n: usize,
    d: usize,
    rs: &'a [f32],
    /// G_k of every row and step, with a learned forward drift.
    through_forward: Option<&'a [f32]>,
    w: &'a [f32],
    coefficients: (&'a [f32], &'a [f32], &'a [f32]),
}

impl StepAdjoint for Adjoint<'_> {
    /// ∂L/∂h_k = σ²c_k λ_k.
    fn dh(&mut self, k: usize, dh: &mut [f32]) {
        let d = self.d;
        // Whole rows against the coefficients repeated over 16 rows (they vectorise).
        let ck = crate::nn::tiled(&self.coefficients.1[k * d..(k + 1) * d]);
        for (hc, lc) in dh.chunks_mut(ck.len()).zip(self.lambda.chunks(ck.len())) {
            for ((h, &l), &c) in hc.iter_mut().zip(lc).zip(&ck) {
                *h = l * c;
            }
        }
    }

    /// λ_{k+1} = a_k λ_k + J_hᵀ ∂L/∂h_k − w r_k/s_k + w a_{k+1} r_{k+1}/s_{k+1} (+ G_{k+1}).
    fn dx(&mut self, k: usize, dx: &[f32]) {
        let (d, bd) = (self.d, self.batch * self.d);
        if k + 1 == self.n {
            return;
        }
        let (a, _, s) = self.coefficients;
        let (sk, sk1) = (&s[k * d..(k + 1) * d], &s[(k + 1) * d..(k + 2) * d]);
        let (lo, hi) = (self.rows.start * d, self.rows.end * d);
        let rk = &self.rs[k * bd + lo..k * bd + hi];
        let rk1 = &self.rs[(k + 1) * bd + lo..(k + 1) * bd + hi];
        // Whole rows against the coefficients' reciprocals repeated over 16 rows, and each
        // row's weight repeated over its coordinates (they vectorise, without a division).
        let recip =
            |s: &[f32]| -> Vec<f32> { crate::nn::tiled(s).iter().map(|v| 1.0 / v).collect() };
        let (inv_sk, inv_sk1) = (recip(sk), recip(sk1));
        let len = inv_sk.len();
        let mut w_rows = vec![0.0f32; len];
        let rows = self.lambda.chunks_mut(len).zip(dx.chunks(len));
        let residuals = rk.chunks(len).zip(rk1.chunks(len));
        let weights = self.w[self.rows.clone()].chunks(len / d);
        for (((lc, xc), (r0c, r1c)), wc) in rows.zip(residuals).zip(weights) {
            for (wv, &wr) in w_rows.chunks_exact_mut(d).zip(wc) {
                wv.fill(wr);
            }
            let values = lc.iter_mut().zip(xc).zip(r0c.iter().zip(r1c));
            let consts = w_rows.iter().zip(inv_sk.iter().zip(&inv_sk1));
            for (((l, &x), (&r0, &r1)), (&wr, (&i0, &i1))) in values.zip(consts) {
                *l = a[k] * *l + x - wr * r0 * i0 + wr * a[k + 1] * r1 * i1;
            }
        }
        if let Some(g) = self.through_forward {
            let g = &g[(k + 1) * bd + lo..(k + 1) * bd + hi];
            for (l, gv) in self.lambda.iter_mut().zip(g) {
                *l += gv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::SamplerConfig;
    use crate::target::{CorrelatedGaussian, Funnel};
    use crate::test_support::{assert_gradients_close, randomise};
    use candle_core::Device;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// The same loss, reported log weights and parameter gradients as the candle path, from the
    /// same generator state, on a random network (some outputs clipped on the funnel), with the
    /// reference forward process and with a random learned forward drift (as in IPF).
    #[test]
    fn fast_reverse_kl_equals_the_candle_path() {
        let funnel = Funnel::new(4);
        let gauss = CorrelatedGaussian::builtin(3).unwrap();
        let cases = [
            (&gauss as &dyn Target, false),
            (&funnel, false),
            (&gauss, true),
            (&funnel, true),
        ];
        for (target, forward) in cases {
            let d = target.dim();
            // With a forward drift, equal steps: on the geometric grid the first step's σ²c_0
            // is so small that f's part of ∂L/∂x_0 is below the tolerance.
            let schedule = match forward {
                true => crate::process::Schedule::Uniform,
                false => SamplerConfig::default().schedule,
            };
            let cfg = SamplerConfig {
                steps: 7,
                width: 16,
                depth: 2,
                sigma: 1.5,
                schedule,
                ..Default::default()
            };
            let mut sampler = DiffusionSampler::new(d, cfg, 1, &Device::Cpu).unwrap();
            randomise(&sampler.params, 3, 0.3);
            if forward {
                sampler.enable_forward(2).unwrap();
                randomise(&sampler.forward.as_ref().unwrap().params, 4, 0.3);
            }
            let (mut r1, mut r2) = (StdRng::seed_from_u64(9), StdRng::seed_from_u64(9));
            // 140 paths: the backward pass splits them between two threads.
            let (l, w) = crate::train::reverse_kl_loss(&sampler, target, 140, &mut r1).unwrap();
            let l = l.unwrap();
            let want = l.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
            let grads = l.backward().unwrap();
            let mut fast = FastDrift::new(sampler.backward_net()).unwrap();
            let (got, w2) =
                reverse_kl_loss_fast(&sampler, target, 140, &mut r2, &mut fast).unwrap();
            let (got, store) = got.unwrap();
            assert_eq!(r1.random::<u64>(), r2.random::<u64>(), "same draws");
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{}: loss fast {got} vs candle {want}",
                target.name()
            );
            // A path's log weight is a sum of f32 terms, and on the funnel with a random forward
            // drift the terms reach 10⁵ (log weights down to −8·10⁴) and cancel: its rounding is
            // relative to the size of its terms, not to the sum. The loss (the mean −log w) is
            // the batch's scale of those sizes, so it bounds the error of the small sums too
            // (seen: 0.15 at −1362, with the loss at 2816); a path larger than the loss keeps
            // the bound of 10⁻⁴ of its own log weight.
            let scale = want.abs().max(1.0);
            for (x, y) in w.iter().zip(&w2) {
                assert!(
                    (x - y).abs() <= 1e-4 * x.abs().max(scale),
                    "{} (forward drift {forward}): log w {x} vs {y}",
                    target.name()
                );
            }
            assert_gradients_close(&sampler.params, &grads, &store, 1e-3, target.name());
        }
    }

    /// The two halves of the backward pass give the same numbers, bit for bit, on one thread
    /// (in turn) as on two.
    #[test]
    fn fast_reverse_kl_is_the_same_on_one_thread_or_two() {
        let target = Funnel::new(5);
        let cfg = SamplerConfig {
            steps: 9,
            width: 16,
            depth: 2,
            ..Default::default()
        };
        let sampler = DiffusionSampler::new(5, cfg, 1, &Device::Cpu).unwrap();
        randomise(&sampler.params, 4, 0.3);
        let run = |threads: usize| {
            crate::test_support::with_threads(threads, || {
                let mut fast = FastDrift::new(sampler.backward_net()).unwrap();
                let mut rng = StdRng::seed_from_u64(3);
                let (l, w) =
                    reverse_kl_loss_fast(&sampler, &target, 300, &mut rng, &mut fast).unwrap();
                let (loss, store) = l.unwrap();
                let grads: Vec<Vec<f32>> = sampler
                    .params
                    .vars()
                    .iter()
                    .map(|v| {
                        let g = store.get(v.as_tensor()).unwrap();
                        g.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                    })
                    .collect();
                (loss, w, grads)
            })
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one.0.to_bits(), two.0.to_bits());
        assert_eq!(one.1, two.1);
        assert_eq!(one.2, two.2);
    }
}

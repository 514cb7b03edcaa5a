//! The two backward-half-step objectives.

use crate::error::Result;
use crate::nn::{FastDrift, StepAdjoint, split_point};
use crate::sampler::{DiffusionSampler, Paths};
use crate::target::Target;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};

/// Log-variance loss on detached `paths` (simulated with the current network, states kept).
///
/// For each path, log dP/dQ_θ = c + Σ_k ½|ε_k(θ)|², where ε_k(θ) = (x_k − m_θ(k+1, x_{k+1}))/s_k and c
/// collects every θ-independent term. The paths may come from an exploring proposal
/// ([`DiffusionSampler::simulate_exploring`]). All
/// N·batch transitions are evaluated in one batched network pass. Paths whose weight is not finite
/// are left out. Returns the loss (`None` when fewer than two paths are usable) and the log weights.
pub fn log_variance_loss(
    sampler: &DiffusionSampler,
    paths: &Paths,
) -> Result<(Option<Tensor>, Vec<f64>)> {
    log_variance_loss_with_replay(sampler, paths, paths.log_w.len(), 0.0)
}

/// [`log_variance_loss`] on the first `on_policy` paths, plus `weight` times the mean over the
/// remaining (noising, replay) paths of −log q_θ(path) up to its constant, E_i = Σ_k ½|ε_k(θ)|²:
/// the cross-entropy of the backward process on paths of P (denoising score matching when the
/// paths start at target draws). It pulls Q_θ towards where those paths go, which is
/// mass-covering. Their log-variance would be too, but it weighs each path by how far its log
/// weight is from the batch mean, hundreds of nats where Q_θ misses: tried on the funnel, it
/// wrecked the sampler (ELBO from −2 to −40) and diverged within 100 iterations. The replay term
/// is robustified (see the body). Returns the loss and the on-policy log weights.
pub fn log_variance_loss_with_replay(
    sampler: &DiffusionSampler,
    paths: &Paths,
    on_policy: usize,
    weight: f64,
) -> Result<(Option<Tensor>, Vec<f64>)> {
    let n = sampler.grid().steps();
    let (batch, dim) = paths.x0().dims2()?;
    let dev = sampler.device().clone();
    let next = Tensor::cat(&paths.states[1..=n], 0)?;
    let cur = Tensor::cat(&paths.states[0..n], 0)?;
    let score = Tensor::cat(&paths.scores, 0)?;
    let tf = sampler.step_time_features()?;
    let h = sampler
        .drift_output(&next, &score, &tf)?
        .reshape((n, batch, dim))?;
    let (a, c, s) = sampler.all_step_coefficients()?;
    let mean = (next.reshape((n, batch, dim))?.broadcast_mul(&a)? + h.broadcast_mul(&c)?)?;
    let eps = (cur.reshape((n, batch, dim))? - mean)?.broadcast_div(&s)?;
    let energy = (eps.sqr()?.sum(2)? * 0.5)?.to_dtype(DType::F64)?.sum(0)?;
    let valid: Vec<u32> = (0..on_policy as u32)
        .filter(|&i| paths.loss_constant[i as usize].is_finite())
        .collect();
    if valid.len() < 2 {
        return Ok((None, paths.log_w.clone()));
    }
    // The simulated residuals were λε; the recomputed energy equals `noise_energy` at the current
    // parameters, so `constant` = log dP/dQ_θ − energy, independent of θ.
    let constant: Vec<f64> = valid
        .iter()
        .map(|&i| paths.loss_constant[i as usize])
        .collect();
    let idx = Tensor::from_vec(valid.clone(), valid.len(), &dev)?;
    let lw = (energy.index_select(&idx, 0)?
        + Tensor::from_vec(constant, valid.len(), &Device::Cpu)?.to_device(&dev)?)?;
    let centred = lw.broadcast_sub(&lw.mean_all()?)?;
    let mut loss = centred.sqr()?.mean_all()?;
    let replay: Vec<u32> = (on_policy as u32..batch as u32)
        .filter(|&i| paths.loss_constant[i as usize].is_finite())
        .collect();
    if weight > 0.0 && !replay.is_empty() {
        let idx = Tensor::from_vec(replay.clone(), replay.len(), &dev)?;
        // Each path's term is divided by its own (detached) value and multiplied by the batch
        // mean: the value is the mean cross-entropy, the gradient that of Ē·mean(log E_i). Paths
        // the grid cannot resolve (the funnel's deepest neck, narrower than the first step's
        // noise) have energies 10²–10³ times the typical one; in a plain mean they dominated the
        // gradient and made training diverge.
        let e = energy.index_select(&idx, 0)?;
        let ed = e.detach();
        let nll = (e / &ed)?.mean_all()?.broadcast_mul(&ed.mean_all()?)?;
        loss = (loss + (nll * weight)?)?;
    }
    Ok((Some(loss), paths.log_w.clone()))
}

/// What a loss on the CPU fast path returns: the loss's value with the gradients of every
/// parameter (`None` when no usable path), and the log weights of the batch.
pub type FastLoss = (Option<(f64, GradStore)>, Vec<f64>);

/// [`log_variance_loss_with_replay`] on the CPU fast path of the drift network
/// ([`FastDrift`]): the same loss, with every parameter's gradient computed without candle's
/// autograd over the N·batch rows (only the time MLP's few rows go through candle). Returns the
/// loss value and the gradients (`None` when fewer than two paths are usable), and the
/// on-policy log weights. Equal to the candle path to f32 rounding (tested). With
/// `forward_done`, `fast` already holds the network's pass over these paths' rows (from
/// [`DiffusionSampler::simulate_for_training`], at the current weights) and it is not run again.
#[allow(clippy::needless_range_loop)] // (step, path, coordinate) indices into several arrays
pub fn log_variance_loss_fast(
    sampler: &DiffusionSampler,
    paths: &Paths,
    on_policy: usize,
    weight: f64,
    fast: &mut FastDrift,
    forward_done: bool,
) -> Result<FastLoss> {
    let n = sampler.grid().steps();
    let (batch, dim) = paths.x0().dims2()?;
    let valid: Vec<usize> = (0..on_policy)
        .filter(|&i| paths.loss_constant[i].is_finite())
        .collect();
    if valid.len() < 2 {
        return Ok((None, paths.log_w.clone()));
    }
    let rows = n * batch * dim;
    let host = |fast: &mut FastDrift, ts: &[Tensor]| -> Result<Vec<f32>> {
        let mut v = fast.take_buffer(ts.len() * batch * dim);
        v.clear();
        for t in ts {
            v.extend_from_slice(crate::nn::HostView::of(t)?.values());
        }
        Ok(v)
    };
    // x_0..x_N once: the steps' current states are its first N blocks, their next its last N.
    let states = host(fast, &paths.states)?;
    let (cur, next) = (&states[..rows], &states[batch * dim..]);
    let tf = sampler.step_time_features()?;
    let net = sampler.backward_net();
    let (a, c, s) = sampler.host_step_coefficients()?;
    let mut eps = fast.take_buffer(rows);
    let mut dh = fast.take_buffer(rows);
    if !forward_done {
        let score = host(fast, &paths.scores)?;
        fast.refresh(net)?;
        let (emb, coef) = tf.to_host()?;
        fast.forward(next, &score, &emb, &coef, n);
        fast.give_buffer(score);
    }
    let h = fast.output();
    assert_eq!(h.len(), rows, "the network's pass covers the paths' rows");
    // Standardised residuals ε and each path's energy Σ_k ½|ε_k|².
    let mut energy = vec![0.0f64; batch];
    for k in 0..n {
        for i in 0..batch {
            let mut e = 0.0f32;
            for j in 0..dim {
                let r = (k * batch + i) * dim + j;
                let kj = k * dim + j;
                let v = (cur[r] - (a[k] * next[r] + c[kj] * h[r])) / s[kj];
                eps[r] = v;
                e += v * v;
            }
            energy[i] += f64::from(e * 0.5);
        }
    }
    let lw: Vec<f64> = valid
        .iter()
        .map(|&i| energy[i] + paths.loss_constant[i])
        .collect();
    let mean = lw.iter().sum::<f64>() / lw.len() as f64;
    let mut loss = lw.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / lw.len() as f64;
    // ∂loss/∂energy_i.
    let mut d_energy = vec![0.0f64; batch];
    for (&i, v) in valid.iter().zip(&lw) {
        d_energy[i] = 2.0 * (v - mean) / lw.len() as f64;
    }
    let replay: Vec<usize> = (on_policy..batch)
        .filter(|&i| paths.loss_constant[i].is_finite())
        .collect();
    if weight > 0.0 && !replay.is_empty() {
        // The robustified cross-entropy of `log_variance_loss_with_replay`: its value is the
        // mean energy, its gradient that of Ē·mean(log E_i).
        let m = replay.len() as f64;
        let e_mean = replay.iter().map(|&i| energy[i]).sum::<f64>() / m;
        loss += weight * e_mean;
        for &i in &replay {
            d_energy[i] += weight * e_mean / (m * energy[i]);
        }
    }
    // ∂energy_i/∂h = −ε σ²c/s.
    for k in 0..n {
        for i in 0..batch {
            let g = d_energy[i] as f32;
            for j in 0..dim {
                let r = (k * batch + i) * dim + j;
                let kj = k * dim + j;
                dh[r] = -g * eps[r] * c[kj] / s[kj];
            }
        }
    }
    // Step by step: one step's rows (a batch) stay in cache through the backward pass, where
    // one pass over all N·batch rows streamed every activation from memory (measured about 1.15×
    // slower at batch 512 on the funnel yardstick: median 92 against 79 ms per iteration); the
    // batch's two halves on two threads.
    fast.begin_backward();
    let split = split_point(batch);
    let halves = (
        GivenDh {
            dh: &dh,
            rows: 0..split,
            batch,
            dim,
        },
        GivenDh {
            dh: &dh,
            rows: split..batch,
            batch,
            dim,
        },
    );
    fast.backward_steps(batch, halves, false);
    let grads = fast.finish_backward();
    for b in [states, eps, dh] {
        fast.give_buffer(b);
    }
    let store = FastDrift::all_gradients(net, &tf, &grads)?;
    Ok((Some((loss, store)), paths.log_w.clone()))
}

/// The log-variance loss's ∂/∂h, computed beforehand for all rows, handed to one half of the
/// batch's rows (`rows`) step by step.
struct GivenDh<'a> {
    dh: &'a [f32],
    rows: std::ops::Range<usize>,
    batch: usize,
    dim: usize,
}

impl StepAdjoint for GivenDh<'_> {
    fn dh(&mut self, k: usize, dh: &mut [f32]) {
        let start = (k * self.batch + self.rows.start) * self.dim;
        dh.copy_from_slice(&self.dh[start..start + self.rows.len() * self.dim]);
    }

    fn dx(&mut self, _k: usize, _dx: &[f32]) {}
}

/// Reverse-KL loss E_Q[−log w] on `batch` fresh paths, differentiated through the simulation.
/// Paths whose target density was not finite are left out of the mean.
pub fn reverse_kl_loss(
    sampler: &DiffusionSampler,
    target: &dyn Target,
    batch: usize,
    rng: &mut impl rand::Rng,
) -> Result<(Option<Tensor>, Vec<f64>)> {
    let (log_w, mask) = sampler.simulate_differentiable(target, batch, rng)?;
    let lw: Vec<f64> = log_w.to_vec1::<f64>()?;
    let m: Vec<f64> = mask.to_vec1::<f64>()?;
    let count: f64 = m.iter().sum();
    let reported: Vec<f64> = lw
        .iter()
        .zip(&m)
        .map(|(&w, &k)| if k > 0.0 { w } else { f64::NEG_INFINITY })
        .collect();
    if count < 1.0 {
        return Ok((None, reported));
    }
    let loss = ((log_w * mask)?.sum_all()? * (-1.0 / count))?;
    Ok((Some(loss), reported))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{CorrelatedGaussian, Funnel, Target};
    use crate::test_support::assert_gradients_close;
    use rand::{SeedableRng, rngs::StdRng};

    /// The fast path's loss and every parameter's gradient equal candle's on the same paths, on
    /// a trained-looking (random) network, with exploring paths and with the replay term; and a
    /// few training iterations on each path end at the same weights.
    #[test]
    fn fast_log_variance_equals_the_candle_path() {
        let funnel = Funnel::new(4);
        let gauss = CorrelatedGaussian::builtin(2).unwrap();
        let targets: [(&dyn Target, f64, f64); 3] =
            [(&gauss, 1.0, 0.0), (&funnel, 1.3, 0.0), (&funnel, 1.0, 3.0)];
        for (target, explore, replay_weight) in targets {
            let d = target.dim();
            let sampler = crate::test_support::random_sampler(d, 6, (1, 2));
            let mut rng = StdRng::seed_from_u64(2);
            // Large enough that the backward pass splits the batch between two threads.
            let batch = 130;
            let mut paths = sampler
                .simulate_exploring(target, batch, &mut rng, true, explore)
                .unwrap();
            if replay_weight > 0.0 {
                let starts = paths.x0().narrow(0, 0, 8).unwrap();
                let extra = sampler.simulate_noising(target, &starts, &mut rng).unwrap();
                paths = paths.with_extra(extra).unwrap();
            }
            let (l, w) =
                log_variance_loss_with_replay(&sampler, &paths, batch, replay_weight).unwrap();
            let l = l.unwrap();
            let want = l.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
            let grads = l.backward().unwrap();
            let mut fast = FastDrift::new(sampler.backward_net()).unwrap();
            let (got, w2) =
                log_variance_loss_fast(&sampler, &paths, batch, replay_weight, &mut fast, false)
                    .unwrap();
            let (got, store) = got.unwrap();
            assert_eq!(w, w2);
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{}: loss fast {got} vs candle {want}",
                target.name()
            );
            assert_gradients_close(&sampler.params, &grads, &store, 2e-4, target.name());
        }
    }
}

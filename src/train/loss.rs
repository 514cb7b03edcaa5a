//! The two backward-half-step objectives.

use crate::error::Result;
use crate::sampler::{DiffusionSampler, Paths};
use crate::target::Target;
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

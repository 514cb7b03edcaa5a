//! The two backward-half-step objectives.

use crate::error::Result;
use crate::sampler::{DiffusionSampler, Paths};
use crate::target::Target;
use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;

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
    let valid: Vec<u32> = (0..batch as u32)
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
    let loss = centred.sqr()?.mean_all()?;
    Ok((Some(loss), paths.log_w.clone()))
}

/// Reverse-KL loss E_Q[−log w] on `batch` fresh paths, differentiated through the simulation.
/// Paths whose target density was not finite are left out of the mean.
pub fn reverse_kl_loss(
    sampler: &DiffusionSampler,
    target: &dyn Target,
    batch: usize,
    rng: &mut StdRng,
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

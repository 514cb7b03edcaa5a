//! The mean-matching losses of the two half-steps, one random step per example (as DDPM).
//!
//! Each loss is a squared error between a kernel mean and its regression target, divided by the
//! kernel variance s_k² and halved: the KL between two Gaussian kernels of equal variance, up to
//! a constant. It is averaged over examples and coordinates (nats per dimension per step), so the
//! gradient clip means the same for points and images. With the step k drawn uniformly the loss
//! is an unbiased estimate of the mean over steps.
//!
//! Backward half-step: the target is x_k for the input x_{k+1}; its minimiser is the exact
//! conditional mean E_P[x_k | x_{k+1}] for any step size. DSB's target
//! x_{k+1} + F(k, x_k) − F(k, x_{k+1}) (docs/design.md § Data fitting) has that mean only to
//! first order in the step, and on the OU grid a_k is far from 1 at large steps, where it is
//! biased (see
//! [`crate::ipf`]'s forward fit, which measured it). At IPF iteration 0 the forward process is
//! the reference, whose pair (x_0, x_{k+1}) is drawn exactly in one shot, and x_k is replaced by
//! E[x_k | x_0, x_{k+1}] (Gaussian): the same minimiser with less variance, the DDPM loss. The
//! reported value adds back the constant that this removes, so losses of all IPF iterations are
//! comparable. Forward half-step: the target is x_{k+1} for the input x_k, on paths of the
//! backward process.

use super::model::FitModel;
use crate::error::Result;
use crate::ipf::PathCache;
use crate::process::Kernels;
use candle_core::{DType, Tensor};

/// A loss to differentiate and the value to report.
pub(crate) struct Loss {
    /// The differentiable loss.
    pub(crate) tensor: Tensor,
    /// Its value plus any constant left out of it.
    pub(crate) reported: f64,
}

/// A column `[B, 1]` of per-example values.
fn column(model: &FitModel, values: Vec<f64>) -> Result<Tensor> {
    let n = values.len();
    let v: Vec<f32> = values.into_iter().map(|x| x as f32).collect();
    Ok(Tensor::from_vec(v, (n, 1), model.device())?)
}

/// Uniform random steps k ∈ 0..N, one per example.
fn random_steps(kernels: &Kernels, rows: usize, rng: &mut impl rand::Rng) -> Vec<usize> {
    (0..rows)
        .map(|_| rng.random_range(0..kernels.steps()))
        .collect()
}

/// ½ mean of ((target − mean)/s)² and its value.
fn half_mse(target: &Tensor, mean: &Tensor, inv_sd: &Tensor) -> Result<(Tensor, f64)> {
    let err = (target - mean)?.broadcast_mul(inv_sd)?;
    let loss = (err.sqr()?.mean_all()? * 0.5)?;
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    Ok((loss, value))
}

/// The backward mean b_k x + λ_k g(x, t_{k+1}) of per-example steps `ks` at `x` = x_{k+1}.
fn backward_means(model: &FitModel, x: &Tensor, ks: &[usize]) -> Result<(Tensor, Tensor)> {
    let kern = model.kernels();
    let steps: Vec<_> = ks.iter().map(|&k| kern.backward(k)).collect();
    let t: Vec<f32> = ks
        .iter()
        .map(|&k| kern.normalised_time(k + 1) as f32)
        .collect();
    let t = Tensor::from_vec(t, ks.len(), model.device())?;
    let g = model.backward.forward(x, &t)?;
    let b = column(model, steps.iter().map(|s| s.state).collect())?;
    let lam = column(model, steps.iter().map(|s| s.net).collect())?;
    let inv_sd = column(model, steps.iter().map(|s| 1.0 / s.sd).collect())?;
    Ok(((x.broadcast_mul(&b)? + g.broadcast_mul(&lam)?)?, inv_sd))
}

/// Backward loss of IPF iteration 0 on the data batch `x0` (standardised), the forward process
/// being the reference: x_{k+1} ~ N(ā_{k+1} x_0, ν_{k+1}²) and the target
/// E[x_k | x_0, x_{k+1}] = (s_k² ā_k x_0 + ν_k² a_k x_{k+1}) / (s_k² + a_k² ν_k²), whose
/// conditional variance ν_k² s_k² / (s_k² + a_k² ν_k²) is the constant added to the report.
pub(crate) fn backward_loss_reference(
    model: &FitModel,
    x0: &Tensor,
    rng: &mut impl rand::Rng,
) -> Result<Loss> {
    let kern = model.kernels();
    let rows = x0.dim(0)?;
    let ks = random_steps(kern, rows, rng);
    let (mut drift, mut spread, mut w0, mut w1, mut floor) = (vec![], vec![], vec![], vec![], 0.0);
    for &k in &ks {
        let (cum_next, var_next) = kern.marginal(k + 1);
        let (cum, var) = kern.marginal(k);
        let (a, s2) = (kern.decay(k), kern.sd(k).powi(2));
        let denom = s2 + a * a * var;
        drift.push(cum_next);
        spread.push(var_next.sqrt());
        w0.push(s2 * cum / denom);
        w1.push(var * a / denom);
        floor += 0.5 * (var / denom) / rows as f64;
    }
    let eps = model.noise(rows, rng)?;
    let x_next = (x0.broadcast_mul(&column(model, drift)?)?
        + eps.broadcast_mul(&column(model, spread)?)?)?;
    let target =
        (x0.broadcast_mul(&column(model, w0)?)? + x_next.broadcast_mul(&column(model, w1)?)?)?;
    let (mean, inv_sd) = backward_means(model, &x_next, &ks)?;
    let (tensor, value) = half_mse(&target, &mean, &inv_sd)?;
    Ok(Loss {
        tensor,
        reported: value + floor,
    })
}

/// Backward loss on cached forward paths: target x_k for the input x_{k+1}.
pub(crate) fn backward_loss_cached(
    model: &FitModel,
    cache: &PathCache,
    rows: usize,
    rng: &mut impl rand::Rng,
) -> Result<Loss> {
    let paths: Vec<usize> = (0..rows)
        .map(|_| rng.random_range(0..cache.len()))
        .collect();
    let ks = random_steps(model.kernels(), rows, rng);
    let (x_k, x_next) = cache.pairs(&paths, &ks)?;
    let (mean, inv_sd) = backward_means(model, &x_next, &ks)?;
    let (tensor, reported) = half_mse(&x_k, &mean, &inv_sd)?;
    Ok(Loss { tensor, reported })
}

/// Forward loss on cached backward paths: target x_{k+1} for the input x_k, mean
/// a_k x_k + s_k f(x_k, t_k).
pub(crate) fn forward_loss_cached(
    model: &FitModel,
    cache: &PathCache,
    rows: usize,
    rng: &mut impl rand::Rng,
) -> Result<Loss> {
    let kern = model.kernels();
    let paths: Vec<usize> = (0..rows)
        .map(|_| rng.random_range(0..cache.len()))
        .collect();
    let ks = random_steps(kern, rows, rng);
    let (x_k, x_next) = cache.pairs(&paths, &ks)?;
    let net = model
        .forward
        .as_ref()
        .expect("the forward half-step enables the forward network");
    let t: Vec<f32> = ks.iter().map(|&k| kern.normalised_time(k) as f32).collect();
    let f = net.forward(&x_k, &Tensor::from_vec(t, rows, model.device())?)?;
    let a = column(model, ks.iter().map(|&k| kern.decay(k)).collect())?;
    let c = column(model, ks.iter().map(|&k| kern.forward(k).net).collect())?;
    let inv_sd = column(model, ks.iter().map(|&k| 1.0 / kern.sd(k)).collect())?;
    let mean = (x_k.broadcast_mul(&a)? + f.broadcast_mul(&c)?)?;
    let (tensor, reported) = half_mse(&x_next, &mean, &inv_sd)?;
    Ok(Loss { tensor, reported })
}

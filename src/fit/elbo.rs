//! The variational lower bound on the log-likelihood of held-out data (Sohl-Dickstein et al.,
//! 2015; DSB, 2021): for data x_0 and a path x_1..x_N of the forward process P from it,
//!
//! log q(x_0) ≥ E_P[ log q(x_N) + Σ_k log q(x_k | x_{k+1}) − Σ_k log p(x_{k+1} | x_k) ],
//!
//! for any forward process (the reference at IPF iteration 0, the learned one after), tight
//! when Q is P's exact reversal. Forward and backward kernels of a step share their variance
//! s_k², so their normalising constants cancel and each step adds
//! ½|ε_k|² − ½|x_k − B(x_{k+1})|²/s_k², ε_k being the forward noise. Accumulated in f64 per
//! example, estimated with one path per held-out point, and reported in data coordinates (the
//! standardisation's log-Jacobian subtracted) in nats per example and per dimension.
//!
//! Images: the pixels are 8-bit, x ∈ {−1 + 2i/255 : i = 0..255}, so the model's density q
//! (continuous, [−1, 1] coordinates) bounds the probability of the discrete data through
//! uniform dequantisation with the bin width Δ = 2/255 (Theis et al., 2016; as DDPM and
//! Sohl-Dickstein et al. report): with u ~ U[0, Δ)^d,
//!
//! log P(x) = log ∫_{[0,Δ)^d} q(x + u) du = log E_u[q(x + u)] + d log Δ
//!          ≥ E_u[log q(x + u)] + d log Δ ≥ ELBO(x + u) + d log Δ,
//!
//! (Jensen twice). So the reported negative log-likelihood bound is
//!
//! bits/dim = −(ELBO_nats / d + log Δ) / log 2 = (−ELBO_nats / d + log(255/2)) / log 2,
//!
//! ELBO_nats being the mean bound per example on the dequantised held-out images (one u and one
//! forward path per image). This is the same number as the density bound in [0, 256)
//! coordinates (bin width 1), where the Jacobian adds d log(255/2) nats: bits/dim is
//! independent of the pixel scaling. Lower is better; 8 bits/dim is a uniform model of the
//! bytes.

use super::model::{FitModel, chunk_rows};
use crate::error::{DsbError, Result};
use crate::process::{Kernels, Parametrisation};
use candle_core::{DType, Device, Tensor};

use serde::{Deserialize, Serialize};

/// Settings of the bound.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ElboOptions {
    /// Width Δ of the quantisation bins of discrete data (e.g. pixels); `None` for continuous
    /// data.
    pub dequantise_bin: Option<f64>,
}

/// The bound on held-out data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Elbo {
    /// Mean lower bound on log q(x_0), nats per example, data coordinates.
    #[serde(deserialize_with = "crate::estimate::f64_or_nan")]
    pub nats: f64,
    /// The same per dimension.
    #[serde(deserialize_with = "crate::estimate::f64_or_nan")]
    pub nats_per_dim: f64,
    /// Standard error of `nats` over the examples.
    #[serde(deserialize_with = "crate::estimate::f64_or_nan")]
    pub stderr: f64,
    /// Bits per dimension of the discrete data, with dequantisation (a bound on the negative
    /// log-likelihood): −(`nats_per_dim` + log Δ)/log 2; see [`elbo()`].
    pub bits_per_dim: Option<f64>,
    /// Examples evaluated.
    pub n: usize,
}

impl Elbo {
    /// The bound of a model with no density at t = T (a bridge between two data sets, whose far
    /// end is known only by its points): not defined, every figure NaN.
    pub fn not_defined(n: usize) -> Self {
        Self {
            nats: f64::NAN,
            nats_per_dim: f64::NAN,
            stderr: f64::NAN,
            bits_per_dim: None,
            n,
        }
    }
}

/// ½|r|² per row, in f64.
fn half_sq(r: &Tensor) -> Result<Vec<f64>> {
    Ok((r.sqr()?.sum(1)? * 0.5)?
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .to_vec1::<f64>()?)
}

/// The bound for each example of `data` (rows of length d, data coordinates), in nats in data
/// coordinates, before dequantisation's d log Δ.
/// `fine`: the kernels of a finer grid of the model's reference (the forward process is then
/// the reference on that grid).
fn per_example(
    model: &FitModel,
    fine: Option<&Kernels>,
    data: &[f32],
    rng: &mut impl rand::Rng,
) -> Result<Vec<f64>> {
    let d = model.dim();
    let kern = fine.unwrap_or(model.kernels());
    let norm = &model.settings().normalisation;
    let mut out = Vec::with_capacity(data.len() / d);
    for chunk in data.chunks(chunk_rows(d) * d) {
        let rows = chunk.len() / d;
        let mut x = Tensor::from_vec(norm.apply(chunk), (rows, d), model.device())?;
        let mut lw = vec![0.0f64; rows];
        for k in 0..kern.steps() {
            let eps = model.noise(rows, rng)?;
            let mean = match fine {
                None => model.forward_mean(&x, k)?,
                Some(_) => (&x * kern.decay(k))?,
            };
            let next = (mean + (&eps * kern.sd(k))?)?.detach();
            let step = kern.backward(k);
            let r = ((&x - model.backward_mean_on(kern, &next, &step)?)? / step.sd)?;
            for ((w, e), q) in lw.iter_mut().zip(half_sq(&eps)?).zip(half_sq(&r)?) {
                *w += e - q;
            }
            x = next;
        }
        let log_2pi = (2.0 * std::f64::consts::PI).ln();
        for (w, p) in lw.iter_mut().zip(half_sq(&x)?) {
            *w += -p - 0.5 * d as f64 * log_2pi - norm.log_det();
        }
        out.extend(lw);
    }
    Ok(out)
}

/// The bound on held-out `data` (rows of length d, data coordinates, at least two), one
/// forward path per example.
///
/// With `opts.dequantise_bin` = Δ (2/255 for 8-bit pixels scaled to [−1, 1]), each example
/// x gets uniform noise u ~ U[0, Δ)^d first, and since log P(x) = log E_u[q(x + u)] + d log Δ
/// ≥ ELBO(x + u) + d log Δ (Jensen), the bound on the discrete data's negative log-likelihood
/// is reported as bits/dim = −(ELBO_nats/d + log Δ)/log 2 (as DDPM reports it; the same number
/// as with pixels in [0, 256) and bins of width 1).
pub fn elbo(
    model: &FitModel,
    data: &[f32],
    opts: &ElboOptions,
    rng: &mut impl rand::Rng,
) -> Result<Elbo> {
    bound(model, None, data, opts, rng)
}

/// [`elbo()`] on the model's grid with every step cut into `parts` equal steps: the same
/// continuous-time model discretised more finely (its network is a function of continuous
/// time), so the difference from [`elbo()`] is the part of the bound lost to discretisation.
/// Only for a model fitted against the reference (IPF iteration 0): a refined model's kernels
/// are tied to its own grid.
pub fn elbo_subdivided(
    model: &FitModel,
    parts: usize,
    data: &[f32],
    opts: &ElboOptions,
    rng: &mut impl rand::Rng,
) -> Result<Elbo> {
    if model.backward_iteration() > 0 || model.has_forward() {
        return Err(DsbError::InvalidInput(format!(
            "the bound on a finer grid needs a model of IPF iteration 0; this one was refined \
             (iteration {}), and its kernels are tied to its own {}-step grid",
            model.backward_iteration(),
            model.kernels().steps()
        )));
    }
    if parts == 0 {
        return Err(DsbError::InvalidInput(
            "the finer grid must cut each step into at least one part".into(),
        ));
    }
    let s = model.settings();
    let fine = Kernels::new(
        s.reference,
        s.grid().subdivided(parts),
        Parametrisation::Tweedie,
    );
    bound(model, Some(&fine), data, opts, rng)
}

fn bound(
    model: &FitModel,
    fine: Option<&Kernels>,
    data: &[f32],
    opts: &ElboOptions,
    rng: &mut impl rand::Rng,
) -> Result<Elbo> {
    let d = model.dim();
    if data.len() < 2 * d || !data.len().is_multiple_of(d) {
        return Err(DsbError::InvalidInput(format!(
            "the bound needs at least two examples of dimension {d}, got {} values",
            data.len()
        )));
    }
    let dequantised;
    let data = match opts.dequantise_bin {
        Some(bin) if bin > 0.0 && bin.is_finite() => {
            dequantised = data
                .iter()
                .map(|&v| v + (bin * rng.random::<f64>()) as f32)
                .collect::<Vec<_>>();
            &dequantised[..]
        }
        Some(bin) => {
            return Err(DsbError::InvalidInput(format!(
                "the dequantisation bin must be positive, got {bin}"
            )));
        }
        None => data,
    };
    let lw = per_example(model, fine, data, rng)?;
    let n = lw.len() as f64;
    let mean = lw.iter().sum::<f64>() / n;
    let var = lw.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let nats_per_dim = mean / d as f64;
    Ok(Elbo {
        nats: mean,
        nats_per_dim,
        stderr: (var / n).sqrt(),
        bits_per_dim: opts
            .dequantise_bin
            .map(|bin| -(nats_per_dim + bin.ln()) / std::f64::consts::LN_2),
        n: lw.len(),
    })
}

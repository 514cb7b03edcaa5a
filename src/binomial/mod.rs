//! Binomial diffusion for binary data (Sohl-Dickstein et al., 2015, § 2.1 and their binary
//! experiments): the forward process flips each bit towards Bernoulli(½),
//!
//! q(x_t = 1 | x_{t−1}) = x_{t−1} (1 − β_t) + β_t / 2,   β_t = 1 / (T − t + 1),
//!
//! so that x_T is Bernoulli(½) whatever x₀ (β_T = 1), and the learned reverse kernel is a
//! product of Bernoullis, p(x_{t−1} = 1 | x_t) = σ(ℓ_t(x_t)), with logits
//!
//! ℓ_t(x) = logit(x (1 − β_t) + β_t / 2) + f_θ(2x − 1, t/T),
//!
//! where f_θ is an MLP whose last layer starts at zero. The forward kernel is symmetric in its
//! two arguments, so at f = 0 the reverse kernel is the exact reversal of the forward process
//! started at Bernoulli(½): the untrained model is the uniform law on {0, 1}^d, and its bound
//! is exactly 1 bit per dimension, path by path.
//!
//! The bound on log p(x₀) is the one of [`crate::fit::elbo()`] with Bernoulli kernels,
//! estimated with one forward path per example; training minimises its lower-variance form,
//! Σ_t KL(q(x_{t−1} | x_t, x₀) ‖ p(x_{t−1} | x_t)) − log p(x₀ | x₁) (the prior term is zero),
//! with one random t per example. Reported in bits per dimension: the negative log-likelihood
//! bound of the discrete data, comparable with its entropy rate.
//!
//! [`BinomialFit`] runs the training as `dsb fit --binarize` does (resumable, with the
//! report), on the data of [`load_binary`]: the paper's heartbeat sequences, binarised images or
//! a CSV file of bits.
//!
//! ```
//! use dsb::binomial::{BinomialModel, BinomialTrainConfig, entropy_bits_per_dim, independent_bits, train};
//! use rand::SeedableRng;
//!
//! let probs = [0.1, 0.5, 0.9];
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let data = independent_bits(&probs, 2000, &mut rng);
//! let model = BinomialModel::new(3, 8, 32, 1, 0, &candle_core::Device::Cpu).unwrap();
//! // Untrained: the uniform law, exactly 1 bit per dimension.
//! assert!((model.bound(&data, &mut rng).unwrap().bits_per_dim - 1.0).abs() < 1e-5);
//! let cfg = BinomialTrainConfig { iterations: 200, batch: 128, ..Default::default() };
//! train(&model, &data, &cfg, &mut rng, |_, _| {}).unwrap();
//! let b = model.bound(&data, &mut rng).unwrap();
//! println!("{:.3} bits/dim against an entropy of {:.3}", b.bits_per_dim, entropy_bits_per_dim(&probs));
//! assert!(b.bits_per_dim < 0.95);
//! ```

mod data;
mod fit;
#[cfg(test)]
mod tests;

pub use data::{BinaryData, HEARTBEAT, HEARTBEAT_LEN, HEARTBEAT_PERIOD, is_heartbeat, load_binary};
pub use fit::{
    BINOMIAL_KIND, BinaryReport, BinomialFit, BinomialFitConfig, SavedBinomial, evaluate_model,
    is_binomial_model, load_binomial,
};

use crate::error::{DsbError, Result};
use crate::fit::{MlpNet, TimeNet};
use crate::nn::ParamStore;
use crate::train::Optimiser;
use candle_core::{D, DType, Device, Tensor};
use rand::Rng;

/// A binomial diffusion model of binary vectors of dimension `dim`.
#[derive(Debug)]
pub struct BinomialModel {
    dim: usize,
    /// β_1..β_T.
    betas: Vec<f64>,
    /// ᾱ_t = ∏_{s ≤ t} (1 − β_s), t = 0..T: the probability that a bit was never resampled.
    keep: Vec<f64>,
    net: MlpNet,
    device: Device,
}

/// The bound on held-out data.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BinaryBound {
    /// Mean negative log-likelihood bound, bits per dimension.
    pub bits_per_dim: f64,
    /// Its standard error over the examples.
    pub stderr: f64,
    /// Examples evaluated.
    pub n: usize,
}

/// Settings of [`train`].
#[derive(Debug, Clone)]
pub struct BinomialTrainConfig {
    /// Gradient steps.
    pub iterations: usize,
    /// Examples per step.
    pub batch: usize,
    /// Peak learning rate (Adam, cosine decay to a tenth).
    pub lr: f64,
    /// EMA decay of the weights (0: none).
    pub ema: f64,
}

impl Default for BinomialTrainConfig {
    fn default() -> Self {
        Self {
            iterations: 2000,
            batch: 256,
            lr: 2e-3,
            ema: 0.99,
        }
    }
}

/// The forward kernel at step t as a probability: P(x_t = 1 | x_{t−1} = x) = x (1 − β) + β/2
/// (also P(x_t | x_{t−1} = 1) for a state x_t, the kernel being symmetric).
fn flip_prob(x: &Tensor, beta: f64) -> Result<Tensor> {
    Ok(x.affine(1.0 - beta, beta / 2.0)?)
}

/// [`flip_prob`] with a `[B, 1]` column of β per row.
fn flip_prob_rows(x: &Tensor, beta: &Tensor) -> Result<Tensor> {
    keep_prob_rows(x, &(1.0 - beta)?)
}

/// x k + (1 − k)/2 for a `[B, 1]` column k: the probability of a 1 when each bit is kept with
/// probability k and otherwise drawn from Bernoulli(½).
fn keep_prob_rows(x: &Tensor, k: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_mul(k)?.broadcast_add(&((1.0 - k)? * 0.5)?)?)
}

/// log(p / (1 − p)).
fn logit(p: &Tensor) -> Result<Tensor> {
    Ok((p.log()? - (1.0 - p)?.log()?)?)
}

/// log σ(l) = −softplus(−l), computed stably.
fn log_sigmoid(l: &Tensor) -> Result<Tensor> {
    // −softplus(−l) = min(l, 0) − log(1 + e^{−|l|}).
    let neg_abs = l.abs()?.neg()?;
    Ok((l.minimum(0.0)? - (neg_abs.exp()? + 1.0)?.log()?)?)
}

impl BinomialModel {
    /// An untrained model (the uniform law) with `steps` steps and an MLP of `width` × `depth`.
    pub fn new(
        dim: usize,
        steps: usize,
        width: usize,
        depth: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        if dim == 0 || steps == 0 || width == 0 || depth == 0 {
            return Err(DsbError::InvalidInput(format!(
                "a binomial model needs a dimension, --steps, --width and --depth of at least 1, \
                 got {dim}, {steps}, {width}, {depth}"
            )));
        }
        let betas: Vec<f64> = (1..=steps).map(|t| 1.0 / (steps - t + 1) as f64).collect();
        let mut keep = vec![1.0];
        for b in &betas {
            keep.push(keep.last().expect("non-empty") * (1.0 - b));
        }
        let net = MlpNet::new("binomial", dim, width, depth, seed, device)?;
        Ok(Self {
            dim,
            betas,
            keep,
            net,
            device: device.clone(),
        })
    }

    /// Bits per example.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Steps T.
    pub fn steps(&self) -> usize {
        self.betas.len()
    }

    /// The network's parameters.
    pub fn params(&self) -> &ParamStore {
        self.net.params()
    }

    /// The device the network runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The flip rates β_1..β_T.
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// The logits of p(x_{t−1} = 1 | x_t) for states `x` (`[B, d]`, 0/1), t in 1..=T.
    pub fn reverse_logits(&self, x: &Tensor, t: usize) -> Result<Tensor> {
        self.reverse_logits_rows(x, &vec![t; x.dim(0)?])
    }

    /// [`BinomialModel::reverse_logits`] with a step per row.
    fn reverse_logits_rows(&self, x: &Tensor, ts: &[usize]) -> Result<Tensor> {
        let beta = self.column(ts, |t| self.betas[t - 1])?;
        let base = logit(&flip_prob_rows(x, &beta)?)?;
        let steps = self.steps() as f64;
        let time: Vec<f32> = ts.iter().map(|&t| (t as f64 / steps) as f32).collect();
        let time = Tensor::from_vec(time, ts.len(), &self.device)?;
        let f = self.net.forward(&((x * 2.0)? - 1.0)?, &time)?;
        Ok((base + f)?)
    }

    /// A `[B, 1]` column holding `f(t)` for each row's step.
    fn column(&self, ts: &[usize], f: impl Fn(usize) -> f64) -> Result<Tensor> {
        let v: Vec<f32> = ts.iter().map(|&t| f(t) as f32).collect();
        Ok(Tensor::from_vec(v, (ts.len(), 1), &self.device)?)
    }

    /// log p(y | logits) per row for 0/1 targets `y`, summed over the bits.
    fn log_bernoulli(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
        let lp1 = log_sigmoid(logits)?;
        let lp0 = log_sigmoid(&logits.neg()?)?;
        Ok(((y * lp1)? + ((1.0 - y)? * lp0)?)?.sum(D::Minus1)?)
    }

    /// One forward step from `x` (0/1) at step t.
    fn forward_step(&self, x: &Tensor, t: usize, rng: &mut impl Rng) -> Result<Tensor> {
        bernoulli(&flip_prob(x, self.betas[t - 1])?, rng)
    }

    /// The training loss of a batch `x0` (`[B, d]`, 0/1): T times one random step's term per
    /// example (the KL of step t > 1, −log p(x₀ | x₁) at t = 1), in nats per bit. One network
    /// call for the whole batch, each row at its own step.
    pub fn loss(&self, x0: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
        let (rows, d) = x0.dims2()?;
        let steps = self.steps();
        let ts: Vec<usize> = (0..rows).map(|_| rng.random_range(1..=steps)).collect();
        // x_t ~ q(x_t | x_0): kept with probability ᾱ_t, else Bernoulli(½).
        let kt = self.column(&ts, |t| self.keep[t])?;
        let xt = bernoulli(&keep_prob_rows(x0, &kt)?, rng)?;
        let logits = self.reverse_logits_rows(&xt, &ts)?;
        let lp1 = log_sigmoid(&logits)?;
        let lp0 = log_sigmoid(&logits.neg()?)?;
        // The posterior q(x_{t−1} = 1 | x_t, x_0) ∝ q(x_{t−1} = 1 | x_0) q(x_t | x_{t−1} = 1).
        let m = keep_prob_rows(x0, &self.column(&ts, |t| self.keep[t - 1])?)?;
        let beta = self.column(&ts, |t| self.betas[t - 1])?;
        let l1 = flip_prob_rows(&xt, &beta)?;
        let l0 = flip_prob_rows(&(1.0 - &xt)?, &beta)?;
        let num = (&m * &l1)?;
        let post = (&num / (&num + ((1.0 - &m)? * &l0)?)?)?.clamp(1e-7, 1.0 - 1e-7)?;
        let kl = ((&post * (post.log()? - &lp1)?)?
            + ((1.0 - &post)? * ((1.0 - &post)?.log()? - &lp0)?)?)?
            .sum(D::Minus1)?;
        let nll = ((x0 * &lp1)? + ((1.0 - x0)? * &lp0)?)?
            .sum(D::Minus1)?
            .neg()?;
        // At t = 1 the posterior is x₀ itself: the term is −log p(x₀ | x₁), without the clamp.
        let first = self
            .column(&ts, |t| f64::from(u8::from(t == 1)))?
            .squeeze(1)?;
        let term = ((&nll * &first)? + (&kl * (1.0 - &first)?)?)?;
        Ok((term.mean_all()? * (steps as f64 / d as f64))?)
    }

    /// The bound on `data` (rows of `dim` values in {0, 1}, at least two), one forward path per
    /// example: −(log p(x_T) + Σ_t log p(x_{t−1} | x_t) − log q(x_t | x_{t−1})) / (d log 2),
    /// accumulated in f64.
    pub fn bound(&self, data: &[f32], rng: &mut impl Rng) -> Result<BinaryBound> {
        let d = self.dim;
        check_binary(data, d)?;
        let n = data.len() / d;
        let mut per = Vec::with_capacity(n);
        for chunk in data.chunks(4096 * d) {
            let rows = chunk.len() / d;
            let mut x = Tensor::from_vec(chunk.to_vec(), (rows, d), &self.device)?;
            let mut lw = vec![0.0f64; rows];
            for t in 1..=self.steps() {
                let next = self.forward_step(&x, t, rng)?;
                let fwd_logits = logit(&flip_prob(&x, self.betas[t - 1])?)?;
                let lq = to_f64(&Self::log_bernoulli(&fwd_logits, &next)?)?;
                let lp = to_f64(&Self::log_bernoulli(&self.reverse_logits(&next, t)?, &x)?)?;
                for ((w, p), q) in lw.iter_mut().zip(lp).zip(lq) {
                    *w += p - q;
                }
                x = next;
            }
            per.extend(
                lw.into_iter()
                    .map(|w| w - d as f64 * std::f64::consts::LN_2),
            );
        }
        let bits: Vec<f64> = per
            .iter()
            .map(|w| -w / (d as f64 * std::f64::consts::LN_2))
            .collect();
        let mean = bits.iter().sum::<f64>() / n as f64;
        let var = bits.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        Ok(BinaryBound {
            bits_per_dim: mean,
            stderr: (var / n as f64).sqrt(),
            n,
        })
    }

    /// `n` samples (rows of 0/1 values) from the reverse process.
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> Result<Vec<f32>> {
        let d = self.dim;
        let half = Tensor::full(0.5f32, (n, d), &self.device)?;
        let mut x = bernoulli(&half, rng)?;
        for t in (1..=self.steps()).rev() {
            let p = candle_nn::ops::sigmoid(&self.reverse_logits(&x, t)?)?;
            x = bernoulli(&p, rng)?;
        }
        Ok(x.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// Trains `model` on `data` (rows of 0/1 values); `on_step(step, loss)` sees every step.
/// The network ends holding the EMA of its weights.
pub fn train(
    model: &BinomialModel,
    data: &[f32],
    cfg: &BinomialTrainConfig,
    rng: &mut impl Rng,
    mut on_step: impl FnMut(usize, f64),
) -> Result<()> {
    let d = model.dim;
    check_binary(data, d)?;
    if cfg.iterations == 0 || cfg.batch == 0 || !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
        return Err(DsbError::InvalidInput(format!(
            "--iters and --batch must be at least 1 and --lr positive, got {}, {}, {}",
            cfg.iterations, cfg.batch, cfg.lr
        )));
    }
    let params = model.net.params();
    let mut opt = Optimiser::new(params, cfg.lr, 10.0, cfg.iterations, cfg.ema)?;
    for it in 0..cfg.iterations {
        let value = fit::train_step(model, &mut opt, data, cfg.batch, it, rng)?;
        on_step(it, value);
    }
    opt.finish(params)
}

/// Rows of `dim` bits, independent with P(bit j = 1) = `probs[j]`.
pub fn independent_bits(probs: &[f64], n: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n)
        .flat_map(|_| {
            probs
                .iter()
                .map(|&p| f32::from(u8::from(rng.random::<f64>() < p)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The paper's "heartbeat" data: sequences of `len` bits with a 1 every `period` bits and 0s
/// elsewhere, at a uniformly random phase. Entropy: log₂(period) bits per sequence.
pub fn heartbeat(n: usize, len: usize, period: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n)
        .flat_map(|_| {
            let phase = rng.random_range(0..period.max(1));
            (0..len)
                .map(|i| f32::from(u8::from(i % period.max(1) == phase)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The entropy of independent bits with P(1) = `probs[j]`, bits per dimension.
pub fn entropy_bits_per_dim(probs: &[f64]) -> f64 {
    let h = |p: f64| {
        if p <= 0.0 || p >= 1.0 {
            0.0
        } else {
            -(p * p.log2() + (1.0 - p) * (1.0 - p).log2())
        }
    };
    probs.iter().map(|&p| h(p)).sum::<f64>() / probs.len().max(1) as f64
}

/// Bernoulli draws with probabilities `p` (uniforms from `rng`, so runs are reproducible).
fn bernoulli(p: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
    let dims = p.dims().to_vec();
    let u: Vec<f32> = (0..p.elem_count()).map(|_| rng.random::<f32>()).collect();
    let u = Tensor::from_vec(u, dims, p.device())?;
    Ok(u.lt(p)?.to_dtype(DType::F32)?)
}

fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .to_vec1::<f64>()?)
}

/// Data must be rows of `d` values, each 0 or 1, at least two rows.
fn check_binary(data: &[f32], d: usize) -> Result<()> {
    if data.len() < 2 * d || !data.len().is_multiple_of(d) {
        return Err(DsbError::InvalidInput(format!(
            "binary data needs at least two rows of {d} bits, got {} values",
            data.len()
        )));
    }
    if let Some(v) = data.iter().find(|&&v| v != 0.0 && v != 1.0) {
        return Err(DsbError::InvalidInput(format!(
            "binary data must be 0 or 1, found {v} (binarise it first)"
        )));
    }
    Ok(())
}

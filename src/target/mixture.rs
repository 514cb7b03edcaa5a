//! Isotropic Gaussian mixtures: the 40-mode `gmm` benchmark and configurable mixtures.

use super::Target;
use crate::error::{DsbError, Result};
use candle_core::{D, Device, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

/// The 40 means of the GMM40 benchmark, from `targets/gmm40_means.csv`
/// (uniform on [−40, 40]², drawn with JAX's legacy threefry generator, key 0).
const GMM40_MEANS: &str = include_str!("../../targets/gmm40_means.csv");

/// A normalised mixture Σᵢ wᵢ N(μᵢ, s² I), so log Z = 0.
///
/// Built-ins: `gmm` is GMM40, forty equal-weight unit-variance components with means uniform on
/// [−40, 40]² (the standard benchmark; its means ship in `targets/gmm40_means.csv`). `mixture` is a
/// configurable mixture (`--modes`, `--dim`, `--spread`): equal weights, unit variance, means
/// uniform on [−spread, spread]^dim drawn with a fixed seed.
#[derive(Debug, Clone)]
pub struct GaussianMixture {
    name: String,
    means: Vec<Vec<f64>>,
    weights: Vec<f64>,
    std: f64,
    means_t: Tensor,
    mean_sq_t: Tensor,
    log_w_t: Tensor,
    /// The same three on the host, for [`Target::grad_log_density_rows`]: the means `[k, d]`
    /// flattened, |μᵢ|², and log wᵢ plus the constant.
    host: (Vec<f32>, Vec<f32>, Vec<f32>),
    hints: super::SamplerHints,
}

impl GaussianMixture {
    /// A mixture with the given means (all of one dimension), weights (positive; normalised here)
    /// and common standard deviation.
    pub fn new(name: &str, means: Vec<Vec<f64>>, weights: Vec<f64>, std: f64) -> Result<Self> {
        let k = means.len();
        if k == 0 {
            return Err(DsbError::InvalidInput(
                "mixture: at least one mode is needed".into(),
            ));
        }
        let d = means[0].len();
        if d == 0 || means.iter().any(|m| m.len() != d) {
            return Err(DsbError::InvalidInput(
                "mixture: all means must have the same, positive dimension".into(),
            ));
        }
        if weights.len() != k || weights.iter().any(|&w| !(w > 0.0 && w.is_finite())) {
            return Err(DsbError::InvalidInput(format!(
                "mixture: need {k} positive finite weights, got {:?}",
                weights
            )));
        }
        if !(std > 0.0 && std.is_finite()) {
            return Err(DsbError::InvalidInput(format!(
                "mixture: the component standard deviation must be positive, got {std}"
            )));
        }
        let total: f64 = weights.iter().sum();
        let weights: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let flat: Vec<f32> = means.iter().flatten().map(|&v| v as f32).collect();
        let means_t = Tensor::from_vec(flat.clone(), (k, d), &Device::Cpu)?;
        let sq: Vec<f32> = means
            .iter()
            .map(|m| m.iter().map(|v| v * v).sum::<f64>() as f32)
            .collect();
        let mean_sq_t = Tensor::from_vec(sq.clone(), (1, k), &Device::Cpu)?;
        // log wᵢ − d/2 log(2π s²), the per-component constant.
        let c = -0.5 * d as f64 * (2.0 * std::f64::consts::PI * std * std).ln();
        let lw: Vec<f32> = weights.iter().map(|w| (w.ln() + c) as f32).collect();
        let log_w_t = Tensor::from_vec(lw.clone(), (1, k), &Device::Cpu)?;
        let host = (flat.clone(), sq.clone(), lw);
        Ok(Self {
            name: name.into(),
            means,
            weights,
            std,
            means_t,
            mean_sq_t,
            log_w_t,
            host,
            hints: super::SamplerHints::default(),
        })
    }

    /// GMM40: the 40-mode 2-D benchmark (see the type's documentation).
    pub fn gmm40() -> Self {
        let means: Vec<Vec<f64>> = crate::csv_table::parse(GMM40_MEANS)
            .expect("embedded gmm40 means")
            .rows
            .into_iter()
            .map(|r| r.values)
            .collect();
        let mut g = Self::new("gmm", means, vec![1.0; 40], 1.0).expect("gmm40 definition is valid");
        // 128 steps to T = 5 with a wider network, trained 1000 × 256 at lr 2·10⁻³: |log Ẑ|
        // 0.003 with all 40 modes (README, results).
        g.hints = super::SamplerHints {
            steps: Some(128),
            horizon: Some(5.0),
            width: Some(128),
            iterations: Some(1000),
            batch: Some(256),
            lr: Some(2e-3),
            ..Default::default()
        };
        g
    }

    /// `k` equal-weight unit-variance modes with means uniform on [−spread, spread]^d, drawn with
    /// a generator seeded by `seed`.
    pub fn random(k: usize, d: usize, spread: f64, seed: u64) -> Result<Self> {
        if !(spread > 0.0 && spread.is_finite()) {
            return Err(DsbError::InvalidInput(format!(
                "mixture: --spread must be positive, got {spread}"
            )));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let means = (0..k)
            .map(|_| (0..d).map(|_| rng.random_range(-spread..spread)).collect())
            .collect();
        Self::new("mixture", means, vec![1.0; k], 1.0)
    }

    /// Component weights (normalised).
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Component means.
    pub fn means(&self) -> &[Vec<f64>] {
        &self.means
    }

    /// Per-component log joint `log wᵢ + log N(x; μᵢ, s²I)`, `[batch, k]`.
    fn component_log_probs(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dev = x.device();
        let mu = self.means_t.to_device(dev)?;
        let x_sq = x.sqr()?.sum_keepdim(1)?;
        let cross = x.matmul(&mu.t()?)?;
        let dist = ((cross * -2.0)?.broadcast_add(&x_sq)?)
            .broadcast_add(&self.mean_sq_t.to_device(dev)?)?;
        (dist * (-0.5 / (self.std * self.std)))?.broadcast_add(&self.log_w_t.to_device(dev)?)
    }
}

/// Numerically stable `log Σ exp` along the last axis, differentiable (the max is a constant).
pub(crate) fn log_sum_exp_last(a: &Tensor) -> candle_core::Result<Tensor> {
    let m = a.max_keepdim(D::Minus1)?.detach();
    let s = a.broadcast_sub(&m)?.exp()?.sum_keepdim(D::Minus1)?.log()?;
    (s + m)?.squeeze(D::Minus1)
}

impl Target for GaussianMixture {
    fn sampler_hints(&self) -> super::SamplerHints {
        self.hints.clone()
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn dim(&self) -> usize {
        self.means[0].len()
    }
    fn log_density(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        log_sum_exp_last(&self.component_log_probs(x)?)
    }
    fn grad_log_density(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // ∇ log γ = Σᵢ rᵢ (μᵢ − x)/s², with responsibilities r = softmax(component log probs).
        let x = x.detach();
        let a = self.component_log_probs(&x)?;
        let r = candle_nn::ops::softmax(&a, D::Minus1)?;
        let pulled = r.matmul(&self.means_t.to_device(x.device())?)?;
        (pulled - x)? / (self.std * self.std)
    }
    fn has_host_gradient(&self) -> bool {
        true
    }
    /// [`Target::grad_log_density`] on the host, row by row, in its order of operations: the
    /// component log probabilities from the expanded |x − μᵢ|², their softmax, Σ rᵢμᵢ − x over
    /// s². A term more than 104 below the row's largest is 0 (as e^x is in f32) without calling
    /// `exp`, whose underflow path is slow.
    fn grad_log_density_rows(&self, x: &[f32], grad: &mut [f32]) -> candle_core::Result<()> {
        let (means, mean_sq, log_w) = &self.host;
        let (k, d) = (log_w.len(), self.means[0].len());
        let scale = (-0.5 / (self.std * self.std)) as f32;
        let inv_var = (1.0 / (self.std * self.std)) as f32;
        let mut a = vec![0.0f32; k];
        for (xr, gr) in x.chunks_exact(d).zip(grad.chunks_exact_mut(d)) {
            let x_sq: f32 = xr.iter().map(|v| v * v).sum();
            for ((ai, mu), (&msq, &lw)) in a
                .iter_mut()
                .zip(means.chunks_exact(d))
                .zip(mean_sq.iter().zip(log_w))
            {
                let cross: f32 = xr.iter().zip(mu).map(|(u, m)| u * m).sum();
                *ai = ((cross * -2.0 + x_sq) + msq) * scale + lw;
            }
            let top = a.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut total = 0.0f32;
            for ai in a.iter_mut() {
                let v = *ai - top;
                *ai = if v < -104.0 { 0.0 } else { v.exp() };
                total += *ai;
            }
            gr.fill(0.0);
            for (ai, mu) in a.iter().zip(means.chunks_exact(d)) {
                let r = ai / total;
                for (g, m) in gr.iter_mut().zip(mu) {
                    *g += r * m;
                }
            }
            for (g, v) in gr.iter_mut().zip(xr) {
                *g = (*g - v) * inv_var;
            }
        }
        Ok(())
    }
    fn log_z(&self) -> Option<f64> {
        Some(0.0)
    }
    fn exact_samples(&self, n: usize, rng: &mut dyn rand::RngCore) -> Option<Vec<Vec<f64>>> {
        let cum: Vec<f64> = self
            .weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w;
                Some(*acc)
            })
            .collect();
        Some(
            (0..n)
                .map(|_| {
                    let u: f64 = rng.random();
                    let i = cum.iter().position(|&c| u < c).unwrap_or(cum.len() - 1);
                    self.means[i]
                        .iter()
                        .map(|m| {
                            let e: f64 = StandardNormal.sample(&mut *rng);
                            m + self.std * e
                        })
                        .collect()
                })
                .collect(),
        )
    }
    fn modes(&self) -> Option<(Vec<Vec<f64>>, Vec<f64>)> {
        Some((self.means.clone(), self.weights.clone()))
    }
    fn suggested_sigma(&self) -> Option<f64> {
        // Root mean square distance of the modes from the origin, per coordinate, plus the
        // component width: the prior then reaches every mode.
        let d = self.dim() as f64;
        let msq: f64 = self
            .means
            .iter()
            .zip(&self.weights)
            .map(|(m, w)| w * m.iter().map(|v| v * v).sum::<f64>())
            .sum();
        Some((msq / d).sqrt() + self.std)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmm40_loads_forty_means_in_the_box() {
        let g = GaussianMixture::gmm40();
        assert_eq!(g.means().len(), 40);
        assert!(g.means().iter().flatten().all(|v| v.abs() <= 40.0));
    }

    #[test]
    fn density_is_normalised_and_gradient_matches_autograd() {
        let g = GaussianMixture::new("t", vec![vec![0.0], vec![3.0]], vec![1.0, 3.0], 0.5).unwrap();
        // Riemann sum of the density on a fine grid.
        let xs: Vec<f32> = (0..20000).map(|i| -5.0 + i as f32 * 0.0005).collect();
        let x = Tensor::from_vec(xs, (20000, 1), &Device::Cpu).unwrap();
        let lp = g.log_density(&x).unwrap().exp().unwrap().sum_all().unwrap();
        let mass = lp.to_scalar::<f32>().unwrap() * 0.0005;
        assert!((mass - 1.0).abs() < 1e-3, "mass {mass}");
        let probe = Tensor::new(&[[0.7f32], [2.2], [-1.0]], &Device::Cpu).unwrap();
        assert!(super::super::autograd_gap(&g, &probe) < 1e-4);
    }

    /// The host gradient equals candle's to 10⁻⁵ relative on the 40-mode benchmark, near modes,
    /// between them and far outside (where most components' terms underflow), and on a 3-D
    /// mixture with unequal weights.
    #[test]
    fn host_gradient_equals_the_candle_gradient() {
        let mut rng = StdRng::seed_from_u64(3);
        let uneven = GaussianMixture::new(
            "u",
            vec![
                vec![0.0, 1.0, -2.0],
                vec![3.0, 0.5, 0.0],
                vec![-4.0, 2.0, 1.0],
            ],
            vec![1.0, 3.0, 0.5],
            0.7,
        )
        .unwrap();
        for (g, spread) in [(GaussianMixture::gmm40(), 60.0f32), (uneven, 8.0)] {
            let d = g.dim();
            let mut x: Vec<f32> = (0..300 * d)
                .map(|_| rng.random_range(-spread..spread))
                .collect();
            // Rows on the modes themselves.
            for (row, m) in x.chunks_exact_mut(d).zip(g.means()) {
                for (v, &mu) in row.iter_mut().zip(m) {
                    *v = mu as f32 + 0.1;
                }
            }
            crate::test_support::assert_host_gradient_matches(&g, &x, 1e-5);
        }
    }
}

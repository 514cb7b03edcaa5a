//! Persistent MCMC chains that supply the starts of the off-policy noising paths of the
//! log-variance loss (`TrainConfig::replay`).
//!
//! On-policy paths only show the loss where the sampler already goes; a sampler stuck in part of
//! the target (the funnel's x₀ collapses to where x₁..₉'s unit scale fits) gets no signal from the
//! rest. Noising paths started at target draws are paths of P itself, so Var_P[log dP/dQ_θ] is
//! mass-covering. Exact target draws are not available; these chains provide approximate ones.
//! They start at the first batch's endpoints (prior draws) and every training iteration moves
//! each of them by a few HMC transitions, so over a run of hundreds of iterations they travel far
//! (thousands of gradient steps), independently of what the sampler has learned.
//!
//! The leapfrog step size is drawn log-uniformly on [10⁻³, 2] for every chain and transition: a
//! mixture of exact HMC kernels, so the chains keep the target invariant, and some proposals fit
//! wherever a chain is, in a narrow neck or a wide region. Per-chain step sizes adapted towards
//! an acceptance rate (tried first) depend on the chain's state and biased the chains: on the
//! funnel they never went below x₀ ≈ −2 (target 5% quantile −4.9) and sat too high; the jittered
//! ones matched the target's x₀ quantiles within about 0.3 after 200 iterations.
//!
//! The chains shape training only: the estimates come from the sampler's own weighted paths,
//! whose weights are exact whatever the chains do.

use crate::error::Result;
use crate::mcmc::{DiagGaussian, Population, Preconditioner, TemperedMove};
use crate::target::{Target, Want, evaluate};
use candle_core::{DType, Device, Tensor};

/// Leapfrog steps per HMC transition.
const LEAPFROG: usize = 5;
/// Range of the leapfrog step size, drawn log-uniformly afresh for every chain and transition.
const EPS_RANGE: (f64, f64) = (1e-3, 2.0);

/// A population of HMC chains on the target, moved by the particle methods' HMC
/// ([`TemperedMove::hmc_per_particle`] at β = 1 with the identity preconditioner).
#[derive(Debug)]
pub(crate) struct ReplayChains {
    /// The chains' states, f64 rows.
    x: Vec<f64>,
    dim: usize,
    device: Device,
}

impl ReplayChains {
    /// Chains started at the rows of `x` `[m, dim]` (kept in f64; the device is where
    /// [`ReplayChains::states`] puts them).
    pub(crate) fn new(x: &Tensor) -> Result<Self> {
        let dim = x.dims2()?.1;
        Ok(Self {
            x: x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
            dim,
            device: x.device().clone(),
        })
    }

    /// The current states `[m, dim]`, f32 on the sampler's device.
    pub(crate) fn states(&self) -> Result<Tensor> {
        let m = self.x.len() / self.dim;
        let v: Vec<f32> = self.x.iter().map(|&v| v as f32).collect();
        Ok(Tensor::from_vec(v, (m, self.dim), &self.device)?)
    }

    /// Puts [`ReplayChains::states`] on `device`.
    pub(crate) fn set_device(&mut self, device: &Device) {
        self.device = device.clone();
    }

    /// The current states `[m, dim]` in f64 (what a checkpoint keeps).
    pub(crate) fn states_f64(&self) -> Result<Tensor> {
        let m = self.x.len() / self.dim;
        Ok(Tensor::from_vec(
            self.x.clone(),
            (m, self.dim),
            &Device::Cpu,
        )?)
    }

    /// `moves` HMC transitions of every chain, each with a step size drawn log-uniformly on
    /// `EPS_RANGE` per chain. Returns the number of target gradient evaluations made (one per
    /// chain to start, then one per chain and leapfrog step).
    pub(crate) fn advance(
        &mut self,
        target: &dyn Target,
        moves: usize,
        rng: &mut impl rand::Rng,
    ) -> Result<u64> {
        let d = self.dim;
        let m = self.x.len() / d;
        let (l, g) = evaluate(target, &self.x, d, Want::Both)?;
        // At β = 1 the tempered density is the target's; the start only fills the interface.
        let start = DiagGaussian {
            mean: vec![0.0; d],
            scale: vec![1.0; d],
        };
        let mut pop = Population {
            dim: d,
            l0: self.x.chunks(d).map(|r| start.log_density(r)).collect(),
            x: std::mem::take(&mut self.x),
            l,
            g,
            log_w: vec![0.0; m],
        };
        let pre = Preconditioner::Diagonal(vec![1.0; d]);
        let mover = TemperedMove {
            target,
            start: &start,
            beta: 1.0,
            pre: &pre,
        };
        let (lo, hi) = (EPS_RANGE.0.ln(), EPS_RANGE.1.ln());
        let mut counts = (0, 0);
        for _ in 0..moves {
            let eps: Vec<f64> = (0..m).map(|_| rng.random_range(lo..hi).exp()).collect();
            mover.hmc_per_particle(&mut pop, &eps, LEAPFROG, rng, &mut counts)?;
        }
        self.x = pop.x;
        Ok(m as u64 + counts.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::CorrelatedGaussian;
    use nalgebra::DMatrix;
    use rand::SeedableRng;

    /// Chains started far out on a correlated Gaussian reach its law: their mean and covariance
    /// after 200 transitions match the target's within a few standard errors (2000 chains).
    #[test]
    fn chains_converge_to_the_target() {
        let cov = DMatrix::from_row_slice(2, 2, &[2.0, 0.9, 0.9, 1.0]);
        let target = CorrelatedGaussian::new(vec![1.0, -1.0], cov.clone()).unwrap();
        let m = 2000;
        let start = Tensor::full(5.0f32, (m, 2), &Device::Cpu).unwrap();
        let mut chains = ReplayChains::new(&start).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let evals = chains.advance(&target, 200, &mut rng).unwrap();
        assert_eq!(evals, (m * (1 + 200 * LEAPFROG)) as u64);
        let x = chains.states_f64().unwrap().to_vec2::<f64>().unwrap();
        let mean = |j: usize| x.iter().map(|r| r[j]).sum::<f64>() / m as f64;
        let (m0, m1) = (mean(0), mean(1));
        // Standard errors of the means: sqrt(var / m) (chains are independent).
        assert!(
            (m0 - 1.0).abs() < 4.0 * (2.0 / m as f64).sqrt(),
            "mean 0: {m0}"
        );
        assert!(
            (m1 + 1.0).abs() < 4.0 * (1.0 / m as f64).sqrt(),
            "mean 1: {m1}"
        );
        let var0 = x.iter().map(|r| (r[0] - m0).powi(2)).sum::<f64>() / m as f64;
        let cov01 = x.iter().map(|r| (r[0] - m0) * (r[1] - m1)).sum::<f64>() / m as f64;
        // s.e. of a Gaussian variance estimate: var·sqrt(2/m); of a covariance:
        // sqrt((var0 var1 + cov²)/m).
        assert!(
            (var0 - 2.0).abs() < 4.0 * 2.0 * (2.0 / m as f64).sqrt(),
            "var 0: {var0}"
        );
        assert!(
            (cov01 - 0.9).abs() < 4.0 * ((2.0 + 0.81) / m as f64).sqrt(),
            "cov: {cov01}"
        );
    }
}

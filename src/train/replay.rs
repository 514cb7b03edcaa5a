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
use crate::target::Target;
use candle_core::{DType, Tensor};

/// Leapfrog steps per HMC transition.
const LEAPFROG: usize = 5;
/// Range of the leapfrog step size, drawn log-uniformly afresh for every chain and transition.
const EPS_RANGE: (f64, f64) = (1e-3, 2.0);

/// A population of HMC chains on the target.
#[derive(Debug)]
pub(crate) struct ReplayChains {
    x: Tensor,
}

fn to_rows(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

impl ReplayChains {
    /// Chains started at the rows of `x` `[m, dim]`.
    pub(crate) fn new(x: &Tensor) -> Result<Self> {
        Ok(Self { x: x.detach() })
    }

    /// The current states `[m, dim]`.
    pub(crate) fn states(&self) -> &Tensor {
        &self.x
    }

    /// Log density and gradient at `x`; non-finite values are left as they are (a proposal
    /// there is rejected).
    fn eval(target: &dyn Target, x: &Tensor) -> Result<(Vec<f64>, Tensor)> {
        let lp = to_rows(&target.log_density(x)?)?;
        let g = target.grad_log_density(&x.detach())?;
        Ok((lp, g))
    }

    /// `moves` HMC transitions of every chain. Returns the number of target gradient
    /// evaluations made (one per chain to start, then one per chain and leapfrog step).
    pub(crate) fn advance(
        &mut self,
        target: &dyn Target,
        moves: usize,
        rng: &mut impl rand::Rng,
    ) -> Result<u64> {
        let (m, d) = self.x.dims2()?;
        let dev = self.x.device().clone();
        let (mut lp, mut g) = Self::eval(target, &self.x)?;
        for _ in 0..moves {
            let (lo, hi) = (EPS_RANGE.0.ln(), EPS_RANGE.1.ln());
            let eps: Vec<f32> = (0..m)
                .map(|_| rng.random_range(lo..hi).exp() as f32)
                .collect();
            let eps_t = Tensor::from_vec(eps, (m, 1), &dev)?;
            let p0 = crate::sampler::normal_tensor(rng, m, d, &dev)?;
            let clean = |t: &Tensor| crate::sampler::clean_and_clip(t, 1e6);
            let mut p = (&p0 + clean(&g)?.broadcast_mul(&(&eps_t * 0.5)?)?)?;
            let mut x = self.x.clone();
            let mut lp_new = lp.clone();
            let mut g_new = g.clone();
            for l in 0..LEAPFROG {
                x = (x + p.broadcast_mul(&eps_t)?)?;
                (lp_new, g_new) = Self::eval(target, &x)?;
                let scale = if l + 1 == LEAPFROG { 0.5 } else { 1.0 };
                p = (p + clean(&g_new)?.broadcast_mul(&(&eps_t * scale)?)?)?;
            }
            let k0 = to_rows(&(p0.sqr()?.sum(1)? * 0.5)?)?;
            let k1 = to_rows(&(p.sqr()?.sum(1)? * 0.5)?)?;
            let g_finite = to_rows(&g_new.abs()?.max(1)?)?;
            let mut accept = Vec::with_capacity(m);
            for i in 0..m {
                let log_a = (lp_new[i] - k1[i]) - (lp[i] - k0[i]);
                let a = if log_a.is_finite() && g_finite[i].is_finite() {
                    log_a.min(0.0).exp()
                } else {
                    0.0
                };
                accept.push(rng.random::<f64>() < a);
            }
            let mask = Tensor::from_vec(
                accept.iter().map(|&b| u8::from(b)).collect::<Vec<_>>(),
                (m, 1),
                &dev,
            )?;
            self.x = mask.broadcast_as((m, d))?.where_cond(&x, &self.x)?;
            g = mask.broadcast_as((m, d))?.where_cond(&g_new, &g)?;
            for i in 0..m {
                if accept[i] {
                    lp[i] = lp_new[i];
                }
            }
        }
        Ok((m * (1 + moves * LEAPFROG)) as u64)
    }
}

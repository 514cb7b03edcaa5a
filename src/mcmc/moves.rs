//! The particle population of the particle methods and its Metropolis-adjusted moves (MALA and
//! HMC) towards a tempered target π_β ∝ π₀^{1−β} γ̃^β, preconditioned by a factor L. One
//! implementation serves adaptive-tempering SMC ([`crate::baseline`]), the sequential diffusion
//! sampler's moves ([`crate::sequential`]) and the replay chains of training (β = 1, L = I,
//! a step size per chain; [`crate::train`]).

use super::gaussian::DiagGaussian;
use super::precondition::Preconditioner;
use crate::error::Result;
use crate::target::{Target, Want, evaluate};
use rand::Rng;
use rand_distr::StandardNormal;

/// The particle population with its cached densities under π₀ and the target (shared with the
/// sequential diffusion sampler, [`crate::sequential`]).
pub(crate) struct Population {
    pub(crate) dim: usize,
    pub(crate) x: Vec<f64>,
    /// log π₀ per particle.
    pub(crate) l0: Vec<f64>,
    /// log γ̃ per particle (−∞ where not finite).
    pub(crate) l: Vec<f64>,
    /// ∇ log γ̃ per particle, row-major.
    pub(crate) g: Vec<f64>,
    /// Normalised log weights.
    pub(crate) log_w: Vec<f64>,
}

impl Population {
    /// Keeps the particles `idx` (with repeats), in that order, with equal weights.
    pub(crate) fn select(&mut self, idx: &[usize]) {
        let n = idx.len();
        let d = self.dim;
        self.x = idx
            .iter()
            .flat_map(|&i| self.x[i * d..(i + 1) * d].to_vec())
            .collect();
        self.g = idx
            .iter()
            .flat_map(|&i| self.g[i * d..(i + 1) * d].to_vec())
            .collect();
        self.l0 = idx.iter().map(|&i| self.l0[i]).collect();
        self.l = idx.iter().map(|&i| self.l[i]).collect();
        self.log_w = vec![-(n as f64).ln(); n];
    }

    /// The Metropolis–Hastings step for particle `i`: accepts `proposal` (its position, target
    /// gradient, log π₀ and log γ̃) with probability min(1, e^{log_alpha}) when `valid`; returns
    /// that probability (0 when invalid or NaN).
    fn metropolis(
        &mut self,
        i: usize,
        log_alpha: f64,
        valid: bool,
        proposal: (&[f64], &[f64], f64, f64),
        rng: &mut impl Rng,
    ) -> f64 {
        let alpha = if valid && !log_alpha.is_nan() {
            log_alpha.min(0.0).exp()
        } else {
            0.0
        };
        if rng.random::<f64>() < alpha {
            let d = self.dim;
            let (y, gy, l0y, ly) = proposal;
            self.x[i * d..(i + 1) * d].copy_from_slice(y);
            self.g[i * d..(i + 1) * d].copy_from_slice(gy);
            self.l0[i] = l0y;
            self.l[i] = ly;
        }
        alpha
    }
}

/// log π_β = (1−β) log π₀ + β log γ̃, with β = 0 ignoring the target (even where it is −∞).
pub(crate) fn tempered(l0: f64, l: f64, beta: f64) -> f64 {
    if beta == 0.0 {
        l0
    } else if !l.is_finite() {
        f64::NEG_INFINITY
    } else {
        (1.0 - beta) * l0 + beta * l
    }
}

/// log π_β and its gradient at every particle of `x` with target values `l`, `g`.
fn tempered_grad(start: &DiagGaussian, x: &[f64], g: &[f64], beta: f64, out: &mut [f64]) {
    let d = start.dim();
    for ((xr, gr), o) in x.chunks(d).zip(g.chunks(d)).zip(out.chunks_mut(d)) {
        start.grad_into(xr, o);
        for j in 0..d {
            o[j] = (1.0 - beta) * o[j] + beta * gr[j];
        }
    }
}

/// What a move of the particles towards π_β ∝ π₀^(1−β) π^β needs besides the particles and
/// the step: the target π, the start π₀, β and the preconditioner L. Its moves count the target
/// evaluations in `counts` (log densities, gradients) and return the mean acceptance
/// probability.
pub(crate) struct TemperedMove<'a> {
    /// The target π.
    pub target: &'a dyn Target,
    /// The start π₀.
    pub start: &'a DiagGaussian,
    /// The temperature β.
    pub beta: f64,
    /// The preconditioner L.
    pub pre: &'a Preconditioner,
}

impl TemperedMove<'_> {
    /// One preconditioned MALA move of every particle with step `h`.
    /// In u = L⁻¹x: y = x + L(½h² Lᵀ∇log π_β(x) + h ξ).
    pub(crate) fn mala(
        &self,
        pop: &mut Population,
        h: f64,
        rng: &mut impl Rng,
        counts: &mut (u64, u64),
    ) -> Result<f64> {
        let d = pop.dim;
        let n = pop.l.len();
        let mut gt = vec![0.0; n * d];
        tempered_grad(self.start, &pop.x, &pop.g, self.beta, &mut gt);
        let gu = self.pre.apply_transpose(&gt);
        let xi: Vec<f64> = (0..n * d).map(|_| rng.sample(StandardNormal)).collect();
        let step: Vec<f64> = gu
            .iter()
            .zip(&xi)
            .map(|(g, e)| 0.5 * h * h * g + h * e)
            .collect();
        let y: Vec<f64> = pop
            .x
            .iter()
            .zip(self.pre.apply(&step))
            .map(|(a, b)| a + b)
            .collect();
        let (ly, gy) = evaluate(self.target, &y, d, Want::Both)?;
        counts.0 += n as u64;
        counts.1 += n as u64;
        let mut gty = vec![0.0; n * d];
        tempered_grad(self.start, &y, &gy, self.beta, &mut gty);
        let guy = self.pre.apply_transpose(&gty);
        let diff: Vec<f64> = pop.x.iter().zip(&y).map(|(a, b)| a - b).collect();
        let diff_u = self.pre.solve(&diff);
        let log_alpha = |i: usize, new: f64, old: f64| {
            // The reverse proposal's standardised residual, and the forward one (ξ).
            let mut back = 0.0;
            let mut fwd = 0.0;
            for k in i * d..(i + 1) * d {
                let r = (diff_u[k] - 0.5 * h * h * guy[k]) / h;
                back += r * r;
                fwd += xi[k] * xi[k];
            }
            new - old - 0.5 * back + 0.5 * fwd
        };
        Ok(self.accept(pop, (&y, &ly, &gy), log_alpha, |_| true, rng))
    }

    /// One preconditioned HMC move of every particle with step `eps` and `leapfrog` steps
    /// (identity mass in u = L⁻¹x: momentum p ~ N(0, I), position steps εLp, momentum kicks
    /// εLᵀ∇log π_β).
    pub(crate) fn hmc(
        &self,
        pop: &mut Population,
        eps: f64,
        leapfrog: usize,
        rng: &mut impl Rng,
        counts: &mut (u64, u64),
    ) -> Result<f64> {
        let eps = vec![eps; pop.l.len()];
        self.hmc_per_particle(pop, &eps, leapfrog, rng, counts)
    }

    /// [`TemperedMove::hmc`] with step size `eps[i]` for particle i: a different exact HMC
    /// kernel per particle, chosen independently of its state, so each keeps π_β invariant.
    pub(crate) fn hmc_per_particle(
        &self,
        pop: &mut Population,
        eps: &[f64],
        leapfrog: usize,
        rng: &mut impl Rng,
        counts: &mut (u64, u64),
    ) -> Result<f64> {
        let d = pop.dim;
        let n = pop.l.len();
        assert_eq!(eps.len(), n, "one step size per particle");
        let mut p: Vec<f64> = (0..n * d).map(|_| rng.sample(StandardNormal)).collect();
        let kinetic0: Vec<f64> = p
            .chunks(d)
            .map(|r| 0.5 * r.iter().map(|v| v * v).sum::<f64>())
            .collect();
        let mut gt = vec![0.0; n * d];
        tempered_grad(self.start, &pop.x, &pop.g, self.beta, &mut gt);
        let mut y = pop.x.clone();
        let mut ly = pop.l.clone();
        let mut gy = pop.g.clone();
        let mut diverged = vec![false; n];
        for (k, (pk, g)) in p.iter_mut().zip(self.pre.apply_transpose(&gt)).enumerate() {
            *pk += 0.5 * eps[k / d] * g;
        }
        for step in 0..leapfrog {
            for (k, (yk, v)) in y.iter_mut().zip(self.pre.apply(&p)).enumerate() {
                *yk += eps[k / d] * v;
            }
            let last = step + 1 == leapfrog;
            let (l, g) = evaluate(
                self.target,
                &y,
                d,
                if last { Want::Both } else { Want::Gradient },
            )?;
            counts.1 += n as u64;
            if last {
                counts.0 += n as u64;
            }
            for i in 0..n {
                if l[i] == f64::NEG_INFINITY {
                    diverged[i] = true;
                }
            }
            ly = l;
            gy = g;
            tempered_grad(self.start, &y, &gy, self.beta, &mut gt);
            let f = if last { 0.5 } else { 1.0 };
            for (k, (pk, g)) in p.iter_mut().zip(self.pre.apply_transpose(&gt)).enumerate() {
                *pk += f * eps[k / d] * g;
            }
        }
        let log_alpha = |i: usize, new: f64, old: f64| {
            let kinetic1 = 0.5 * p[i * d..(i + 1) * d].iter().map(|v| v * v).sum::<f64>();
            new - kinetic1 - old + kinetic0[i]
        };
        Ok(self.accept(pop, (&y, &ly, &gy), log_alpha, |i| !diverged[i], rng))
    }

    /// The Metropolis step of a move: each particle i takes its proposal (row i of `y`, with
    /// target log density `ly[i]` and gradient row i of `gy`) with probability
    /// min(1, exp(`log_alpha(i, new, old)`)), `new` and `old` the tempered log densities of the
    /// proposal and the particle; a proposal is rejected outright unless `valid(i)` and `new` is
    /// finite. Returns the mean acceptance probability.
    fn accept(
        &self,
        pop: &mut Population,
        (y, ly, gy): (&[f64], &[f64], &[f64]),
        log_alpha: impl Fn(usize, f64, f64) -> f64,
        valid: impl Fn(usize) -> bool,
        rng: &mut impl Rng,
    ) -> f64 {
        let (d, n) = (pop.dim, ly.len());
        let mut acc = 0.0;
        for i in 0..n {
            let yr = &y[i * d..(i + 1) * d];
            let l0y = self.start.log_density(yr);
            let new = tempered(l0y, ly[i], self.beta);
            let old = tempered(pop.l0[i], pop.l[i], self.beta);
            let proposal = (yr, &gy[i * d..(i + 1) * d], l0y, ly[i]);
            acc += pop.metropolis(
                i,
                log_alpha(i, new, old),
                valid(i) && new.is_finite(),
                proposal,
                rng,
            );
        }
        acc / n as f64
    }
}

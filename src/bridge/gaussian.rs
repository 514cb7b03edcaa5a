//! The Schrödinger bridge between two Gaussians with a Brownian reference, in closed form and
//! as an IPF problem.
//!
//! Between N(m₀, Σ₀) at t = 0 and N(m₁, Σ₁) at t = 1 with reference Brownian motion of variance
//! σ² per unit time, the bridge is a Gaussian process with (docs/design.md § Gaussian bridge)
//!
//! D = (4 Σ₀^{½} Σ₁ Σ₀^{½} + σ⁴ I)^{½},  C = Cov(X₀, X₁) = ½ (Σ₀^{½} D Σ₀^{−½} − σ² I),
//! Σ_t = (1−t)² Σ₀ + t² Σ₁ + t(1−t)(C + Cᵀ) + σ² t(1−t) I,  μ_t = (1−t) m₀ + t m₁.
//!
//! As an IPF problem, N(m₀, Σ₀) is the "target" (its density is known: a
//! [`CorrelatedGaussian`]) and N(m₁, Σ₁) the prior the backward process starts from, so the
//! same sampler, forward fit and backward objective as for any target are checked against the
//! closed form.

use crate::error::{DsbError, Result};
use crate::process::{ReferenceKind, Schedule};
use crate::sampler::{DiffusionSampler, SamplerConfig};
use crate::target::{CorrelatedGaussian, Target};
use candle_core::DType;
use nalgebra::{DMatrix, DVector};

/// Two Gaussian end points and a Brownian reference of variance σ² on [0, 1].
#[derive(Debug, Clone)]
pub struct GaussianBridge {
    m0: DVector<f64>,
    s0: DMatrix<f64>,
    m1: DVector<f64>,
    s1: DMatrix<f64>,
    sigma: f64,
}

/// Symmetric square root (or inverse square root with `power` = −½) by eigendecomposition.
fn sym_power(m: &DMatrix<f64>, power: f64) -> DMatrix<f64> {
    let e = m.clone().symmetric_eigen();
    let d = DMatrix::from_diagonal(&e.eigenvalues.map(|v| v.max(0.0).powf(power)));
    &e.eigenvectors * d * e.eigenvectors.transpose()
}

impl GaussianBridge {
    /// The bridge from N(m0, s0) at t = 0 to N(m1, s1) at t = 1 with reference σ dW.
    pub fn new(
        m0: DVector<f64>,
        s0: DMatrix<f64>,
        m1: DVector<f64>,
        s1: DMatrix<f64>,
        sigma: f64,
    ) -> Result<Self> {
        let d = m0.len();
        if m1.len() != d || s0.shape() != (d, d) || s1.shape() != (d, d) {
            return Err(DsbError::InvalidInput(format!(
                "bridge end points disagree in dimension: means {} and {}, covariances {:?} and {:?}",
                d,
                m1.len(),
                s0.shape(),
                s1.shape()
            )));
        }
        if !(sigma > 0.0 && sigma.is_finite()) {
            return Err(DsbError::InvalidInput(format!(
                "the reference σ must be positive, got {sigma}"
            )));
        }
        for (name, s) in [("Σ₀", &s0), ("Σ₁", &s1)] {
            if s.clone().cholesky().is_none() || (s - s.transpose()).abs().max() > 1e-9 {
                return Err(DsbError::InvalidInput(format!(
                    "{name} must be symmetric positive definite"
                )));
            }
        }
        Ok(Self {
            m0,
            s0,
            m1,
            s1,
            sigma,
        })
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.m0.len()
    }

    /// The closed-form cross-covariance C = Cov(X₀, X₁) of the bridge.
    pub fn cross_covariance(&self) -> DMatrix<f64> {
        let d = self.dim();
        let s4 = self.sigma.powi(4);
        let r0 = sym_power(&self.s0, 0.5);
        let r0i = sym_power(&self.s0, -0.5);
        let inner = (&r0 * &self.s1 * &r0) * 4.0 + DMatrix::identity(d, d) * s4;
        let dm = sym_power(&inner, 0.5);
        (&r0 * dm * r0i - DMatrix::identity(d, d) * self.sigma.powi(2)) * 0.5
    }

    /// The bridge's marginal covariance Σ_t.
    pub fn marginal_covariance(&self, t: f64) -> DMatrix<f64> {
        let d = self.dim();
        let c = self.cross_covariance();
        &self.s0 * (1.0 - t).powi(2)
            + &self.s1 * t * t
            + (&c + c.transpose()) * (t * (1.0 - t))
            + DMatrix::identity(d, d) * (self.sigma.powi(2) * t * (1.0 - t))
    }

    /// The bridge's marginal mean μ_t.
    pub fn marginal_mean(&self, t: f64) -> DVector<f64> {
        &self.m0 * (1.0 - t) + &self.m1 * t
    }

    /// `n` independent draws of each end, N(m₀, Σ₀) and N(m₁, Σ₁), as points (row-major): the
    /// data of the same bridge solved from samples through the data-bridge path
    /// ([`crate::fit::Fit::bridge_with_data`], `dsb bridge` on CSV files), whose coupling
    /// must then have [`GaussianBridge::cross_covariance`] (tests/bridge.rs).
    pub fn sample_ends(
        &self,
        n: usize,
        rng: &mut impl rand::Rng,
    ) -> Result<(crate::data::Points, crate::data::Points)> {
        let d = self.dim();
        let draw = |m: &DVector<f64>, s: &DMatrix<f64>, rng: &mut dyn rand::RngCore| {
            let l = s.clone().cholesky().expect("checked in new").l();
            let mut out = Vec::with_capacity(n * d);
            for _ in 0..n {
                let z = DVector::from_fn(d, |_, _| {
                    rand_distr::Distribution::<f64>::sample(&rand_distr::StandardNormal, rng)
                });
                out.extend((m + &l * z).iter().map(|&v| v as f32));
            }
            out
        };
        let a = draw(&self.m0, &self.s0, rng);
        let b = draw(&self.m1, &self.s1, rng);
        Ok((
            crate::data::Points::new(a, n, d)?,
            crate::data::Points::new(b, n, d)?,
        ))
    }

    /// N(m₀, Σ₀) as a target for the sampler (unnormalised, its log Z known).
    pub fn start_target(&self) -> Result<CorrelatedGaussian> {
        CorrelatedGaussian::new(self.m0.iter().copied().collect(), self.s0.clone())
    }

    /// Sampler settings for this bridge: Brownian reference of scale σ on a uniform grid of
    /// `steps` steps over [0, 1], prior N(m₁, Σ₁), a network of `width` × `depth`.
    pub fn sampler_config(&self, steps: usize, width: usize, depth: usize) -> SamplerConfig {
        let d = self.dim();
        let min_var = self.s0.clone().symmetric_eigen().eigenvalues.min();
        SamplerConfig {
            sigma: self.sigma,
            reference: ReferenceKind::Brownian,
            prior_mean: Some(self.m1.iter().copied().collect()),
            prior_cov: Some((0..d * d).map(|i| self.s1[(i / d, i % d)]).collect()),
            steps,
            horizon: 1.0,
            schedule: Schedule::Uniform,
            width,
            depth,
            length_scale: min_var.sqrt(),
            ..Default::default()
        }
    }
}

/// Empirical moments of a bridge's paths: the two ends, the middle and their cross-covariance.
#[derive(Debug, Clone)]
pub struct BridgeMoments {
    /// Mean of X₀.
    pub mean0: DVector<f64>,
    /// Mean of X₁.
    pub mean1: DVector<f64>,
    /// Cov(X₀).
    pub cov0: DMatrix<f64>,
    /// Cov(X₁).
    pub cov1: DMatrix<f64>,
    /// Cov(X_t) at the grid time nearest ½.
    pub cov_half: DMatrix<f64>,
    /// The grid time used for `cov_half`.
    pub t_half: f64,
    /// Cov(X₀, X₁).
    pub cross: DMatrix<f64>,
}

fn to_matrix(t: &candle_core::Tensor) -> Result<DMatrix<f64>> {
    let v = t.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let (n, d) = (v.len(), v.first().map_or(0, |r| r.len()));
    Ok(DMatrix::from_fn(n, d, |i, j| v[i][j]))
}

fn centred(x: &DMatrix<f64>) -> (DVector<f64>, DMatrix<f64>) {
    let mean = x.row_mean().transpose();
    let mut c = x.clone();
    for mut row in c.row_iter_mut() {
        row -= mean.transpose();
    }
    (mean, c)
}

/// Simulates `n` paths of the sampler's backward process (unweighted: the bridge itself, not
/// its reweighting) and returns their end, middle and cross moments.
pub fn bridge_moments(
    sampler: &DiffusionSampler,
    target: &dyn Target,
    n: usize,
    rng: &mut impl rand::Rng,
) -> Result<BridgeMoments> {
    let steps = sampler.grid().steps();
    let times = sampler.grid().times().to_vec();
    let half = (0..=steps)
        .min_by(|&a, &b| (times[a] - 0.5).abs().total_cmp(&(times[b] - 0.5).abs()))
        .unwrap_or(0);
    let (mut x0, mut x1, mut xh) = (Vec::new(), Vec::new(), Vec::new());
    let mut done = 0;
    while done < n {
        let b = 2048.min(n - done);
        let p = sampler.simulate(target, b, rng, true)?;
        x0.push(to_matrix(&p.states[0])?);
        x1.push(to_matrix(&p.states[steps])?);
        xh.push(to_matrix(&p.states[half])?);
        done += b;
    }
    let stack = |v: Vec<DMatrix<f64>>| -> DMatrix<f64> {
        let d = v[0].ncols();
        let rows: usize = v.iter().map(|m| m.nrows()).sum();
        let mut out = DMatrix::zeros(rows, d);
        let mut r = 0;
        for m in v {
            out.rows_mut(r, m.nrows()).copy_from(&m);
            r += m.nrows();
        }
        out
    };
    let (x0, x1, xh) = (stack(x0), stack(x1), stack(xh));
    let nn = (x0.nrows() - 1) as f64;
    let (mean0, c0) = centred(&x0);
    let (mean1, c1) = centred(&x1);
    let (_, ch) = centred(&xh);
    Ok(BridgeMoments {
        mean0,
        mean1,
        cov0: c0.transpose() * &c0 / nn,
        cov1: c1.transpose() * &c1 / nn,
        cov_half: ch.transpose() * &ch / nn,
        t_half: times[half],
        cross: c0.transpose() * &c1 / nn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The closed form satisfies its defining properties: with Σ₀ = Σ₁ = I in 1-D the entropic
    /// OT coupling has C = (√(4 + σ⁴) − σ²)/2, and Σ_t interpolates the end covariances.
    #[test]
    fn closed_form_checks() {
        let i2 = DMatrix::<f64>::identity(2, 2);
        let b = GaussianBridge::new(
            DVector::zeros(2),
            i2.clone(),
            DVector::zeros(2),
            i2.clone(),
            1.0,
        )
        .unwrap();
        let c = b.cross_covariance();
        let expect = (5f64.sqrt() - 1.0) / 2.0;
        assert!((c[(0, 0)] - expect).abs() < 1e-12 && c[(0, 1)].abs() < 1e-12);
        let s0 = DMatrix::from_row_slice(2, 2, &[2.0, 0.5, 0.5, 1.0]);
        let s1 = DMatrix::from_row_slice(2, 2, &[1.0, -0.3, -0.3, 0.5]);
        let b = GaussianBridge::new(
            DVector::zeros(2),
            s0.clone(),
            DVector::zeros(2),
            s1.clone(),
            0.7,
        )
        .unwrap();
        assert!((b.marginal_covariance(0.0) - &s0).abs().max() < 1e-12);
        assert!((b.marginal_covariance(1.0) - &s1).abs().max() < 1e-12);
        // The joint covariance of (X₀, X₁) must be positive definite.
        let c = b.cross_covariance();
        let mut joint = DMatrix::zeros(4, 4);
        joint.view_mut((0, 0), (2, 2)).copy_from(&s0);
        joint.view_mut((2, 2), (2, 2)).copy_from(&s1);
        joint.view_mut((0, 2), (2, 2)).copy_from(&c);
        joint.view_mut((2, 0), (2, 2)).copy_from(&c.transpose());
        assert!(joint.cholesky().is_some());
        // Small σ: the coupling tends to the OT map x₁ = Σ₀^{-½}(Σ₀^{½}Σ₁Σ₀^{½})^{½}Σ₀^{-½} x₀,
        // whose cross-covariance is Σ₀ Tᵀ = Σ₀^{½}(Σ₀^{½}Σ₁Σ₀^{½})^{½}Σ₀^{-½}.
        let b = GaussianBridge::new(
            DVector::zeros(2),
            s0.clone(),
            DVector::zeros(2),
            s1.clone(),
            1e-4,
        )
        .unwrap();
        let r0 = sym_power(&s0, 0.5);
        let ot = &r0 * sym_power(&(&r0 * &s1 * &r0), 0.5) * sym_power(&s0, -0.5);
        assert!((b.cross_covariance() - ot).abs().max() < 1e-6);
    }
}

//! A target seen through an affine change of variables x = m + Lz: the sampler works on z,
//! where a well-chosen (m, L) makes the target close to N(0, I).
//!
//! log γ̃_z(z) = log γ̃(m + Lz) + log det L, so ∫ γ̃_z dz = ∫ γ̃ dx: the same Z, and importance
//! weights computed on z are exact weights for x = m + Lz. The gradient is
//! ∇_z log γ̃_z = Lᵀ ∇_x log γ̃. With (m, LLᵀ) the Laplace approximation
//! ([`super::laplace_approximation`]) this is "Laplace preconditioning" (`--precondition laplace`).

use super::{PosteriorReference, Target, laplace_approximation};
use candle_core::{DType, Device, Result, Tensor};
use nalgebra::DMatrix;
use std::sync::Arc;

/// The change of variables x = m + Lz (L lower-triangular, positive diagonal), with the
/// tensors that apply it to batches.
#[derive(Debug, Clone)]
pub struct AffineMap {
    mean: Vec<f64>,
    l: DMatrix<f64>,
    /// m as a `[1, d]` f32 tensor and Lᵀ as `[d, d]`, for batched x = m + z Lᵀ.
    mean_t: Tensor,
    lt_t: Tensor,
    /// L as `[d, d]`, for batched gradients g_z = g_x L.
    l_t: Tensor,
    log_det_l: f64,
}

impl AffineMap {
    /// x = mean + L z, with L lower-triangular and positive on its diagonal.
    pub fn new(mean: Vec<f64>, l: DMatrix<f64>) -> crate::error::Result<Self> {
        let d = mean.len();
        let bad = |m: String| Err(crate::error::DsbError::InvalidInput(m));
        if l.nrows() != d || l.ncols() != d {
            return bad(format!(
                "a {d}-D change of variables needs a {d}×{d} factor, got {}×{}",
                l.nrows(),
                l.ncols()
            ));
        }
        if !(0..d).all(|i| l[(i, i)] > 0.0 && l[(i, i)].is_finite())
            || !mean.iter().all(|m| m.is_finite())
        {
            return bad(
                "the change of variables needs a finite mean and a factor with a positive diagonal"
                    .into(),
            );
        }
        let log_det_l = (0..d).map(|i| l[(i, i)].ln()).sum();
        let dev = Device::Cpu;
        let to_t = |m: &DMatrix<f64>| -> Result<Tensor> {
            let rows: Vec<f32> = (0..d)
                .flat_map(|i| (0..d).map(move |j| (i, j)))
                .map(|(i, j)| m[(i, j)] as f32)
                .collect();
            Tensor::from_vec(rows, (d, d), &dev)
        };
        Ok(Self {
            mean_t: Tensor::from_vec(
                mean.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                (1, d),
                &dev,
            )?,
            lt_t: to_t(&l.transpose())?,
            l_t: to_t(&l)?,
            mean,
            l,
            log_det_l,
        })
    }

    /// The mean m.
    pub fn shift(&self) -> &[f64] {
        &self.mean
    }

    /// The factor L.
    pub fn factor(&self) -> &DMatrix<f64> {
        &self.l
    }

    /// log det L.
    pub fn log_det(&self) -> f64 {
        self.log_det_l
    }

    /// The original coordinates x = m + Lz of rows `z` (`[n, d]` row-major).
    pub fn to_original(&self, z: &[f32]) -> Vec<f32> {
        let d = self.mean.len();
        z.chunks(d)
            .flat_map(|row| {
                (0..d).map(move |i| {
                    let s: f64 = (0..=i).map(|j| self.l[(i, j)] * row[j] as f64).sum();
                    (self.mean[i] + s) as f32
                })
            })
            .collect()
    }

    fn to_x(&self, z: &Tensor) -> Result<Tensor> {
        let dev = z.device();
        let z = z.to_dtype(DType::F32)?;
        z.matmul(&self.lt_t.to_device(dev)?)?
            .broadcast_add(&self.mean_t.to_device(dev)?)
    }

    /// log γ̃_z(z) = log γ̃(m + Lz) + log det L.
    fn log_density(&self, inner: &dyn Target, z: &Tensor) -> Result<Tensor> {
        inner.log_density(&self.to_x(z)?)? + self.log_det_l
    }

    /// ∇_z log γ̃_z(z) = ∇_x log γ̃(m + Lz) L.
    fn grad_log_density(&self, inner: &dyn Target, z: &Tensor) -> Result<Tensor> {
        let g = inner.grad_log_density(&self.to_x(&z.detach())?)?;
        g.matmul(&self.l_t.to_device(z.device())?)
    }
}

/// `inner` in the coordinates z = L⁻¹(x − m).
pub struct Preconditioned {
    inner: Arc<dyn Target>,
    name: String,
    map: AffineMap,
    /// Eigenvalues of the Hessian floored by the Laplace approximation (0 otherwise).
    floored_eigenvalues: usize,
}

impl std::fmt::Debug for Preconditioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preconditioned")
            .field("name", &self.name)
            .field("log_det_l", &self.map.log_det_l)
            .finish()
    }
}

impl Preconditioned {
    /// `inner` through x = mean + L z, with L lower-triangular and positive on its diagonal.
    pub fn new(
        inner: Arc<dyn Target>,
        mean: Vec<f64>,
        l: DMatrix<f64>,
    ) -> crate::error::Result<Self> {
        let d = inner.dim();
        crate::error::ensure_valid!(
            mean.len() == d && l.nrows() == d && l.ncols() == d,
            "preconditioning '{}' ({d}-D) needs a {d}-D mean and a {d}×{d} factor",
            inner.name()
        );
        // The factor's diagonal (and the mean's finiteness) are checked by `AffineMap::new`.
        Ok(Self {
            name: format!("{}+laplace", inner.name()),
            map: AffineMap::new(mean, l)?,
            inner,
            floored_eigenvalues: 0,
        })
    }

    /// `inner` preconditioned by its Laplace approximation N(x̂, H⁻¹), with the covariance
    /// inflated by `inflate²` (> 1 widens the start to cover heavier-than-Gaussian tails).
    pub fn laplace(
        inner: Arc<dyn Target>,
        start: &[f64],
        inflate: f64,
    ) -> crate::error::Result<Self> {
        crate::error::ensure_valid!(
            inflate > 0.0 && inflate.is_finite(),
            "the Laplace inflation factor must be positive"
        );
        let la = laplace_approximation(inner.as_ref(), start)?;
        let cov = la.covariance * (inflate * inflate);
        let l = cov
            .cholesky()
            .ok_or_else(|| {
                crate::error::invalid!("the Laplace covariance is not positive definite")
            })?
            .l();
        let mut p = Self::new(inner, la.mode, l)?;
        p.floored_eigenvalues = la.floored_eigenvalues;
        Ok(p)
    }

    /// How many eigenvalues of the Hessian at the mode were not positive (a saddle or a flat
    /// direction) and were floored by the Laplace approximation: its spread along those
    /// directions is a guess, so callers should warn.
    pub fn floored_eigenvalues(&self) -> usize {
        self.floored_eigenvalues
    }

    /// The original coordinates x = m + Lz of rows `z` (`[n, d]` row-major).
    pub fn to_original(&self, z: &[f32]) -> Vec<f32> {
        self.map.to_original(z)
    }

    /// The mean m of the change of variables.
    pub fn shift(&self) -> &[f64] {
        self.map.shift()
    }

    /// The factor L of the change of variables.
    pub fn factor(&self) -> &DMatrix<f64> {
        self.map.factor()
    }

    /// The target in the original coordinates.
    pub fn inner(&self) -> &Arc<dyn Target> {
        &self.inner
    }
}

impl Target for Preconditioned {
    fn name(&self) -> &str {
        &self.name
    }
    fn dim(&self) -> usize {
        self.map.mean.len()
    }
    fn log_density(&self, z: &Tensor) -> Result<Tensor> {
        self.map.log_density(self.inner.as_ref(), z)
    }
    fn grad_log_density(&self, z: &Tensor) -> Result<Tensor> {
        self.map.grad_log_density(self.inner.as_ref(), z)
    }
    fn log_z(&self) -> Option<f64> {
        self.inner.log_z()
    }
    /// Moments in z are not the reference's; compare after mapping back with
    /// [`Preconditioned::to_original`].
    fn posterior_moments(&self) -> Option<PosteriorReference> {
        None
    }
    fn suggested_sigma(&self) -> Option<f64> {
        Some(1.0)
    }
    /// x = m + Lz, then the inner target's own map if it has one.
    fn original_coordinates(&self, z: &[f32]) -> Option<Vec<f32>> {
        let x = self.to_original(z);
        Some(self.inner.original_coordinates(&x).unwrap_or(x))
    }
}

/// A borrowed target seen through an [`AffineMap`]: the same Z, for samplers that whiten a
/// target they do not own (the sequential sampler's pilot whitening).
pub struct Whitened<'a> {
    inner: &'a dyn Target,
    map: &'a AffineMap,
}

impl<'a> Whitened<'a> {
    /// `inner` in the coordinates z = L⁻¹(x − m) of `map` (of the same dimension).
    pub fn new(inner: &'a dyn Target, map: &'a AffineMap) -> crate::error::Result<Self> {
        super::check_dimension(inner, map.mean.len())?;
        Ok(Self { inner, map })
    }
}

impl Target for Whitened<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn dim(&self) -> usize {
        self.map.mean.len()
    }
    fn log_density(&self, z: &Tensor) -> Result<Tensor> {
        self.map.log_density(self.inner, z)
    }
    fn grad_log_density(&self, z: &Tensor) -> Result<Tensor> {
        self.map.grad_log_density(self.inner, z)
    }
    fn log_z(&self) -> Option<f64> {
        self.inner.log_z()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::CorrelatedGaussian;

    /// On a Gaussian target, Laplace preconditioning gives exactly N(0, I) with the same Z.
    #[test]
    fn laplace_whitening_of_a_gaussian_is_standard_normal() {
        let g: Arc<dyn Target> = Arc::new(CorrelatedGaussian::builtin(3).unwrap());
        let p = Preconditioned::laplace(g.clone(), &[0.0; 3], 1.0).unwrap();
        let z = Tensor::new(&[[0.0f32, 0.0, 0.0], [1.0, -0.5, 2.0]], &Device::Cpu).unwrap();
        let lp = p.log_density(&z).unwrap().to_vec1::<f32>().unwrap();
        let norm = 1.5 * (2.0 * std::f64::consts::PI).ln();
        // log N(z; 0, I) + log Z of the builtin Gaussian.
        let log_z = g.log_z().unwrap();
        assert!((lp[0] as f64 - (log_z - norm)).abs() < 2e-3, "{lp:?}");
        assert!(
            (lp[1] as f64 - (log_z - norm - 0.5 * 5.25)).abs() < 2e-3,
            "{lp:?}"
        );
        let gz = p.grad_log_density(&z).unwrap().to_vec2::<f32>().unwrap();
        for (a, b) in gz[1].iter().zip([-1.0f32, 0.5, -2.0]) {
            assert!((a - b).abs() < 2e-3, "{gz:?}");
        }
        // to_original inverts the whitening: z = 0 maps to the mean.
        let x = p.to_original(&[0.0, 0.0, 0.0]);
        let m = CorrelatedGaussian::builtin(3).unwrap();
        for (xi, mi) in x.iter().zip(m.mean().iter()) {
            assert!((*xi as f64 - mi).abs() < 1e-3);
        }
    }

    /// A target's log density without its coordinate map: what the samplers see inside.
    struct Plain<'a>(&'a Preconditioned);
    impl Target for Plain<'_> {
        fn name(&self) -> &str {
            "plain"
        }
        fn dim(&self) -> usize {
            self.0.dim()
        }
        fn log_density(&self, z: &Tensor) -> Result<Tensor> {
            self.0.log_density(z)
        }
        fn grad_log_density(&self, z: &Tensor) -> Result<Tensor> {
            self.0.grad_log_density(z)
        }
    }

    /// Every sampler's public entry point returns a preconditioned target's samples in the
    /// original coordinates: the same draws as on the unmapped target, mapped by x = m + Lz.
    #[test]
    fn samplers_report_samples_in_the_original_coordinates() {
        use crate::baseline::{DiagGaussian, NutsConfig, SmcConfig, run_nuts, run_smc};
        use crate::sampler::{DiffusionSampler, SamplerConfig};
        use rand::SeedableRng;
        let g: Arc<dyn Target> = Arc::new(CorrelatedGaussian::builtin(2).unwrap());
        let p = Preconditioned::laplace(g, &[0.0; 2], 1.3).unwrap();
        let plain = Plain(&p);
        let rng = || rand::rngs::StdRng::seed_from_u64(7);
        let start = DiagGaussian {
            mean: vec![0.0; 2],
            scale: vec![1.0; 2],
        };
        let cfg = SmcConfig {
            particles: 64,
            ..Default::default()
        };
        let mapped = run_smc(&p, &start, &cfg, &mut rng(), |_| {}).unwrap();
        let raw = run_smc(&plain, &start, &cfg, &mut rng(), |_| {}).unwrap();
        assert_eq!(mapped.samples.samples, p.to_original(&raw.samples.samples));
        assert_ne!(mapped.samples.samples, raw.samples.samples);
        let ncfg = NutsConfig {
            chains: 1,
            tune: 50,
            draws: 20,
            ..Default::default()
        };
        let mapped = run_nuts(&p, &start, &ncfg, &mut rng(), |_, _| {}).unwrap();
        let raw = run_nuts(&plain, &start, &ncfg, &mut rng(), |_, _| {}).unwrap();
        assert_eq!(mapped.samples.samples, p.to_original(&raw.samples.samples));
        let scfg = SamplerConfig {
            steps: 4,
            width: 8,
            ..Default::default()
        };
        let s = DiffusionSampler::new(2, scfg, 0, &Device::Cpu).unwrap();
        let mapped = s.sample(&p, 50, 50, &mut rng()).unwrap();
        let raw = s.sample(&plain, 50, 50, &mut rng()).unwrap();
        assert_eq!(mapped.samples, p.to_original(&raw.samples));
        assert_eq!(mapped.log_w, raw.log_w);
        let qcfg = crate::sequential::SequentialConfig {
            steps: 4,
            particles: 64,
            width: 8,
            ..Default::default()
        };
        let betas = crate::sequential::geometric_betas(4);
        let mut q =
            crate::sequential::SequentialSampler::new(start, betas, qcfg, 0, &Device::Cpu).unwrap();
        let mapped = q.sample(&p, &mut rng()).unwrap();
        let raw = q.sample(&plain, &mut rng()).unwrap();
        assert_eq!(mapped.samples.samples, p.to_original(&raw.samples.samples));
    }
}

//! The Gaussian at the prior end of a sampler: N(0, diag(σᵢ²)) by default, or any N(m, Σ).

use crate::error::{DsbError, Result};
use candle_core::{DType, Device, Tensor};
use nalgebra::DMatrix;

/// A Gaussian prior with a Cholesky factor, drawn from a seeded generator.
#[derive(Debug, Clone)]
pub struct GaussianPrior {
    dim: usize,
    mean: Vec<f64>,
    /// Lower Cholesky factor L (Σ = L Lᵀ); `None` when Σ = diag(scales²).
    chol: Option<DMatrix<f64>>,
    scales: Vec<f64>,
    /// Σ_i log L_ii + (d/2) log 2π.
    log_norm: f64,
    /// `[1, dim]` mean, `[1, dim]` scales and `[dim, dim]` Lᵀ on the device.
    mean_t: Tensor,
    scales_t: Tensor,
    chol_t: Option<Tensor>,
}

impl GaussianPrior {
    /// N(mean, cov) (`cov` row-major `dim × dim`), or N(0, diag(scales²)) where both are `None`.
    pub fn new(
        dim: usize,
        scales: &[f64],
        mean: Option<&[f64]>,
        cov: Option<&[f64]>,
        device: &Device,
    ) -> Result<Self> {
        let mean = match mean {
            Some(m) if m.len() != dim => {
                return Err(DsbError::InvalidInput(format!(
                    "the prior mean has {} entries but the dimension is {dim}",
                    m.len()
                )));
            }
            Some(m) => m.to_vec(),
            None => vec![0.0; dim],
        };
        let chol = match cov {
            Some(c) if c.len() != dim * dim => {
                return Err(DsbError::InvalidInput(format!(
                    "the prior covariance has {} entries; a {dim}-dimensional one needs {}",
                    c.len(),
                    dim * dim
                )));
            }
            Some(c) => {
                let m = DMatrix::from_row_slice(dim, dim, c);
                if (&m - m.transpose()).abs().max() > 1e-9 * m.abs().max().max(1.0) {
                    return Err(DsbError::InvalidInput(
                        "the prior covariance is not symmetric".into(),
                    ));
                }
                let l = m.cholesky().ok_or_else(|| {
                    DsbError::InvalidInput("the prior covariance is not positive definite".into())
                })?;
                Some(l.l())
            }
            None => None,
        };
        let log_det_half: f64 = match &chol {
            Some(l) => (0..dim).map(|i| l[(i, i)].ln()).sum(),
            None => scales.iter().map(|s| s.ln()).sum(),
        };
        let log_norm = log_det_half + 0.5 * dim as f64 * (2.0 * std::f64::consts::PI).ln();
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let chol_t = match &chol {
            Some(l) => {
                let lt = l.transpose();
                let v: Vec<f32> = (0..dim)
                    .flat_map(|i| (0..dim).map(move |j| (i, j)))
                    .map(|(i, j)| lt[(i, j)] as f32)
                    .collect();
                Some(Tensor::from_vec(v, (dim, dim), device)?)
            }
            None => None,
        };
        Ok(Self {
            dim,
            mean_t: Tensor::from_vec(f32s(&mean), (1, dim), device)?,
            scales_t: Tensor::from_vec(f32s(scales), (1, dim), device)?,
            mean,
            chol,
            scales: scales.to_vec(),
            log_norm,
            chol_t,
        })
    }

    /// `batch` draws from the prior widened by `explore` ≥ 1: m + λ L z.
    pub fn draw(&self, rng: &mut impl rand::Rng, batch: usize, explore: f64) -> Result<Tensor> {
        let z = super::normal_tensor(rng, batch, self.dim, self.mean_t.device())?;
        let lz = match &self.chol_t {
            Some(lt) => z.matmul(lt)?,
            None => z.broadcast_mul(&self.scales_t)?,
        };
        let lz = if explore == 1.0 { lz } else { (lz * explore)? };
        Ok(lz.broadcast_add(&self.mean_t)?)
    }

    /// −log p(x) split as (c, q): the constant c = ½ log det(2πΣ) and, per row, the quadratic
    /// part q = ½ (x − m)ᵀ Σ⁻¹ (x − m), in f64. The prior widened by λ has
    /// −log p_λ(x) = c + q/λ² + d log λ.
    pub fn neg_log_parts(&self, x: &Tensor) -> Result<(f64, Vec<f64>)> {
        let rows = x.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let q = match &self.chol {
            None => rows
                .iter()
                .map(|r| {
                    r.iter()
                        .zip(&self.scales)
                        .zip(&self.mean)
                        .map(|((v, s), m)| (v - m) * (v - m) / (2.0 * s * s))
                        .sum::<f64>()
                })
                .collect(),
            Some(l) => {
                let n = rows.len();
                let centred = DMatrix::from_fn(self.dim, n, |i, j| rows[j][i] - self.mean[i]);
                let y = l
                    .solve_lower_triangular(&centred)
                    .expect("a Cholesky factor has a non-zero diagonal");
                (0..n).map(|j| 0.5 * y.column(j).norm_squared()).collect()
            }
        };
        Ok((self.log_norm, q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn full_prior_matches_its_density_and_moments() {
        let cov = [2.0, 0.6, 0.6, 0.5];
        let p = GaussianPrior::new(2, &[1.0, 1.0], Some(&[1.0, -2.0]), Some(&cov), &Device::Cpu)
            .unwrap();
        let x = Tensor::new(&[[1.0f32, -2.0], [2.0, -1.0]], &Device::Cpu).unwrap();
        let (c, q) = p.neg_log_parts(&x).unwrap();
        let det: f64 = 2.0 * 0.5 - 0.36;
        assert!((c - 0.5 * (det.ln() + 2.0 * (2.0 * std::f64::consts::PI).ln())).abs() < 1e-9);
        assert!(q[0].abs() < 1e-12);
        // (1, 1) Σ⁻¹ (1, 1)ᵀ / 2 with Σ⁻¹ = [[0.5, −0.6], [−0.6, 2]] / det.
        assert!((q[1] - 0.5 * (0.5 - 1.2 + 2.0) / det).abs() < 1e-6);
        let mut rng = StdRng::seed_from_u64(1);
        let d = p.draw(&mut rng, 100_000, 1.0).unwrap();
        let v = d.to_vec2::<f32>().unwrap();
        let n = v.len() as f64;
        let m0 = v.iter().map(|r| r[0] as f64).sum::<f64>() / n;
        let c01 = v
            .iter()
            .map(|r| (r[0] as f64 - 1.0) * (r[1] as f64 + 2.0))
            .sum::<f64>()
            / n;
        // Standard errors: √(2/n) ≈ 0.0045 for the mean, ≈ 0.004 for the covariance; 5 s.e.
        assert!((m0 - 1.0).abs() < 0.025, "mean {m0}");
        assert!((c01 - 0.6).abs() < 0.025, "cov {c01}");
    }

    #[test]
    fn bad_covariances_are_rejected() {
        let dev = Device::Cpu;
        assert!(GaussianPrior::new(2, &[1.0; 2], None, Some(&[1.0, 2.0, 2.0, 1.0]), &dev).is_err());
        assert!(GaussianPrior::new(2, &[1.0; 2], None, Some(&[1.0, 0.0, 0.5, 1.0]), &dev).is_err());
        assert!(GaussianPrior::new(2, &[1.0; 2], Some(&[0.0]), None, &dev).is_err());
    }
}

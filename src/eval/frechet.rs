//! The Fréchet distance between Gaussians fitted to two sets of feature vectors (the FID
//! formula, here on the features of dsb's own classifier).

use crate::error::{DsbError, Result};
use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Mean and covariance (divisor n − 1) of feature vectors, in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// Number of vectors.
    pub n: usize,
    /// Their mean.
    pub mean: DVector<f64>,
    /// Their sample covariance.
    pub cov: DMatrix<f64>,
}

impl FeatureStats {
    /// The statistics of `n` rows of `dim` values each (`rows.len() == n * dim`, n ≥ 2).
    pub fn from_rows(rows: &[f64], n: usize, dim: usize) -> Result<Self> {
        if n < 2 || dim == 0 || rows.len() != n * dim {
            return Err(DsbError::InvalidInput(format!(
                "feature statistics need at least 2 rows of a positive dimension; got {} \
                 values for {n} rows of {dim}",
                rows.len()
            )));
        }
        if rows.iter().any(|v| !v.is_finite()) {
            return Err(DsbError::InvalidInput(
                "a feature vector holds a non-finite value".into(),
            ));
        }
        let x = DMatrix::from_row_slice(n, dim, rows);
        let mean = DVector::from_iterator(dim, x.column_iter().map(|c| c.mean()));
        let mut centred = x;
        for mut row in centred.row_iter_mut() {
            row -= mean.transpose();
        }
        let cov = centred.transpose() * &centred / (n - 1) as f64;
        Ok(Self { n, mean, cov })
    }
}

/// The symmetric square root of a symmetric positive semi-definite matrix (negative
/// eigenvalues from rounding are set to zero).
fn psd_sqrt(m: &DMatrix<f64>) -> DMatrix<f64> {
    let sym = (m + m.transpose()) * 0.5;
    let eig = SymmetricEigen::new(sym);
    let roots = eig.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose()
}

/// ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{½}), the squared 2-Wasserstein (Fréchet) distance
/// between N(μ₁, Σ₁) and N(μ₂, Σ₂).
///
/// tr (Σ₁Σ₂)^{½} is computed as Σᵢ √λᵢ over the eigenvalues λᵢ of the symmetric matrix
/// Σ₁^{½} Σ₂ Σ₁^{½}, which has the same spectrum as Σ₁Σ₂; eigenvalues below zero (rounding) count
/// as zero. The estimate from samples is biased upwards by about tr-terms of order dim/n, so
/// compare distances computed from equal numbers of vectors.
///
/// ```
/// use dsb::eval::{FeatureStats, frechet_distance};
/// let a = FeatureStats::from_rows(&[0.0, 0.0, 2.0, 0.0, 0.0, 2.0, 2.0, 2.0], 4, 2).unwrap();
/// let shifted: Vec<f64> = [0.0, 0.0, 2.0, 0.0, 0.0, 2.0, 2.0, 2.0].iter().map(|v| v + 1.0).collect();
/// let b = FeatureStats::from_rows(&shifted, 4, 2).unwrap();
/// // Equal covariances: the distance is the squared distance of the means, 1 + 1.
/// assert!((frechet_distance(&a, &b).unwrap() - 2.0).abs() < 1e-9);
/// ```
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    if a.mean.len() != b.mean.len() {
        return Err(DsbError::InvalidInput(format!(
            "features of dimension {} and {} cannot be compared",
            a.mean.len(),
            b.mean.len()
        )));
    }
    let root_a = psd_sqrt(&a.cov);
    let middle = &root_a * &b.cov * &root_a;
    let sym = (&middle + middle.transpose()) * 0.5;
    let cross: f64 = SymmetricEigen::new(sym)
        .eigenvalues
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum();
    let d = (&a.mean - &b.mean).norm_squared() + a.cov.trace() + b.cov.trace() - 2.0 * cross;
    Ok(d.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use rand_distr::{Distribution, StandardNormal};

    fn stats(cov: &DMatrix<f64>, mean: &DVector<f64>) -> FeatureStats {
        FeatureStats {
            n: 100,
            mean: mean.clone(),
            cov: cov.clone(),
        }
    }

    /// Commuting (diagonal) covariances: the closed form Σᵢ (√aᵢ − √bᵢ)² plus the mean term.
    #[test]
    fn diagonal_covariances_match_the_closed_form() {
        let a = stats(
            &DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 4.0, 9.0])),
            &DVector::from_vec(vec![0.0, 1.0, 2.0]),
        );
        let b = stats(
            &DMatrix::from_diagonal(&DVector::from_vec(vec![4.0, 1.0, 9.0])),
            &DVector::from_vec(vec![1.0, 1.0, 0.0]),
        );
        let want = 1.0 + 4.0 + (1.0f64 - 2.0).powi(2) + (2.0f64 - 1.0).powi(2);
        let got = frechet_distance(&a, &b).unwrap();
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-9);
    }

    /// A non-commuting pair in 2-D checked against the 2×2 formula
    /// tr (Σ₁Σ₂)^{½} = √(tr(Σ₁Σ₂) + 2√det(Σ₁Σ₂)), and symmetry of the distance.
    #[test]
    fn non_commuting_covariances_match_the_two_by_two_formula() {
        let s1 = DMatrix::<f64>::from_row_slice(2, 2, &[2.0, 0.8, 0.8, 1.0]);
        let s2 = DMatrix::from_row_slice(2, 2, &[1.0, -0.3, -0.3, 3.0]);
        let m = DVector::zeros(2);
        let p: DMatrix<f64> = &s1 * &s2;
        let cross = (p.trace() + 2.0 * p.determinant().sqrt()).sqrt();
        let want = s1.trace() + s2.trace() - 2.0 * cross;
        let (a, b) = (stats(&s1, &m), stats(&s2, &m));
        let got = frechet_distance(&a, &b).unwrap();
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        assert!((frechet_distance(&b, &a).unwrap() - got).abs() < 1e-9);
    }

    /// Sample statistics: mean and unbiased covariance of known rows, and bad input refused.
    #[test]
    fn sample_statistics_and_bad_input() {
        let s = FeatureStats::from_rows(&[1.0, 2.0, 3.0, 6.0], 2, 2).unwrap();
        assert_eq!(s.mean.as_slice(), &[2.0, 4.0]);
        assert_eq!(s.cov.as_slice(), &[2.0, 4.0, 4.0, 8.0]);
        assert!(FeatureStats::from_rows(&[1.0, 2.0], 1, 2).is_err());
        assert!(FeatureStats::from_rows(&[1.0, f64::NAN, 3.0, 4.0], 2, 2).is_err());
        let other = stats(&DMatrix::identity(3, 3), &DVector::zeros(3));
        assert!(frechet_distance(&s, &other).is_err());
    }

    /// Two large samples of one Gaussian are close; a shifted sample is far by the shift².
    #[test]
    fn samples_of_one_law_are_close_and_a_shift_shows() {
        let mut rng = StdRng::seed_from_u64(3);
        let (n, d) = (20_000, 4);
        let mut draw = |shift: f64| -> Vec<f64> {
            (0..n * d)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    z + shift
                })
                .collect()
        };
        let a = FeatureStats::from_rows(&draw(0.0), n, d).unwrap();
        let b = FeatureStats::from_rows(&draw(0.0), n, d).unwrap();
        let c = FeatureStats::from_rows(&draw(0.5), n, d).unwrap();
        // Same law: the estimate's own bias and noise are O(d/n) ≈ 0.001.
        assert!(frechet_distance(&a, &b).unwrap() < 0.01);
        let shifted = frechet_distance(&a, &c).unwrap();
        assert!((shifted - d as f64 * 0.25).abs() < 0.05, "{shifted}");
    }
}

//! The preconditioner of the SMC moves: a factor L with LLᵀ ≈ the covariance of the current
//! particle population, so that the kernels work in the coordinates u = L⁻¹x where the tempered
//! target is roughly isotropic. Full (Cholesky of the weighted covariance) in low dimension,
//! diagonal (weighted standard deviations) above a threshold, where d² work per particle would
//! dominate.

use nalgebra::{DMatrix, DVector};

/// L with LLᵀ ≈ the population covariance: lower-triangular, or diagonal.
#[derive(Debug, Clone)]
pub enum Preconditioner {
    /// L = diag(s).
    Diagonal(Vec<f64>),
    /// A lower-triangular Cholesky factor and its inverse.
    Full {
        /// L.
        l: DMatrix<f64>,
        /// L⁻¹.
        l_inv: DMatrix<f64>,
    },
}

impl Preconditioner {
    /// The weighted covariance of the rows of `x` (weights `w`, summing to 1), factored. Uses the
    /// full covariance when `full`, else its diagonal; falls back to `previous` (or the diagonal)
    /// where the estimate is degenerate.
    pub fn from_population(
        x: &[f64],
        dim: usize,
        w: &[f64],
        full: bool,
        previous: &Preconditioner,
    ) -> Preconditioner {
        let mut mean = vec![0.0; dim];
        for (row, wi) in x.chunks(dim).zip(w) {
            for j in 0..dim {
                mean[j] += wi * row[j];
            }
        }
        if !full {
            let mut var = vec![0.0; dim];
            for (row, wi) in x.chunks(dim).zip(w) {
                for j in 0..dim {
                    var[j] += wi * (row[j] - mean[j]).powi(2);
                }
            }
            let prev = previous.diagonal();
            return Preconditioner::Diagonal(
                var.iter()
                    .zip(prev)
                    .map(|(v, p)| {
                        let s = v.sqrt();
                        if s.is_finite() && s > 1e-8 { s } else { p }
                    })
                    .collect(),
            );
        }
        let mut cov = DMatrix::<f64>::zeros(dim, dim);
        for (row, wi) in x.chunks(dim).zip(w) {
            if *wi == 0.0 {
                continue;
            }
            let c = DVector::from_iterator(dim, row.iter().zip(&mean).map(|(a, m)| a - m));
            cov.syger(*wi, &c, &c, 1.0);
        }
        let jitter = 1e-8 * (cov.trace() / dim as f64).max(1e-12);
        for j in 0..dim {
            cov[(j, j)] += jitter;
        }
        match cov.clone().cholesky() {
            Some(ch) if cov.iter().all(|v| v.is_finite()) => {
                let l = ch.l();
                match l.clone().try_inverse() {
                    Some(l_inv) => Preconditioner::Full { l, l_inv },
                    None => Preconditioner::from_population(x, dim, w, false, previous),
                }
            }
            _ => Preconditioner::from_population(x, dim, w, false, previous),
        }
    }

    /// The standard deviations on the diagonal of LLᵀ.
    pub fn diagonal(&self) -> Vec<f64> {
        match self {
            Preconditioner::Diagonal(s) => s.clone(),
            Preconditioner::Full { l, .. } => (0..l.nrows())
                .map(|i| l.row(i).iter().map(|v| v * v).sum::<f64>().sqrt())
                .collect(),
        }
    }

    /// Each row v of `rows` mapped to L v.
    pub fn apply(&self, rows: &[f64]) -> Vec<f64> {
        self.map(rows, |l, v| l * v, |s, v| s * v)
    }

    /// Each row g of `rows` mapped to Lᵀ g.
    pub fn apply_transpose(&self, rows: &[f64]) -> Vec<f64> {
        self.map(rows, |l, v| l.tr_mul(v), |s, v| s * v)
    }

    /// Each row r of `rows` mapped to L⁻¹ r (for `Full`, through the stored inverse).
    pub fn solve(&self, rows: &[f64]) -> Vec<f64> {
        match self {
            Preconditioner::Diagonal(s) => rows
                .iter()
                .enumerate()
                .map(|(k, v)| v / s[k % s.len()])
                .collect(),
            Preconditioner::Full { l_inv, .. } => {
                let d = l_inv.nrows();
                rows.chunks(d)
                    .flat_map(|r| {
                        let v = DVector::from_column_slice(r);
                        (l_inv * v).data.as_vec().clone()
                    })
                    .collect()
            }
        }
    }

    fn map(
        &self,
        rows: &[f64],
        full: impl Fn(&DMatrix<f64>, &DVector<f64>) -> DVector<f64>,
        diag: impl Fn(f64, f64) -> f64,
    ) -> Vec<f64> {
        match self {
            Preconditioner::Diagonal(s) => rows
                .iter()
                .enumerate()
                .map(|(k, v)| diag(s[k % s.len()], *v))
                .collect(),
            Preconditioner::Full { l, .. } => {
                let d = l.nrows();
                rows.chunks(d)
                    .flat_map(|r| {
                        full(l, &DVector::from_column_slice(r))
                            .data
                            .as_vec()
                            .clone()
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_factor_reproduces_the_weighted_covariance() {
        // Four equally weighted points with covariance [[1, 0.5], [0.5, 1]]·c.
        let x = [1.0, 1.0, -1.0, -1.0, 1.0, 0.0, -1.0, 0.0];
        let w = [0.25; 4];
        let p = Preconditioner::from_population(
            &x,
            2,
            &w,
            true,
            &Preconditioner::Diagonal(vec![1.0, 1.0]),
        );
        let Preconditioner::Full { l, l_inv } = &p else {
            panic!("expected a full factor")
        };
        let cov = l * l.transpose();
        assert!((cov[(0, 0)] - 1.0).abs() < 1e-6 && (cov[(0, 1)] - 0.5).abs() < 1e-6);
        assert!((cov[(1, 1)] - 0.5).abs() < 1e-6);
        assert!(((l * l_inv) - DMatrix::identity(2, 2)).norm() < 1e-9);
        // solve ∘ apply = identity, and the transpose agrees with the matrix.
        let v = [0.3, -2.0];
        let back = p.solve(&p.apply(&v));
        assert!((back[0] - 0.3).abs() < 1e-9 && (back[1] + 2.0).abs() < 1e-9);
        let t = p.apply_transpose(&v);
        let want = l.transpose() * DVector::from_column_slice(&v);
        assert!((t[0] - want[0]).abs() < 1e-12 && (t[1] - want[1]).abs() < 1e-12);
        // A collapsed coordinate keeps the previous diagonal scale.
        let d = Preconditioner::from_population(
            &[1.0, 0.0, 1.0, 2.0],
            2,
            &[0.5, 0.5],
            false,
            &Preconditioner::Diagonal(vec![7.0, 7.0]),
        );
        assert_eq!(d.diagonal(), vec![7.0, 1.0]);
    }
}

//! Batched evaluation of a [`Target`] on points held as f64 rows on the host: the baselines
//! (SMC, NUTS), the sequential sampler's moves and the Laplace mode search do their arithmetic
//! in f64 and only call the target through candle.

use super::Target;
use candle_core::{Device, Tensor};

/// Rows per call to the target: bounds the memory of one evaluation (e.g. LGCP's 1600-D
/// matmuls) without paying per-call overhead on small targets.
const CHUNK_ROWS: usize = 4096;

/// What to compute at each particle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Log densities only.
    Density,
    /// Gradients only (the log density slot holds 0, or −∞ where the gradient is not finite).
    Gradient,
    /// Both.
    Both,
}

/// Log densities and/or gradients of the particles of dimension `dim` stored row-major in `x`.
///
/// A non-finite log density or gradient is returned as a log density of −∞ (with a zero
/// gradient): such a particle gets weight zero and every move into it is rejected.
pub fn evaluate(
    target: &dyn Target,
    x: &[f64],
    dim: usize,
    want: Want,
) -> candle_core::Result<(Vec<f64>, Vec<f64>)> {
    let n = x.len() / dim;
    let mut lp = Vec::with_capacity(n);
    let mut grad = Vec::with_capacity(if want == Want::Density { 0 } else { n * dim });
    for start in (0..n).step_by(CHUNK_ROWS) {
        let rows = CHUNK_ROWS.min(n - start);
        let chunk: Vec<f32> = x[start * dim..(start + rows) * dim]
            .iter()
            .map(|&v| v as f32)
            .collect();
        let t = Tensor::from_vec(chunk, (rows, dim), &Device::Cpu)?;
        let first = lp.len();
        if want == Want::Gradient {
            lp.extend(std::iter::repeat_n(0.0, rows));
        } else {
            let l = target.log_density(&t)?.to_vec1::<f32>()?;
            lp.extend(l.iter().map(|&v| {
                if v.is_finite() {
                    v as f64
                } else {
                    f64::NEG_INFINITY
                }
            }));
        }
        if want != Want::Density {
            let gt = target
                .grad_log_density(&t)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            for (i, row) in gt.chunks(dim).enumerate() {
                if row.iter().all(|v| v.is_finite()) {
                    grad.extend(row.iter().map(|&v| v as f64));
                } else {
                    lp[first + i] = f64::NEG_INFINITY;
                    grad.extend(std::iter::repeat_n(0.0, dim));
                }
            }
        }
    }
    Ok((lp, grad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::CorrelatedGaussian;

    #[test]
    fn evaluation_matches_the_target_and_flags_bad_points() {
        let t = CorrelatedGaussian::builtin(2).unwrap();
        let x = vec![0.5, -0.25, 1.0, 2.0];
        let (lp, g) = evaluate(&t, &x, 2, Want::Both).unwrap();
        let tx = Tensor::new(&[[0.5f32, -0.25], [1.0, 2.0]], &Device::Cpu).unwrap();
        let want = t.log_density(&tx).unwrap().to_vec1::<f32>().unwrap();
        assert!((lp[0] - want[0] as f64).abs() < 1e-6 && (lp[1] - want[1] as f64).abs() < 1e-6);
        assert_eq!(g.len(), 4);
        let (lp, _) = evaluate(&t, &[f64::NAN, 0.0], 2, Want::Both).unwrap();
        assert_eq!(lp[0], f64::NEG_INFINITY);
    }
}

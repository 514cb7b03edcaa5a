//! The starting distribution of the particle methods, a diagonal Gaussian evaluated on f64 rows
//! on the host (the batched evaluation of a target there is [`crate::target::evaluate()`]).

/// A diagonal Gaussian N(mean, diag(scale²)): the starting distribution of SMC.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagGaussian {
    /// Mean per coordinate.
    pub mean: Vec<f64>,
    /// Standard deviation per coordinate (all > 0).
    pub scale: Vec<f64>,
}

impl DiagGaussian {
    /// Dimension.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Normalised log density of one point.
    pub fn log_density(&self, x: &[f64]) -> f64 {
        let mut s = -0.5 * self.dim() as f64 * (2.0 * std::f64::consts::PI).ln();
        for ((xi, m), sd) in x.iter().zip(&self.mean).zip(&self.scale) {
            let z = (xi - m) / sd;
            s -= 0.5 * z * z + sd.ln();
        }
        s
    }

    /// Gradient of the log density at `x`, written into `out`.
    pub fn grad_into(&self, x: &[f64], out: &mut [f64]) {
        for (((o, xi), m), sd) in out.iter_mut().zip(x).zip(&self.mean).zip(&self.scale) {
            *o = -(xi - m) / (sd * sd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagonal_gaussian_is_normalised() {
        let g = DiagGaussian {
            mean: vec![1.0],
            scale: vec![2.0],
        };
        // ∫ exp(log p) over a fine grid ≈ 1.
        let h = 0.01;
        let total: f64 = (-2000..2000)
            .map(|i| g.log_density(&[1.0 + i as f64 * h]).exp() * h)
            .sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        let mut d = [0.0];
        g.grad_into(&[3.0], &mut d);
        assert_eq!(d[0], -0.5);
    }
}

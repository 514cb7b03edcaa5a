//! The many-well target: independent double wells in pairs of coordinates.

use super::Target;
use candle_core::Tensor;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// Many-well: d/2 independent pairs (x₁, x₂), each with
/// log γ̃ = −x₁⁴ + 6x₁² + ½x₁ − ½x₂². The built-in `many-well` has d = 32 (16 pairs, 2¹⁶ modes)
/// and log Z = 164.6957 (16 × [log ∫ e^{−x⁴+6x²+x/2} dx + ½ log 2π], computed by quadrature).
/// Exact samples: x₂ is standard normal, x₁ is drawn by inverting its tabulated CDF.
#[derive(Debug, Clone)]
pub struct ManyWell {
    dim: usize,
    log_z: f64,
    /// Grid and CDF of the 1-D double well, for exact sampling by inversion.
    grid: Vec<f64>,
    cdf: Vec<f64>,
}

fn double_well(x: f64) -> f64 {
    -x.powi(4) + 6.0 * x * x + 0.5 * x
}

impl ManyWell {
    /// Many-well of even dimension `dim`.
    pub fn new(dim: usize) -> Self {
        assert!(
            dim >= 2 && dim.is_multiple_of(2),
            "many-well needs an even dimension"
        );
        // Quadrature on [−5, 5]: the density is below e^{−380} outside.
        let n = 200_001;
        let h = 10.0 / (n - 1) as f64;
        let grid: Vec<f64> = (0..n).map(|i| -5.0 + i as f64 * h).collect();
        let m = 9.25; // about the maximum of the double well exponent, for stability
        let dens: Vec<f64> = grid.iter().map(|&x| (double_well(x) - m).exp()).collect();
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        cdf.push(0.0);
        for i in 1..n {
            acc += 0.5 * (dens[i] + dens[i - 1]) * h;
            cdf.push(acc);
        }
        let z1 = acc.ln() + m;
        for c in &mut cdf {
            *c /= acc;
        }
        let pairs = (dim / 2) as f64;
        let log_z = pairs * (z1 + 0.5 * (2.0 * std::f64::consts::PI).ln());
        Self {
            dim,
            log_z,
            grid,
            cdf,
        }
    }
}

impl Target for ManyWell {
    /// A wider network trained 1000 × 256 (README, results).
    fn sampler_hints(&self) -> super::SamplerHints {
        super::SamplerHints {
            steps: Some(64),
            width: Some(128),
            iterations: Some(1000),
            batch: Some(256),
            ..Default::default()
        }
    }
    fn name(&self) -> &str {
        "many-well"
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn log_density(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, d) = x.dims2()?;
        let pairs = x.reshape((b, d / 2, 2))?;
        let x1 = pairs.narrow(2, 0, 1)?.squeeze(2)?;
        let x2 = pairs.narrow(2, 1, 1)?.squeeze(2)?;
        let x1sq = x1.sqr()?;
        let t = ((x1sq.sqr()?.neg()? + (x1sq * 6.0)?)? + (x1 * 0.5)?)?;
        (t - (x2.sqr()? * 0.5)?)?.sum(1)
    }
    fn grad_log_density(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, d) = x.dims2()?;
        let x = x.detach();
        let pairs = x.reshape((b, d / 2, 2))?;
        let x1 = pairs.narrow(2, 0, 1)?;
        let x2 = pairs.narrow(2, 1, 1)?;
        let g1 = (((x1.powf(3.0)? * -4.0)? + (&x1 * 12.0)?)? + 0.5)?;
        let g2 = x2.neg()?;
        Tensor::cat(&[g1, g2], 2)?.reshape((b, d))
    }
    fn has_host_gradient(&self) -> bool {
        true
    }
    /// [`Target::grad_log_density`]'s operations on the host: −4x₁³ + 12x₁ + 1/2 and −x₂ for
    /// each pair.
    fn grad_log_density_rows(&self, x: &[f32], grad: &mut [f32]) -> candle_core::Result<()> {
        for (p, g) in x.chunks_exact(2).zip(grad.chunks_exact_mut(2)) {
            g[0] = ((p[0].powf(3.0) * -4.0) + (p[0] * 12.0)) + 0.5;
            g[1] = -p[1];
        }
        Ok(())
    }
    fn log_z(&self) -> Option<f64> {
        Some(self.log_z)
    }
    fn exact_samples(&self, n: usize, rng: &mut dyn rand::RngCore) -> Option<Vec<Vec<f64>>> {
        let draw_x1 = |rng: &mut dyn rand::RngCore| {
            let u: f64 = rng.random();
            let i = self
                .cdf
                .partition_point(|&c| c < u)
                .clamp(1, self.cdf.len() - 1);
            let (c0, c1) = (self.cdf[i - 1], self.cdf[i]);
            let f = if c1 > c0 { (u - c0) / (c1 - c0) } else { 0.5 };
            self.grid[i - 1] + f * (self.grid[i] - self.grid[i - 1])
        };
        Some(
            (0..n)
                .map(|_| {
                    (0..self.dim / 2)
                        .flat_map(|_| {
                            let a = draw_x1(&mut *rng);
                            let e: f64 = StandardNormal.sample(&mut *rng);
                            [a, e]
                        })
                        .collect()
                })
                .collect(),
        )
    }
    fn suggested_sigma(&self) -> Option<f64> {
        Some(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The host gradient equals candle's to 10⁻⁶ relative, at points within ±3 (both wells
    /// and beyond).
    #[test]
    fn host_gradient_equals_the_candle_gradient() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mw = ManyWell::new(32);
        let x: Vec<f32> = (0..100 * 32).map(|_| rng.random_range(-3.0..3.0)).collect();
        crate::test_support::assert_host_gradient_matches(&mw, &x, 1e-6);
    }

    #[test]
    fn log_z_matches_the_published_value() {
        let mw = ManyWell::new(32);
        assert!(
            (mw.log_z().unwrap() - 164.6957).abs() < 1e-3,
            "{}",
            mw.log_z().unwrap()
        );
    }

    #[test]
    fn gradient_matches_autograd() {
        let mw = ManyWell::new(4);
        let x = Tensor::new(&[[1.5f32, -0.3, -1.7, 2.0]], &Device::Cpu).unwrap();
        let diff = super::super::autograd_gap(&mw, &x);
        assert!(diff < 1e-3, "{diff}");
    }
}

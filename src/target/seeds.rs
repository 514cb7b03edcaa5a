//! The Seeds random-effects logistic model (Crowder 1978; the BUGS "Seeds" example), 26-D.
//!
//! For plate i = 1..21 with r_i of n_i seeds germinated, seed type x₁ and root extract x₂:
//!
//! r_i ~ Binomial(n_i, σ(a₀ + a₁x₁ᵢ + a₂x₂ᵢ + a₁₂x₁ᵢx₂ᵢ + b_i)),  b_i ~ N(0, 1/τ),
//! a₀, a₁, a₂, a₁₂ ~ N(0, 10²),  τ ~ Gamma(shape 0.01, rate 0.01).
//!
//! The parameters are θ = (log τ, a₀, a₁, a₂, a₁₂, b₁, …, b₂₁). τ is sampled as u = log τ and
//! the density includes the Jacobian e^u. Every normalising constant (the binomial
//! coefficients, the priors' constants) is included, so log Z is the log marginal likelihood of
//! the data. No closed form is known: the reference [`LOG_Z_REFERENCE`] = −73.4110 is the mean
//! of ten adaptive-tempering SMC runs (2,048 particles, 20 HMC moves per temperature, CESS 0.98;
//! sd 0.025 over the runs, standard error of the mean 0.008), made by
//! `scripts/seeds_reference.sh`. The data are `targets/seeds.csv`. The gradient is by autograd.

use super::Target;
use candle_core::{Device, Result, Tensor};
use statrs::function::gamma::ln_gamma;

const SEEDS: &str = include_str!("../../targets/seeds.csv");
/// Reference log Z of the model on the embedded data (a long SMC estimate, standard error
/// 0.008; see the module documentation).
pub const LOG_Z_REFERENCE: f64 = -73.4110;
const SHAPE: f64 = 0.01;
const RATE: f64 = 0.01;
const A_SD: f64 = 10.0;

/// The Seeds posterior as a [`Target`].
#[derive(Debug)]
pub struct Seeds {
    /// `[1, 21]` rows: r, n, and the design `[4, 21]` for (1, x₁, x₂, x₁x₂).
    r: Tensor,
    n: Tensor,
    design: Tensor,
    /// Σ log C(n_i, r_i) plus the priors' constants.
    constant: f64,
    plates: usize,
}

/// The 21 plates as (r, n, x₁, x₂).
pub fn seeds_data() -> Vec<[f64; 4]> {
    crate::csv_table::parse(SEEDS)
        .expect("embedded seeds data")
        .rows
        .into_iter()
        .map(|r| r.values.try_into().expect("seeds rows have 4 columns"))
        .collect()
}

impl Seeds {
    /// The model on the embedded data.
    pub fn new() -> Self {
        let data = seeds_data();
        let k = data.len();
        let row = |f: &dyn Fn(&[f64; 4]) -> f64| -> Vec<f32> {
            data.iter().map(|d| f(d) as f32).collect()
        };
        let mut design = row(&|_| 1.0);
        design.extend(row(&|d| d[2]));
        design.extend(row(&|d| d[3]));
        design.extend(row(&|d| d[2] * d[3]));
        let binom: f64 = data
            .iter()
            .map(|d| ln_gamma(d[1] + 1.0) - ln_gamma(d[0] + 1.0) - ln_gamma(d[1] - d[0] + 1.0))
            .sum();
        let ln2pi = (2.0 * std::f64::consts::PI).ln();
        let gamma_const = SHAPE * RATE.ln() - ln_gamma(SHAPE);
        let a_const = -4.0 * (0.5 * ln2pi + A_SD.ln());
        let b_const = -(k as f64) * 0.5 * ln2pi;
        Self {
            r: Tensor::from_vec(row(&|d| d[0]), (1, k), &Device::Cpu).expect("tensor"),
            n: Tensor::from_vec(row(&|d| d[1]), (1, k), &Device::Cpu).expect("tensor"),
            design: Tensor::from_vec(design, (4, k), &Device::Cpu).expect("tensor"),
            constant: binom + gamma_const + a_const + b_const,
            plates: k,
        }
    }
}

impl Default for Seeds {
    fn default() -> Self {
        Self::new()
    }
}

impl Target for Seeds {
    fn name(&self) -> &str {
        "seeds"
    }
    fn dim(&self) -> usize {
        5 + self.plates
    }
    fn log_z(&self) -> Option<f64> {
        Some(LOG_Z_REFERENCE)
    }
    fn log_density(&self, theta: &Tensor) -> Result<Tensor> {
        let dev = theta.device();
        let k = self.plates as f64;
        let u = theta.narrow(1, 0, 1)?.squeeze(1)?;
        let a = theta.narrow(1, 1, 4)?;
        let b = theta.narrow(1, 5, self.plates)?;
        let eta = (a.matmul(&self.design.to_device(dev)?)? + &b)?;
        let softplus = (eta.relu()? + ((eta.abs()? * -1.0)?.exp()? + 1.0)?.log()?)?;
        let (r, n) = (self.r.to_device(dev)?, self.n.to_device(dev)?);
        let lik = (eta.broadcast_mul(&r)? - softplus.broadcast_mul(&n)?)?.sum(1)?;
        let tau = u.exp()?;
        // log Gamma(τ) + log τ (Jacobian) = shape·u − rate·τ + const.
        let prior_tau = ((&u * SHAPE)? - (&tau * RATE)?)?;
        let prior_a = (a.sqr()?.sum(1)? * (-0.5 / (A_SD * A_SD)))?;
        let prior_b = ((&u * (0.5 * k))? - (tau * b.sqr()?.sum(1)?)? * 0.5)?;
        (((lik + prior_tau)? + prior_a)? + prior_b)? + self.constant
    }
    fn suggested_sigma(&self) -> Option<f64> {
        Some(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log density at a fixed point against a direct f64 computation written from the model
    /// statement, and autograd's gradient against central finite differences of it.
    #[test]
    fn density_and_gradient_match_a_direct_computation() {
        let data = seeds_data();
        assert_eq!(data.len(), 21);
        let direct = |th: &[f64]| -> f64 {
            let (u, a) = (th[0], &th[1..5]);
            let tau = u.exp();
            let mut s = SHAPE * RATE.ln() - ln_gamma(SHAPE) + (SHAPE - 1.0) * u - RATE * tau + u;
            for av in a {
                s += -0.5 * (2.0 * std::f64::consts::PI * A_SD * A_SD).ln()
                    - av * av / (2.0 * A_SD * A_SD);
            }
            for (i, d) in data.iter().enumerate() {
                let b = th[5 + i];
                s += 0.5 * (tau / (2.0 * std::f64::consts::PI)).ln() - 0.5 * tau * b * b;
                let eta = a[0] + a[1] * d[2] + a[2] * d[3] + a[3] * d[2] * d[3] + b;
                let p = 1.0 / (1.0 + (-eta).exp());
                let lc = ln_gamma(d[1] + 1.0) - ln_gamma(d[0] + 1.0) - ln_gamma(d[1] - d[0] + 1.0);
                s += lc + d[0] * p.ln() + (d[1] - d[0]) * (1.0 - p).ln();
            }
            s
        };
        let th: Vec<f64> = (0..26).map(|i| 0.3 * ((i as f64) * 0.7).sin()).collect();
        let t = Seeds::new();
        let x = Tensor::from_vec(
            th.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            (1, 26),
            &Device::Cpu,
        )
        .unwrap();
        let lp = t.log_density(&x).unwrap().to_vec1::<f32>().unwrap()[0] as f64;
        assert!(
            (lp - direct(&th)).abs() < 1e-3 * direct(&th).abs().max(1.0),
            "{lp} vs {}",
            direct(&th)
        );
        let g = t.grad_log_density(&x).unwrap().to_vec2::<f32>().unwrap();
        for j in 0..26 {
            let h = 1e-5;
            let (mut up, mut dn) = (th.clone(), th.clone());
            up[j] += h;
            dn[j] -= h;
            let fd = (direct(&up) - direct(&dn)) / (2.0 * h);
            assert!(
                (g[0][j] as f64 - fd).abs() < 2e-3 * fd.abs().max(1.0),
                "coordinate {j}: {} vs {fd}",
                g[0][j]
            );
        }
    }
}

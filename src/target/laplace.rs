//! The Laplace approximation N(x̂, H⁻¹) of a target: its mode x̂ by L-BFGS (argmin) on
//! −log γ̃, and H the Hessian of −log γ̃ there, by central differences of the gradient.
//!
//! Used to precondition samplers ([`super::Preconditioned`]): on a near-Gaussian posterior the
//! whitened target z ↦ γ̃(x̂ + Lz)·det L (LLᵀ = H⁻¹) is close to N(0, I), which a diffusion
//! sampler started at N(0, I), SMC or NUTS handle easily. Nothing here changes the target's
//! normalising constant or the exactness of the importance weights; a poor approximation only
//! costs efficiency.

use super::{Target, Want, evaluate};
use crate::error::{DsbError, ensure_valid, invalid};
use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// A Gaussian approximation at the target's mode.
#[derive(Debug, Clone)]
pub struct LaplaceApproximation {
    /// The mode x̂.
    pub mode: Vec<f64>,
    /// log γ̃(x̂).
    pub log_density_at_mode: f64,
    /// The covariance H⁻¹ (symmetrised; eigenvalues of H floored to stay positive).
    pub covariance: DMatrix<f64>,
    /// L-BFGS iterations used.
    pub iterations: u64,
    /// Eigenvalues of H that were not positive and were floored (a saddle or a flat direction).
    pub floored_eigenvalues: usize,
}

/// −log γ̃ and its gradient through the target's batched interface, one point at a time.
struct NegLogDensity<'a> {
    target: &'a dyn Target,
}

impl CostFunction for NegLogDensity<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let (lp, _) = evaluate(self.target, x, x.len(), Want::Density)?;
        // A non-finite point is an infinitely bad one; the line search backs off.
        Ok(if lp[0].is_finite() {
            -lp[0]
        } else {
            f64::INFINITY
        })
    }
}

impl Gradient for NegLogDensity<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        let (_, g) = evaluate(self.target, x, x.len(), Want::Gradient)?;
        Ok(g.into_iter().map(|v| -v).collect())
    }
}

/// L-BFGS iterations allowed to the mode search.
pub const MODE_SEARCH_MAX_ITERS: u64 = 1000;

/// The Laplace approximation of `target`, searching for the mode from `start`.
///
/// Errors if the search ends at a point where the density or gradient is not finite, or if it
/// did not converge there ([`DsbError::InvalidInput`]): a "mode" that is not one would give a
/// Laplace approximation centred at the wrong place with a meaningless covariance.
pub fn laplace_approximation(
    target: &dyn Target,
    start: &[f64],
) -> crate::error::Result<LaplaceApproximation> {
    laplace_approximation_capped(target, start, MODE_SEARCH_MAX_ITERS)
}

/// Whether the mode search stopped at a mode: the gradient of −log γ̃ there is small against
/// the scale of −log γ̃ (`‖g‖ ≤ 10⁻³·(1 + |f|)`, what f32 gradients can resolve), or the Newton
/// step it implies is small against the Laplace spread (`√(gᵀ H⁻¹ g) ≤ 0.1`).
fn looks_converged(grad_norm: f64, neg_log_density: f64, newton_decrement: f64) -> bool {
    grad_norm.is_finite()
        && (grad_norm <= 1e-3 * (1.0 + neg_log_density.abs()) || newton_decrement <= 0.1)
}

fn laplace_approximation_capped(
    target: &dyn Target,
    start: &[f64],
    max_iters: u64,
) -> crate::error::Result<LaplaceApproximation> {
    let d = target.dim();
    ensure_valid!(start.len() == d, "the mode search start must be {d}-D");
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-6)
        .and_then(|s| s.with_tolerance_cost(1e-12))
        .map_err(|e| DsbError::foreign(&*e))?;
    let res = Executor::new(NegLogDensity { target }, solver)
        .configure(|s| s.param(start.to_vec()).max_iters(max_iters))
        .run()
        .map_err(|e| invalid!("the mode search on '{}' failed: {e}", target.name()))?;
    let state = res.state();
    let mode = state
        .get_best_param()
        .cloned()
        .ok_or_else(|| invalid!("the mode search on '{}' found no point", target.name()))?;
    let iterations = state.get_iter();
    let status = state.get_termination_status().to_string().to_lowercase();
    let (lp, grad) = evaluate(target, &mode, d, Want::Gradient)?;
    ensure_valid!(
        lp[0].is_finite(),
        "the mode search on '{}' ended where the log density is not finite",
        target.name()
    );
    let (hessian, floored) = hessian_at(target, &mode)?;
    let grad = DVector::from_vec(grad);
    let grad_norm = grad.norm();
    let newton_decrement = (grad.transpose() * &hessian * &grad)[(0, 0)]
        .max(0.0)
        .sqrt();
    if !looks_converged(grad_norm, lp[0], newton_decrement) {
        return Err(DsbError::InvalidInput(format!(
            "the mode search of the Laplace approximation on '{}' did not converge ({status} after \
             {iterations} L-BFGS iterations): the gradient norm where it stopped is {grad_norm:.3e} \
             (log density {:.6e}, Newton step {newton_decrement:.3e} Laplace standard deviations{}), \
             so that point is not a mode and its Laplace approximation would be wrong; sample \
             without --precondition laplace",
            target.name(),
            lp[0],
            if floored > 0 {
                format!(", {floored} Hessian eigenvalues floored")
            } else {
                String::new()
            }
        )));
    }
    Ok(LaplaceApproximation {
        mode,
        log_density_at_mode: lp[0],
        covariance: hessian,
        iterations,
        floored_eigenvalues: floored,
    })
}

/// H⁻¹ at `x` from central differences of the gradient (all 2d points in one batch), with
/// step hⱼ = 10⁻²·max(0.1, |xⱼ|) so that f32 gradients keep several digits; symmetrised, and
/// eigenvalues of H below 10⁻⁶·(largest) floored there. Returns the covariance and the number of
/// floored eigenvalues.
fn hessian_at(target: &dyn Target, x: &[f64]) -> crate::error::Result<(DMatrix<f64>, usize)> {
    let d = x.len();
    let h: Vec<f64> = x.iter().map(|v| 1e-2 * v.abs().max(0.1)).collect();
    let mut pts = Vec::with_capacity(2 * d * d);
    for j in 0..d {
        for sign in [1.0, -1.0] {
            let mut p = x.to_vec();
            p[j] += sign * h[j];
            pts.extend(p);
        }
    }
    let (lp, g) = evaluate(target, &pts, d, Want::Gradient)?;
    ensure_valid!(
        lp.iter().all(|v| v.is_finite()),
        "the gradient of '{}' is not finite next to where the mode search stopped: the density \
         may have no finite mode (e.g. it grows without bound as a scale parameter goes to 0), \
         so there is no Laplace approximation; sample without --precondition laplace",
        target.name()
    );
    let mut hess = DMatrix::<f64>::zeros(d, d);
    for j in 0..d {
        let (gp, gm) = (
            &g[2 * j * d..(2 * j + 1) * d],
            &g[(2 * j + 1) * d..(2 * j + 2) * d],
        );
        for i in 0..d {
            hess[(i, j)] = -(gp[i] - gm[i]) / (2.0 * h[j]);
        }
    }
    let sym = (&hess + hess.transpose()) * 0.5;
    let eig = SymmetricEigen::new(sym);
    let top = eig.eigenvalues.iter().cloned().fold(0.0f64, f64::max);
    ensure_valid!(
        top > 0.0 && top.is_finite(),
        "the Hessian of −log γ̃ of '{}' at its mode has no positive curvature",
        target.name()
    );
    let floor = 1e-6 * top;
    let floored = eig.eigenvalues.iter().filter(|v| **v < floor).count();
    let inv = DVector::from_iterator(d, eig.eigenvalues.iter().map(|v| 1.0 / v.max(floor)));
    let cov = &eig.eigenvectors * DMatrix::from_diagonal(&inv) * eig.eigenvectors.transpose();
    Ok(((&cov + cov.transpose()) * 0.5, floored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::CorrelatedGaussian;

    /// On a Gaussian the Laplace approximation is exact: mode = mean, covariance = Σ.
    #[test]
    fn laplace_is_exact_on_a_gaussian() {
        let t = CorrelatedGaussian::builtin(4).unwrap();
        let la = laplace_approximation(&t, &[0.0; 4]).unwrap();
        for i in 0..4 {
            assert!((la.mode[i] - t.mean()[i]).abs() < 1e-3, "{:?}", la.mode);
            for j in 0..4 {
                let (a, b) = (la.covariance[(i, j)], t.covariance()[(i, j)]);
                assert!(
                    (a - b).abs() < 2e-3 * (1.0 + b.abs()),
                    "({i},{j}): {a} vs {b}"
                );
            }
        }
        assert_eq!(la.floored_eigenvalues, 0);
    }

    /// A mode search cut off before it converged is an error naming the flag, the failure and
    /// the gradient norm, never a "mode" that is not one.
    #[test]
    fn unconverged_mode_search_is_an_error() {
        let t = CorrelatedGaussian::builtin(4).unwrap();
        let far = [30.0, -40.0, 25.0, 50.0];
        let err = laplace_approximation_capped(&t, &far, 1).unwrap_err();
        let msg = format!("{err}");
        assert!(matches!(err, DsbError::InvalidInput(_)), "{msg}");
        for key in [
            "--precondition laplace",
            "did not converge",
            "gradient norm",
        ] {
            assert!(msg.contains(key), "{key} not in: {msg}");
        }
        // With the normal cap the same search converges.
        assert!(laplace_approximation(&t, &far).is_ok());
    }

    #[test]
    fn convergence_criterion() {
        assert!(looks_converged(1e-4, 10.0, 5.0));
        assert!(looks_converged(5.0, 10.0, 0.01));
        assert!(!looks_converged(461.0, 100.0, 1e3));
        assert!(!looks_converged(f64::NAN, 1.0, 0.0));
    }
}

//! Unnormalised target densities: the [`Target`] trait and the built-in targets.
//!
//! A target maps a batch of points `[batch, dim]` to their unnormalised log densities `[batch]`.
//! Its gradient comes from candle's autograd unless the target supplies one. Known facts (the
//! true log normalising constant, exact samples, mode locations) are optional and are used by
//! the reports and the tests.

mod brownian;
mod evaluate;
mod funnel;
mod gaussian;
mod labelled_csv;
mod laplace;
mod lgcp;
mod logistic;
mod many_well;
mod mixture;
mod preconditioned;
mod registry;
mod seeds;

pub use brownian::{BrownianMotion, brownian_observations};
pub use evaluate::{Want, evaluate};
pub use funnel::Funnel;
pub use gaussian::CorrelatedGaussian;
pub use labelled_csv::LabelledData;
pub use laplace::{LaplaceApproximation, laplace_approximation};
pub use lgcp::{LaplaceFit, Lgcp, bin_counts, gram_matrix, pines_points};
pub use logistic::{Intercept, LogisticRegression, PosteriorReference};
pub use many_well::ManyWell;
pub use mixture::GaussianMixture;
pub use preconditioned::{AffineMap, Preconditioned, Whitened};
pub use registry::{TargetInfo, TargetOptions, builtin_target, builtin_targets};
pub use seeds::{Seeds, seeds_data};

use candle_core::{Result, Tensor, Var};

/// An unnormalised probability density γ̃ on ℝ^dim, with Z = ∫ γ̃.
///
/// Implement [`Target::log_density`] with candle tensor operations; the gradient then comes from
/// autograd. A non-finite log density at some points is allowed: those particles get zero
/// importance weight and are counted in the estimates.
///
/// ```
/// use candle_core::{Result, Tensor};
/// use dsb::target::Target;
///
/// /// A standard normal in 3-D, left unnormalised: log Z = 1.5 log(2π).
/// struct StdNormal;
/// impl Target for StdNormal {
///     fn name(&self) -> &str { "std-normal" }
///     fn dim(&self) -> usize { 3 }
///     fn log_density(&self, x: &Tensor) -> Result<Tensor> {
///         x.sqr()?.sum(1)? * -0.5
///     }
///     fn log_z(&self) -> Option<f64> { Some(1.5 * (2.0 * std::f64::consts::PI).ln()) }
/// }
/// let x = Tensor::new(&[[1.0f32, 0.0, 0.0], [0.0, 2.0, 0.0]], &candle_core::Device::Cpu).unwrap();
/// let g = StdNormal.grad_log_density(&x).unwrap();
/// assert_eq!(g.to_vec2::<f32>().unwrap(), vec![vec![-1.0, 0.0, 0.0], vec![0.0, -2.0, 0.0]]);
/// ```
pub trait Target: Send + Sync {
    /// Short name, used in reports and checkpoints.
    fn name(&self) -> &str;

    /// Dimension of the sample space.
    fn dim(&self) -> usize;

    /// Unnormalised log density, `[batch, dim] → [batch]`, differentiable by candle's autograd.
    fn log_density(&self, x: &Tensor) -> Result<Tensor>;

    /// Gradient of the log density, `[batch, dim] → [batch, dim]`. The default differentiates
    /// [`Target::log_density`] by autograd on a detached copy of `x`, so the result never carries
    /// a graph back into the caller's computation (a stop-gradient input).
    fn grad_log_density(&self, x: &Tensor) -> Result<Tensor> {
        autograd_gradient(self, x)
    }

    /// Whether [`Target::grad_log_density_rows`] computes the gradient on the host, row by
    /// row, without candle's tensors. The samplers' CPU fast path then calls it on each thread's
    /// part of the batch, instead of [`Target::grad_log_density`] on the whole batch, whose
    /// per-operation cost (an allocation and a pass per operation) dominates a small analytic
    /// gradient at batches of a few hundred rows. The default: no.
    fn has_host_gradient(&self) -> bool {
        false
    }

    /// The gradient of the log density at the rows of `x` (row-major, `dim` values per row)
    /// into `grad` (the same shape): the same function as [`Target::grad_log_density`], to f32
    /// rounding. The default goes through [`Target::grad_log_density`]; a target that overrides
    /// it also returns true from [`Target::has_host_gradient`].
    fn grad_log_density_rows(&self, x: &[f32], grad: &mut [f32]) -> Result<()> {
        let rows = x.len() / self.dim();
        let t = Tensor::from_slice(x, (rows, self.dim()), &candle_core::Device::Cpu)?;
        let g = self.grad_log_density(&t)?.flatten_all()?.to_vec1::<f32>()?;
        if g.len() != grad.len() {
            candle_core::bail!(
                "target '{}': grad_log_density returned {} values for {} rows of {}",
                self.name(),
                g.len(),
                rows,
                self.dim()
            );
        }
        grad.copy_from_slice(&g);
        Ok(())
    }

    /// log Z where it is known in closed form or from a trusted reference computation.
    fn log_z(&self) -> Option<f64> {
        None
    }

    /// `n` exact samples `[n, dim]` drawn with `rng`, where the target can be sampled directly.
    fn exact_samples(&self, _n: usize, _rng: &mut dyn rand::RngCore) -> Option<Vec<Vec<f64>>> {
        None
    }

    /// Centres of the target's modes with their probabilities, where known (mixtures). Used to
    /// report how many modes a sampler found.
    fn modes(&self) -> Option<(Vec<Vec<f64>>, Vec<f64>)> {
        None
    }

    /// A scale σ for the prior N(0, σ²I) that covers the target; `None` lets the caller choose.
    fn suggested_sigma(&self) -> Option<f64> {
        None
    }

    /// One prior scale per coordinate, for targets whose coordinates live on very different
    /// scales; takes precedence over [`Target::suggested_sigma`].
    fn suggested_scales(&self) -> Option<Vec<f64>> {
        None
    }

    /// The settings this target asks of the diffusion sampler where the user gives none (see
    /// [`SamplerHints`]); the default asks for nothing, so a user's target gets the generic
    /// settings whatever it is called.
    fn sampler_hints(&self) -> SamplerHints {
        SamplerHints::default()
    }

    /// Reference posterior means and standard deviations per coordinate, where known (closed
    /// form, or long reference runs shipped with the data). Used to report moment errors in
    /// units of the reference standard deviation.
    fn posterior_moments(&self) -> Option<PosteriorReference> {
        None
    }

    /// For a target that is a reparametrisation of another (a [`Preconditioned`] target,
    /// x = m + Lz), the rows `[n, dim]` (row-major) mapped to the other target's coordinates.
    /// Every sampler's public entry point (`DiffusionSampler::sample`, `run_smc`, `run_nuts`,
    /// `SequentialSampler::sample`) applies it to its samples, so results are always in the
    /// coordinates of the target the user started from. `None` (the default): this target's
    /// own coordinates are the user's.
    fn original_coordinates(&self, _rows: &[f32]) -> Option<Vec<f32>> {
        None
    }
}

/// Gradient of `target.log_density` at `x` by reverse-mode autograd on a detached copy of `x`.
/// A log density that does not depend on `x` has gradient zero.
pub fn autograd_gradient<T: Target + ?Sized>(target: &T, x: &Tensor) -> Result<Tensor> {
    let var = Var::from_tensor(&x.detach())?;
    let lp = target.log_density(var.as_tensor())?;
    let grads = lp.sum_all()?.backward()?;
    match grads.get(var.as_tensor()) {
        Some(g) => Ok(g.detach()),
        None => x.zeros_like(),
    }
}

/// Settings a target asks of the diffusion sampler (`--method dsb`) when the user gives none:
/// what its measured runs needed (README, results). `None` leaves the generic default
/// ([`crate::recommend::recommended_settings`] applies them). They belong to the target's type
/// and constructor, not to its name, so a user's target called "funnel" inherits nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplerHints {
    /// Prior scale σ (overrides [`Target::suggested_sigma`] for the diffusion sampler).
    pub sigma: Option<f64>,
    /// Length scale ℓ of the time grid.
    pub length_scale: Option<f64>,
    /// Time steps.
    pub steps: Option<usize>,
    /// Horizon T.
    pub horizon: Option<f64>,
    /// Width of the drift network's hidden layers.
    pub width: Option<usize>,
    /// Training iterations.
    pub iterations: Option<usize>,
    /// Paths per training iteration.
    pub batch: Option<usize>,
    /// Peak learning rate.
    pub lr: Option<f64>,
    /// HMC replay paths: (fraction of the batch, HMC moves per refresh, weight of the term).
    pub replay: Option<(f64, usize, f64)>,
}

/// An error unless `target` has the dimension `dim` a sampler was built for.
pub(crate) fn check_dimension(target: &dyn Target, dim: usize) -> crate::error::Result<()> {
    if target.dim() != dim {
        return Err(crate::error::DsbError::InvalidInput(format!(
            "target '{}' has dimension {} but the sampler was built for dimension {dim}",
            target.name(),
            target.dim(),
        )));
    }
    Ok(())
}

/// The largest |autograd gradient − `grad_log_density`| of `target` at `x`: the check that a
/// target's closed-form gradient matches its log density.
#[cfg(test)]
pub(crate) fn autograd_gap<T: Target + ?Sized>(target: &T, x: &Tensor) -> f32 {
    let a = autograd_gradient(target, x).unwrap();
    let c = target.grad_log_density(x).unwrap();
    (a - c)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

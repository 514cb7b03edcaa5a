//! Optimiser helpers that candle does not provide: gradient-norm clipping, the schedule, and
//! the update step both training loops share.

use super::adam::{Adam, AdamState};
use super::{Ema, EmaState};
use crate::error::{DsbError, Result};
use crate::nn::ParamStore;
use candle_core::{DType, Tensor, Var, backprop::GradStore};

/// Adam without weight decay over one [`ParamStore`], with the cosine learning-rate decay of
/// [`cosine_lr`], the global gradient-norm clip and an optional EMA of the weights.
#[derive(Debug)]
pub struct Optimiser {
    opt: Adam,
    vars: Vec<Var>,
    peak_lr: f64,
    iterations: usize,
    grad_clip: f64,
    ema: Option<Ema>,
}

impl Optimiser {
    /// An optimiser for `params` over a run of `iterations` steps; `ema` is the EMA decay
    /// (0: none).
    pub fn new(
        params: &ParamStore,
        lr: f64,
        grad_clip: f64,
        iterations: usize,
        ema: f64,
    ) -> Result<Self> {
        let vars = params.vars();
        let opt = Adam::new(vars.clone(), lr)?;
        let ema = if ema > 0.0 {
            Some(Ema::new(params, ema)?)
        } else {
            None
        };
        Ok(Self {
            opt,
            vars,
            peak_lr: lr,
            iterations,
            grad_clip,
            ema,
        })
    }

    /// Update `it` from a finite `loss`: backpropagate, clip, step and fold the weights into the
    /// EMA. Returns the gradient norm before clipping; when it is not finite nothing is updated.
    pub fn step(&mut self, it: usize, loss: &Tensor, params: &ParamStore) -> Result<f64> {
        self.step_with_gradients(it, loss.backward()?, params)
    }

    /// [`Optimiser::step`] from gradients computed elsewhere (the CPU fast path of the drift
    /// network), keyed by the parameters' tensors.
    pub fn step_with_gradients(
        &mut self,
        it: usize,
        mut grads: GradStore,
        params: &ParamStore,
    ) -> Result<f64> {
        self.opt
            .set_learning_rate(cosine_lr(self.peak_lr, it, self.iterations));
        let norm = clip_grad_norm(&mut grads, &self.vars, self.grad_clip)?;
        if norm.is_finite() {
            self.opt.step(&grads)?;
            if let Some(e) = self.ema.as_mut() {
                e.update(params)?;
            }
        }
        Ok(norm)
    }

    /// Ends the run: `params` take the EMA of their weights, if one is kept.
    pub fn finish(self, params: &ParamStore) -> Result<()> {
        match &self.ema {
            Some(e) => e.apply(params),
            None => Ok(()),
        }
    }

    /// The EMA of the weights, in the order of the parameters (`None` without an EMA).
    pub fn ema_weights(&self) -> Option<&[Tensor]> {
        self.ema.as_ref().map(|e| e.weights())
    }

    /// Adam updates made so far.
    pub fn adam_steps(&self) -> usize {
        self.opt.state().step
    }

    /// A copy of everything the optimiser remembers (Adam's moments and step, the EMA), for a
    /// checkpoint from which a run continues exactly.
    pub fn state(&self) -> OptimiserState {
        OptimiserState {
            adam: self.opt.state(),
            ema: self.ema.as_ref().map(|e| e.state()),
        }
    }

    /// Continues from `state`, saved by [`Optimiser::state`] of an optimiser over the same
    /// parameters with the same EMA setting.
    pub fn restore(&mut self, state: OptimiserState) -> Result<()> {
        self.opt.restore(state.adam)?;
        match (self.ema.as_mut(), state.ema) {
            (Some(e), Some(s)) => e.restore(s),
            (None, None) => Ok(()),
            _ => Err(DsbError::InvalidInput(
                "the saved optimiser state and this run disagree on keeping an EMA".into(),
            )),
        }
    }
}

/// What an [`Optimiser`] remembers between steps.
#[derive(Debug, Clone)]
pub struct OptimiserState {
    /// Adam's step count and moments.
    pub adam: AdamState,
    /// The EMA, if one is kept.
    pub ema: Option<EmaState>,
}

/// Scales all gradients so that their global L2 norm is at most `max_norm` (the anchors' gradient
/// clip). Returns the norm before clipping (NaN or ∞ if a gradient was not finite, in which case
/// nothing is changed).
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    if norm.is_finite() && norm > max_norm {
        let scale = max_norm / norm;
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(norm)
}

/// Learning rate at iteration `it` of `total`: a cosine decay from `peak` to `peak / 10`.
pub fn cosine_lr(peak: f64, it: usize, total: usize) -> f64 {
    let u = if total <= 1 {
        0.0
    } else {
        it as f64 / (total - 1) as f64
    };
    let floor = 0.1 * peak;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * u).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn clipping_bounds_the_global_norm() {
        let a = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let b = Var::new(&[3.0f32], &Device::Cpu).unwrap();
        // loss = 3·Σa + 4·b → gradients (3, 3) and (4): norm √34.
        let loss = ((a.as_tensor().sum_all().unwrap() * 3.0).unwrap()
            + (b.as_tensor().sum_all().unwrap() * 4.0).unwrap())
        .unwrap();
        let mut g = loss.backward().unwrap();
        let vars = [a.clone(), b.clone()];
        let n = clip_grad_norm(&mut g, &vars, 1.0).unwrap();
        assert!((n - 34f64.sqrt()).abs() < 1e-5);
        let ga: Tensor = g.get(a.as_tensor()).unwrap().clone();
        let gb: Tensor = g.get(b.as_tensor()).unwrap().clone();
        let after = ga
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            + gb.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
        assert!((after - 1.0).abs() < 1e-5);
    }

    #[test]
    fn schedule_starts_at_peak_and_ends_at_a_tenth() {
        assert!((cosine_lr(1.0, 0, 100) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(1.0, 99, 100) - 0.1).abs() < 1e-12);
    }
}

//! Adam without weight decay, with its state readable and restorable (candle's `AdamW` keeps its
//! moments private, so a run could not be resumed exactly with it).
//!
//! The update is candle's `AdamW` with weight decay 0, operation for operation, so switching to
//! it changed no result: m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², θ ← θ − lr·m̂/(√v̂ + ε) with
//! the bias corrections m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ).

use crate::error::{DsbError, Result};
use candle_core::{Tensor, Var, backprop::GradStore};

/// The Adam optimiser over a list of variables.
#[derive(Debug)]
pub struct Adam {
    vars: Vec<Var>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    step_t: usize,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

/// What Adam remembers between steps: the step count and both moments of every variable, in
/// the order of the variables it was built with.
#[derive(Debug, Clone)]
pub struct AdamState {
    /// Updates made so far.
    pub step: usize,
    /// First moments m.
    pub first: Vec<Tensor>,
    /// Second moments v.
    pub second: Vec<Tensor>,
}

impl Adam {
    /// Adam over `vars` with learning rate `lr`, β₁ = 0.9, β₂ = 0.999, ε = 10⁻⁸, moments at 0.
    pub fn new(vars: Vec<Var>, lr: f64) -> Result<Self> {
        let zeros = |v: &Var| Ok(v.as_tensor().zeros_like()?);
        let first = vars.iter().map(zeros).collect::<Result<Vec<_>>>()?;
        let second = vars.iter().map(zeros).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            vars,
            first,
            second,
            step_t: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        })
    }

    /// Sets the learning rate of the next steps.
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// One update from `grads` (variables without a gradient keep their values and moments).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let scale_m = 1.0 / (1.0 - b1.powi(self.step_t as i32));
        let scale_v = 1.0 / (1.0 - b2.powi(self.step_t as i32));
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let m = ((&self.first[i] * b1)? + (g * (1.0 - b1))?)?;
            let v = ((&self.second[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let adjusted = ((&m * scale_m)? / ((&v * scale_v)?.sqrt()? + self.eps)?)?;
            var.set(&(var.as_tensor() - (adjusted * self.lr)?)?)?;
            // Detached: a gradient can carry its backward graph (which reaches the forward
            // activations), and moments built from it would chain every step's graph to the
            // next, growing memory without bound (seen as 21 GB after ~100 UNet steps).
            self.first[i] = m.detach();
            self.second[i] = v.detach();
        }
        Ok(())
    }

    /// A copy of the state.
    pub fn state(&self) -> AdamState {
        AdamState {
            step: self.step_t,
            first: self.first.clone(),
            second: self.second.clone(),
        }
    }

    /// Continues from `state` (saved by [`Adam::state`] for the same variables).
    pub fn restore(&mut self, state: AdamState) -> Result<()> {
        let fits = |ts: &[Tensor]| {
            ts.len() == self.vars.len()
                && ts.iter().zip(&self.vars).all(|(t, v)| t.dims() == v.dims())
        };
        if !fits(&state.first) || !fits(&state.second) {
            return Err(DsbError::InvalidInput(
                "the saved optimiser state does not match the network's parameters".into(),
            ));
        }
        let dev = |t: &Tensor, v: &Var| Ok(t.to_device(v.device())?.to_dtype(v.dtype())?);
        self.first = state
            .first
            .iter()
            .zip(&self.vars)
            .map(|(t, v)| dev(t, v))
            .collect::<Result<_>>()?;
        self.second = state
            .second
            .iter()
            .zip(&self.vars)
            .map(|(t, v)| dev(t, v))
            .collect::<Result<_>>()?;
        self.step_t = state.step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};

    /// Same numbers as candle's AdamW without weight decay, to the bit, and a restored copy
    /// continues exactly.
    #[test]
    fn matches_candle_adamw_and_restores_exactly() {
        let dev = Device::Cpu;
        let init = [0.3f32, -1.2, 2.0];
        let (a, b, c) = (
            Var::new(&init, &dev).unwrap(),
            Var::new(&init, &dev).unwrap(),
            Var::new(&init, &dev).unwrap(),
        );
        let params = ParamsAdamW {
            lr: 0.05,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut reference = AdamW::new(vec![a.clone()], params).unwrap();
        let mut ours = Adam::new(vec![b.clone()], 0.05).unwrap();
        let mut other = Adam::new(vec![c.clone()], 0.05).unwrap();
        let loss = |v: &Var| (v.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.7).unwrap();
        for step in 0..6 {
            reference.step(&loss(&a).backward().unwrap()).unwrap();
            ours.step(&loss(&b).backward().unwrap()).unwrap();
            if step == 2 {
                c.set(b.as_tensor()).unwrap();
                other.restore(ours.state()).unwrap();
            } else if step > 2 {
                other.step(&loss(&c).backward().unwrap()).unwrap();
            }
        }
        let v = |x: &Var| x.as_tensor().to_vec1::<f32>().unwrap();
        assert_eq!(v(&a), v(&b));
        assert_eq!(v(&b), v(&c));
        assert_eq!(ours.state().step, 6);
    }

    /// The moments hold values, not graphs: a gradient of a loss built from a variable is itself
    /// tracked, and moments kept from it chained every step's backward and forward graph to the
    /// next (memory grew by one step's activations per step).
    #[test]
    fn moments_do_not_keep_the_gradient_graph() {
        let dev = Device::Cpu;
        let w = Var::new(&[0.5f32, -0.25], &dev).unwrap();
        let mut adam = Adam::new(vec![w.clone()], 0.01).unwrap();
        for _ in 0..3 {
            let loss = w
                .as_tensor()
                .sqr()
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            assert!(grads.get(w.as_tensor()).unwrap().track_op());
            adam.step(&grads).unwrap();
            let state = adam.state();
            assert!(!state.first[0].track_op() && !state.second[0].track_op());
        }
    }
}

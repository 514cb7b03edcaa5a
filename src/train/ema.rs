//! Exponential moving average of a network's weights.

use crate::error::Result;
use crate::nn::ParamStore;
use candle_core::Tensor;

/// The running average w̄ ← ρ_t w̄ + (1 − ρ_t) w of every variable of a [`ParamStore`], started
/// at the current weights. The decay warms up, ρ_t = min(ρ, (1 + t)/(10 + t)) at update t, so
/// a short run is not dominated by the starting weights (with a constant 0.99 they would still
/// carry 13% of the average after 200 updates).
#[derive(Debug)]
pub struct Ema {
    decay: f64,
    updates: usize,
    shadow: Vec<Tensor>,
}

impl Ema {
    /// An average with decay ρ ∈ [0, 1), started at the current values of `params`.
    pub fn new(params: &ParamStore, decay: f64) -> Result<Self> {
        let shadow = params
            .named()
            .iter()
            .map(|(_, v)| Ok(v.as_tensor().copy()?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            decay,
            updates: 0,
            shadow,
        })
    }

    /// Folds the current values of `params` into the average.
    pub fn update(&mut self, params: &ParamStore) -> Result<()> {
        let t = self.updates as f64;
        let rho = self.decay.min((1.0 + t) / (10.0 + t));
        for (s, (_, v)) in self.shadow.iter_mut().zip(params.named()) {
            *s = ((&*s * rho)? + (v.as_tensor() * (1.0 - rho))?)?.detach();
        }
        self.updates += 1;
        Ok(())
    }

    /// The averaged weights, in the order of the parameters.
    pub fn weights(&self) -> &[Tensor] {
        &self.shadow
    }

    /// A copy of the average and its update count.
    pub fn state(&self) -> EmaState {
        EmaState {
            updates: self.updates,
            shadow: self.shadow.clone(),
        }
    }

    /// Continues from `state` (saved by [`Ema::state`] for the same parameters).
    pub fn restore(&mut self, state: EmaState) -> Result<()> {
        let fits = state.shadow.len() == self.shadow.len()
            && state
                .shadow
                .iter()
                .zip(&self.shadow)
                .all(|(a, b)| a.dims() == b.dims());
        if !fits {
            return Err(crate::error::DsbError::InvalidInput(
                "the saved EMA does not match the network's parameters".into(),
            ));
        }
        self.shadow = state
            .shadow
            .iter()
            .zip(&self.shadow)
            .map(|(t, old)| Ok(t.to_device(old.device())?.to_dtype(old.dtype())?))
            .collect::<Result<_>>()?;
        self.updates = state.updates;
        Ok(())
    }

    /// Overwrites `params` with the average.
    pub fn apply(&self, params: &ParamStore) -> Result<()> {
        for (s, (_, v)) in self.shadow.iter().zip(params.named()) {
            v.set(s)?;
        }
        Ok(())
    }
}

/// What an [`Ema`] remembers: its update count (for the warm-up) and the averaged weights.
#[derive(Debug, Clone)]
pub struct EmaState {
    /// Updates folded in so far.
    pub updates: usize,
    /// The averaged weights, in the order of the parameters.
    pub shadow: Vec<Tensor>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    #[test]
    fn average_moves_towards_the_weights() {
        let mut ps = ParamStore::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let _ = ps
            .linear("l", 2, 1, crate::nn::Init::Zero, &mut rng, &Device::Cpu)
            .unwrap();
        let mut ema = Ema::new(&ps, 0.5).unwrap();
        let (_, w) = &ps.named()[0];
        w.set(&Tensor::new(&[[2.0f32, 4.0]], &Device::Cpu).unwrap())
            .unwrap();
        // Warm-up decays 0.1 then 2/11 (both below 0.5): 0 → 1.8 → 1.8·2/11 + 2·9/11.
        ema.update(&ps).unwrap();
        ema.update(&ps).unwrap();
        ema.apply(&ps).unwrap();
        let v = ps.named()[0].1.as_tensor().to_vec2::<f32>().unwrap();
        let expect = 1.8 * 2.0 / 11.0 + 2.0 * 9.0 / 11.0;
        assert!(
            (v[0][0] - expect as f32).abs() < 1e-6 && (v[0][1] - 2.0 * expect as f32).abs() < 1e-6
        );
        // Late updates use the nominal decay.
        let mut ema = Ema::new(&ps, 0.5).unwrap();
        ema.updates = 100;
        w.set(&Tensor::new(&[[0.0f32, 0.0]], &Device::Cpu).unwrap())
            .unwrap();
        ema.update(&ps).unwrap();
        ema.apply(&ps).unwrap();
        let v = ps.named()[0].1.as_tensor().to_vec2::<f32>().unwrap();
        assert!((v[0][0] - 0.5 * expect as f32).abs() < 1e-6);
    }
}

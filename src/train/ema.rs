//! Exponential moving average of a network's weights.

use crate::error::Result;
use crate::nn::ParamStore;
use candle_core::Tensor;

/// The running average w̄ ← ρ w̄ + (1 − ρ) w of every variable of a [`ParamStore`], started at
/// the current weights.
#[derive(Debug)]
pub struct Ema {
    decay: f64,
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
        Ok(Self { decay, shadow })
    }

    /// Folds the current values of `params` into the average.
    pub fn update(&mut self, params: &ParamStore) -> Result<()> {
        for (s, (_, v)) in self.shadow.iter_mut().zip(params.named()) {
            *s = ((&*s * self.decay)? + (v.as_tensor() * (1.0 - self.decay))?)?.detach();
        }
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
        ema.update(&ps).unwrap();
        ema.update(&ps).unwrap();
        ema.apply(&ps).unwrap();
        let v = ps.named()[0].1.as_tensor().to_vec2::<f32>().unwrap();
        assert_eq!(v, vec![vec![1.5, 3.0]]);
    }
}

//! A bounded cache of simulated paths for the mean-matching regressions of IPF.
//!
//! Both half-steps of IPF regress one process's kernel means on pairs (x_k, x_{k+1}) of paths of
//! the other process, which is frozen during the half-step. Simulating fresh paths for every
//! gradient step would cost N network evaluations per step, so paths are simulated in bulk into
//! this cache and refilled every few hundred steps (as in the DSB reference code). The sampler's
//! forward fit ([`super::fit_forward`]) uses every transition of a few paths per step; the data
//! fit ([`crate::fit`]) one random transition per example, as DDPM does.

use crate::error::{DsbError, Result};
use candle_core::Tensor;

/// Paths x_0..x_N, held as one detached tensor `[N + 1, paths, dim]`.
#[derive(Debug, Clone)]
pub struct PathCache {
    states: Tensor,
}

impl PathCache {
    /// A cache of the paths in `chunks`, each `[N + 1, paths_i, dim]` (detached here).
    pub fn from_chunks(chunks: &[Tensor]) -> Result<Self> {
        if chunks.is_empty() {
            return Err(DsbError::InvalidInput("a path cache needs paths".into()));
        }
        let states = Tensor::cat(chunks, 1)?.detach();
        if states.rank() != 3 || states.dim(0)? < 2 {
            return Err(DsbError::InvalidInput(format!(
                "paths must be [steps + 1, paths, dim], got {:?}",
                states.dims()
            )));
        }
        Ok(Self { states })
    }

    /// The states x_0..x_N of a batch of paths (each `[paths, dim]`) as one chunk for
    /// [`PathCache::from_chunks`].
    pub fn chunk(states: &[Tensor]) -> Result<Tensor> {
        Ok(Tensor::stack(states, 0)?.detach())
    }

    /// Number of paths.
    pub fn len(&self) -> usize {
        self.states.dims()[1]
    }

    /// Whether the cache holds no paths.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of steps N of each path.
    pub fn steps(&self) -> usize {
        self.states.dims()[0] - 1
    }

    /// All N transitions of the paths at `paths` (a `u32` index tensor of length b):
    /// (x_k, x_{k+1}), each `[N, b, dim]`.
    pub fn transitions(&self, paths: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = self.steps();
        let sel = self.states.index_select(paths, 1)?;
        Ok((sel.narrow(0, 0, n)?, sel.narrow(0, 1, n)?))
    }

    /// One transition per example: (x_{k_i}, x_{k_i + 1}) of path `paths[i]`, each `[b, dim]`.
    /// Every `steps[i]` must be below N and every `paths[i]` below [`PathCache::len`].
    pub fn pairs(&self, paths: &[usize], steps: &[usize]) -> Result<(Tensor, Tensor)> {
        let (m, n) = (self.len(), self.steps());
        if paths.len() != steps.len() || paths.iter().zip(steps).any(|(&p, &k)| p >= m || k >= n) {
            return Err(DsbError::InvalidInput(format!(
                "path/step indices out of range for a cache of {m} paths of {n} steps"
            )));
        }
        let dim = self.states.dims()[2];
        let flat = self.states.reshape(((n + 1) * m, dim))?;
        let rows = |shift: usize| -> Result<Tensor> {
            let idx: Vec<u32> = paths
                .iter()
                .zip(steps)
                .map(|(&p, &k)| ((k + shift) * m + p) as u32)
                .collect();
            let len = idx.len();
            Ok(Tensor::from_vec(idx, len, flat.device())?)
        };
        Ok((
            flat.index_select(&rows(0)?, 0)?,
            flat.index_select(&rows(1)?, 0)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn pairs_and_transitions_pick_the_right_states() {
        let dev = Device::Cpu;
        // Two chunks: 3 states (N = 2) of 2 and 1 paths in 1-D; value = 10·k + path.
        let chunk = |paths: &[f32]| {
            let states: Vec<Tensor> = (0..3)
                .map(|k| {
                    let v: Vec<f32> = paths.iter().map(|p| 10.0 * k as f32 + p).collect();
                    Tensor::from_vec(v, (paths.len(), 1), &dev).unwrap()
                })
                .collect();
            PathCache::chunk(&states).unwrap()
        };
        let cache = PathCache::from_chunks(&[chunk(&[0.0, 1.0]), chunk(&[2.0])]).unwrap();
        assert_eq!((cache.len(), cache.steps()), (3, 2));
        let (a, b) = cache.pairs(&[2, 0, 1], &[1, 0, 1]).unwrap();
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(a), vec![12.0, 0.0, 11.0]);
        assert_eq!(flat(b), vec![22.0, 10.0, 21.0]);
        let idx = Tensor::new(&[1u32], &dev).unwrap();
        let (cur, next) = cache.transitions(&idx).unwrap();
        assert_eq!(flat(cur), vec![1.0, 11.0]);
        assert_eq!(flat(next), vec![11.0, 21.0]);
        assert!(cache.pairs(&[3], &[0]).is_err());
        assert!(cache.pairs(&[0], &[2]).is_err());
    }
}
